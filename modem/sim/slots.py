"""SIM slots of one port: the cards, which one is selected, and what the network holds for each.

A port has K >= 1 slots, each with one SimCard; a slot can also be "empty" (card pulled) or
"broken" (card dead). Exactly one slot is selected (AT+CSUS, AT+QDSIM or the GPIO multiplexer).
After the selection changes the modem sees no SIM for `switch_delay_s` ("settling"); then it
reads the selected card. Status reports and replies addressed to a card that is not attached
are held by the "network" on that card for `hold_s` seconds and delivered once the card is
attached and registered again, or dropped.

Owned by the port (it survives unplug/replug); changed only under the port's I/O lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from modem.sim.faults import CardFaults
from modem.sim.identity import SimIdentity
from modem.sim.storage import Memory, sim_memory

if TYPE_CHECKING:
    from modem.sim.device import SimModem

SLOT_READY, SLOT_EMPTY, SLOT_BROKEN = "ready", "empty", "broken"
SLOT_STATES = (SLOT_READY, SLOT_EMPTY, SLOT_BROKEN)
DEFAULT_SWITCH_DELAY_S = 3.0
DEFAULT_HOLD_S = 3600.0  # how long the network keeps retrying a report or reply for a card
MAX_SLOTS = 32
MR_MODULO = 256


@dataclass(eq=False)
class HeldItem:
    """A report or SMS the network could not hand to its card; deliver() runs on the modem."""

    kind: str  # "report" | "sms"
    expires: datetime
    deliver: Callable[[SimModem], object]


@dataclass
class SimCard:
    """State that lives on the SIM card (and its operator account): it survives unplug/replug."""

    identity: SimIdentity
    next_mr: int = 0
    sm: Memory = field(default_factory=sim_memory)
    # TP-MR -> (recipient, submit time) of recent sends, so a report can name them.
    sent: dict[int, tuple[str, datetime]] = field(default_factory=dict)
    faults: CardFaults | None = None  # None: a single-slot port's Faults stand in
    sends: int = 0  # parts the network accepted from this card, never reset
    held: list[HeldItem] = field(default_factory=list)
    held_dropped: int = 0

    def take_mr(self) -> int:
        """Return the next TP-MR (0..255) and advance the counter, as the modem does per submit."""
        mr = self.next_mr
        self.next_mr = (mr + 1) % MR_MODULO
        return mr


@dataclass
class Slot:
    """One card holder: its card and whether the card is there and alive."""

    card: SimCard
    state: str = SLOT_READY


class SlotBank:
    """The K slots of a port, the selected one, and whether SIM-detect is still settling."""

    def __init__(
        self,
        cards: list[SimCard],
        switch_delay_s: float = DEFAULT_SWITCH_DELAY_S,
        hold_s: float = DEFAULT_HOLD_S,
    ) -> None:
        if not 1 <= len(cards) <= MAX_SLOTS:
            raise ValueError(f"a port has 1..{MAX_SLOTS} slots, not {len(cards)}")
        if switch_delay_s < 0 or hold_s < 0:
            raise ValueError("switch delay and hold time must not be negative")
        self.slots = [Slot(card) for card in cards]
        self.active = 0
        self.settling = False  # True from a switch until the switch delay has passed
        self.generation = 0  # bumps on every switch, so a stale settle timer does nothing
        self.switch_delay_s = switch_delay_s
        self.hold_s = hold_s

    def __len__(self) -> int:
        return len(self.slots)

    def slot(self, index: int) -> Slot:
        """Return slot `index`; IndexError outside 0..K-1."""
        if not 0 <= index < len(self.slots):
            raise IndexError(f"no slot {index}; the port has {len(self.slots)}")
        return self.slots[index]

    @property
    def active_slot(self) -> Slot:
        """The selected slot."""
        return self.slots[self.active]

    @property
    def active_card(self) -> SimCard:
        """The card in the selected slot (whether or not the modem has read it yet)."""
        return self.slots[self.active].card

    def select(self, index: int) -> int:
        """Select slot `index` and start settling; return the generation settle() must name."""
        self.slot(index)
        self.active = index
        self.settling = True
        self.generation += 1
        return self.generation

    def settle(self, generation: int) -> bool:
        """End settling if `generation` is the latest switch; True if it did."""
        if generation != self.generation or not self.settling:
            return False
        self.settling = False
        return True

    def power_on(self) -> None:
        """A modem powering up reads the selected card at once: no settling, old timers void."""
        self.settling = False
        self.generation += 1
