"""GPIO SIM multiplexers: select lines pick a card, SIM-detect makes the modem read it.

A single-slot modem behind an analogue SIM switch sees one card at a time. To
change it the daemon tells the modem the card is gone (SIM-detect), sets the
select lines to the new slot number in binary (least significant line first),
waits for the switch to settle and shows the modem a card again; the port then
waits for the card to be ready and registered (`ModemPort.await_card`) and reads
its ICCID and IMSI again. Wiring: hardware/README.md, "Several SIMs per port".

The lines are plain gpiozero DigitalOutputDevices on the pin factory that
`[modems] slot_pin_factory` names (chosen like the LEDs' one: a real factory on a
Pi, the mock elsewhere). `slot_pin_factory = "simulator"` is a test and demo seam:
daemon/mux_bridge.py's factory turns the pin changes into the simulated pool's
`mux_select` control command. gpiozero is imported only when a multiplexer is
configured.

Threads: the gateway builds the board at start-up and closes it at shutdown;
each multiplexer is then driven only by the port thread of the one port it serves.
"""

from __future__ import annotations

import fnmatch
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.config import ModemSettings, SlotMuxSettings
from daemon.leds import choose_factory, on_a_pi
from modem.errors import ModemError

REMOVED_S = 0.5  # SIM-detect says "no card" at least this long: modems debounce the line
SETTLE_S = 0.1  # after the select lines change, before the modem is shown a card
REST_SLOT = 0  # the card selected at start-up (pull-downs select it while the daemon is stopped)


class MuxError(ModemError):
    """A multiplexer's lines could not be driven (GPIO failure, or a miswired simulator)."""


def select_levels(slot: int, lines: int) -> tuple[bool, ...]:
    """The select lines' levels for `slot`, least significant bit first."""
    if not 0 <= slot < 2 ** lines:
        raise ValueError(f"slot {slot} cannot be selected with {lines} select lines")
    return tuple(bool(slot >> bit & 1) for bit in range(lines))


class SimMux:
    """The select, SIM-detect and (optional) enable lines of one multiplexer."""

    def __init__(self, settings: SlotMuxSettings, factory: Any,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        from gpiozero import DigitalOutputDevice

        self.cards = settings.cards
        self._sleep = sleep
        self._devices: list[Any] = []
        self.active: int | None = None  # unknown until the first select
        try:
            # detect.value True = the modem is told "no card"; the pin level that
            # means depends on the wiring (detect_active_high).
            self._detect = self._own(DigitalOutputDevice(
                settings.detect_pin, active_high=settings.detect_active_high,
                initial_value=False, pin_factory=factory))
            self._select = [self._own(DigitalOutputDevice(pin, initial_value=False,
                                                          pin_factory=factory))
                            for pin in settings.select_pins]
            self._enable = self._own(DigitalOutputDevice(
                settings.enable_pin, initial_value=True, pin_factory=factory)) \
                if settings.enable_pin >= 0 else None
        except Exception:
            self.close()
            raise

    def _own(self, device: Any) -> Any:
        self._devices.append(device)
        return device

    def select(self, slot: int) -> None:
        """Show the modem its card removed, set the select lines to `slot`, show a card again.

        Raises MuxError when a line cannot be driven; `active` is then unknown.
        """
        if not 0 <= slot < self.cards:
            raise ValueError(f"slot {slot} is not one of the {self.cards} cards")
        levels = select_levels(slot, len(self._select))
        self.active = None
        try:
            self._detect.on()
            self._sleep(REMOVED_S)
            if self._enable is not None:
                self._enable.off()
            for device, level in zip(self._select, levels, strict=True):
                device.value = level
            if self._enable is not None:
                self._enable.on()
            self._sleep(SETTLE_S)
            self._detect.off()
        except Exception as e:  # gpiozero's errors, the GPIO chip's OSError, the bridge's
            raise MuxError(f"SIM multiplexer, selecting slot {slot}: {e}") from e
        self.active = slot

    def close(self) -> None:
        """Release the lines (they float: the board's pull resistors take over)."""
        for device in self._devices:
            device.close()
        self._devices = []


class MuxBoard:
    """Every configured multiplexer; each is handed to the one port whose path it names."""

    def __init__(self, settings: ModemSettings, log: Any, factory: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._entries = settings.slot_mux
        self._log = log
        self._lock = threading.Lock()
        self._owners: dict[int, str] = {}
        self._muxes: list[SimMux] = []
        self.factory_name = "none"
        if not self._entries:
            return
        if factory is None:
            factory, self.factory_name = make_factory(settings, log)
        else:
            self.factory_name = type(factory).__name__
        self._factory = factory
        try:
            for entry in self._entries:
                self._muxes.append(SimMux(entry, factory, sleep))
            for entry, mux in zip(self._entries, self._muxes, strict=True):
                # A known card at start: the lines floated while the daemon was stopped.
                mux.select(REST_SLOT)
                log.info("slot_mux_ready", port=entry.port, select_pins=list(entry.select_pins),
                         detect_pin=entry.detect_pin, cards=entry.cards, slot=REST_SLOT)
        except Exception:
            self.close()
            raise

    def mux_for(self, path: str) -> SimMux | None:
        """The multiplexer wired to the port at `path`, or None (each serves one port)."""
        for i, entry in enumerate(self._entries):
            if not _names(entry.port, path):
                continue
            with self._lock:
                owner = self._owners.setdefault(i, path)
            if owner != path:
                self._log.error("slot_mux_shared", port=path, mux=entry.port, owner=owner)
                return None
            return self._muxes[i]
        return None

    def close(self) -> None:
        """Release every line (at shutdown)."""
        for mux in self._muxes:
            mux.close()
        self._muxes = []
        factory = getattr(self, "_factory", None)
        if factory is not None:
            factory.close()


def _names(pattern: str, path: str) -> bool:
    """Whether a `slot_mux.port` (a path or a glob) names the port at `path`."""
    if fnmatch.fnmatchcase(path, pattern):
        return True
    return os.path.realpath(pattern) == os.path.realpath(path)


def make_factory(settings: ModemSettings, log: Any) -> tuple[Any, str]:
    """The pin factory `[modems] slot_pin_factory` asks for (see daemon/leds.py)."""
    if settings.slot_pin_factory == "simulator":
        from daemon.mux_bridge import SimulatorPinFactory

        log.info("slot_pin_factory", factory="simulator", dir=settings.slot_simulator_dir)
        return SimulatorPinFactory(Path(settings.slot_simulator_dir),
                                   settings.slot_mux), "simulator"
    factory, name = choose_factory(settings.slot_pin_factory, log, event="slot_pin_factory")
    if name == "mock" and settings.slot_pin_factory != "mock" and on_a_pi():
        # Mock pins on the Pi would "switch" nothing while the port believed they had.
        factory.close()
        raise MuxError("no GPIO pin factory works on this Pi (see the slot_pin_factory "
                       "event); SIM multiplexers cannot be driven")
    return factory, name
