"""A test and demo seam: gpiozero mock pins wired to the simulated pool's SIM multiplexer.

With `[modems] slot_pin_factory = "simulator"` the multiplexer lines of
daemon/mux.py are mock pins of this factory. It reads the wiring from the same
`[[modems.slot_mux]]` entries (each naming a simulated port, DIR/ttyGSM<n>) and
watches the lines the way the multiplexer board and the modem would:

- a select line may change only while SIM-detect tells the modem "no card"
  (otherwise the modem would go on talking to another card without knowing):
  MuxWiringError, which fails the switch;
- when SIM-detect shows a card again, the enable line (when wired) must be on,
  and the select lines name the slot: the pool is told
  `{"cmd": "mux_select", "port": n, "slot": s}`, so the simulated modem shows no
  SIM for its switch delay and then reads the new card.

The rest of the daemon does not know: on a Pi the same SimMux drives real pins.
The simulator has no separate "card removed" state, so between the detect drop
and the new selection the simulated modem still shows the old card.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin

from daemon.config import SIMULATED_PORT, SlotMuxSettings
from daemon.mux import MuxError
from modem.sim import control

Send = Callable[[Path, dict[str, Any]], dict[str, Any]]


class MuxWiringError(MuxError, RuntimeError):
    """The lines were driven in an order the real hardware would misread."""


@dataclass
class _Wiring:
    """One multiplexer as the bridge sees it: its lines and what the modem is shown."""

    port: int  # the simulated port's index
    select: list[int]  # BCM pins, least significant first
    detect: int
    detect_active_high: bool
    enable: int
    levels: dict[int, bool] = field(default_factory=dict)  # pin -> last level driven

    def withdrawn(self) -> bool:
        """Whether SIM-detect now tells the modem "no card" (pins never driven are low)."""
        return self.levels.get(self.detect, False) == self.detect_active_high

    def slot(self) -> int:
        return sum(1 << bit for bit, pin in enumerate(self.select) if self.levels.get(pin))


class _BridgedPin(MockPin):
    """A mock pin that reports every level it is driven to."""

    def _change_state(self, value: bool) -> bool:
        changed = bool(super()._change_state(value))
        if changed and self._function == "output":
            factory = self.factory
            assert isinstance(factory, SimulatorPinFactory)
            factory.driven(self.info.name, value)
        return changed


class SimulatorPinFactory(MockFactory):
    """Mock pins whose multiplexer lines drive the pool serving `directory`."""

    def __init__(self, directory: Path, muxes: tuple[SlotMuxSettings, ...],
                 send: Send = control.request) -> None:
        super().__init__(pin_class=_BridgedPin)
        self._directory = directory
        self._send = send
        self._by_pin: dict[str, _Wiring] = {}
        for mux in muxes:
            match = SIMULATED_PORT.search(mux.port)
            if match is None:
                raise ValueError(f"{mux.port!r} is not a simulated port (DIR/ttyGSM<n>)")
            wiring = _Wiring(int(match.group(1)), list(mux.select_pins), mux.detect_pin,
                             mux.detect_active_high, mux.enable_pin)
            for _key, pin in mux.pins():
                self._by_pin[f"GPIO{pin}"] = wiring

    def driven(self, name: str, level: bool) -> None:
        """A line changed level: check the order and tell the pool when a card is shown."""
        wiring = self._by_pin.get(name)
        if wiring is None:
            return  # not a multiplexer line
        pin = int(name.removeprefix("GPIO"))
        was_withdrawn = wiring.withdrawn()
        wiring.levels[pin] = level
        if pin in wiring.select and not was_withdrawn:
            raise MuxWiringError(f"select line GPIO{pin} changed while SIM-detect showed the "
                                 f"modem of port {wiring.port} a card")
        if pin != wiring.detect or not was_withdrawn or wiring.withdrawn():
            return
        if wiring.enable >= 0 and not wiring.levels.get(wiring.enable):
            raise MuxWiringError(f"SIM-detect of port {wiring.port} showed a card while the "
                                 "multiplexer was disabled")
        reply = self._send(self._directory, {"cmd": "mux_select", "port": wiring.port,
                                             "slot": wiring.slot()})
        if not reply.get("ok"):
            raise MuxWiringError(f"the pool refused mux_select on port {wiring.port}: "
                                 f"{reply.get('error')}")
