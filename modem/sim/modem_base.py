"""What the parts of SimModem share: the state it sets, and what one mixin provides the others.

SimModem (device.py) is InfoCommands + SmsCommands + SlotCommands, each a ModemBase.
Every field below is set by SimModem (its constructor or ATZ); every abstract method is
implemented once, by the part named beside it. A mixin declares nothing of another's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from modem.sim.faults import CardFaults, Faults
from modem.sim.makes import Make
from modem.sim.slots import SimCard, SlotBank
from modem.sim.storage import ModemMemories

if TYPE_CHECKING:  # device.py builds on this module: a runtime import would be circular
    from modem.sim.device import Clock, Emit, Latency, Schedule


class ModemBase(ABC):
    """The state and the cross-part methods every SimModem mixin may use."""

    # Set by SimModem.__init__.
    make: Make
    clock: Clock
    _bank: SlotBank
    _emit: Emit
    _schedule: Schedule
    _latency: Latency
    _faults: Faults
    _memories: ModemMemories
    # Set by SimModem._reset (the power-on profile ATZ restores).
    settings: dict[str, int]
    smsc: str
    csmp: tuple[int, int, int, int]
    cnmi: tuple[int, int, int, int, int]
    cpms: tuple[str, str, str]
    cscs: str

    @property
    @abstractmethod
    def sim(self) -> SimCard:  # SlotCommands
        """The card in the selected slot."""

    @property
    @abstractmethod
    def sim_state(self) -> str:  # SlotCommands
        """What the modem sees in the holder: ready, absent, pin or broken."""

    @property
    @abstractmethod
    def card_faults(self) -> CardFaults:  # SlotCommands
        """Conditions of the selected card."""

    @property
    @abstractmethod
    def switching(self) -> bool:  # SlotCommands
        """True while SIM-detect settles after a switch (no SIM, searching)."""

    @abstractmethod
    def deliver_held(self) -> int:  # SlotCommands
        """Hand the selected card what the network holds for it; how many were delivered."""

    @property
    @abstractmethod
    def on_air(self) -> bool:  # InfoCommands
        """True when the modem is registered: radio on, SIM ready, network reachable."""

    @abstractmethod
    def _unsolicited(self, *lines: str) -> None:  # SmsCommands
        """Write unsolicited result lines to the client at once."""

    @property
    @abstractmethod
    def sms_center(self) -> str:  # SimModem
        """The operator's SMSC, as it appears in front of PDUs the network delivers."""
