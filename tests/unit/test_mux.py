"""daemon/mux: select-line encoding and the SIM-detect sequence, on gpiozero's mock pins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from daemon.config import SlotMuxSettings
from daemon.mux import REMOVED_S, SETTLE_S, MuxBoard, MuxError, SimMux, select_levels
from daemon.mux_bridge import SimulatorPinFactory

SELECT = (5, 6)
DETECT = 13
ENABLE = 19
WIRING = SlotMuxSettings(port="/pool/ttyGSM2", select_pins=SELECT, detect_pin=DETECT,
                         enable_pin=ENABLE, slots=3)


@pytest.mark.parametrize(("slot", "lines", "levels"), [
    (0, 2, (False, False)),
    (1, 2, (True, False)),  # least significant line first
    (2, 2, (False, True)),
    (3, 2, (True, True)),
    (5, 3, (True, False, True)),
    (31, 5, (True,) * 5),
])
def test_a_slot_number_is_written_in_binary_on_the_select_lines(
        slot: int, lines: int, levels: tuple[bool, ...]) -> None:
    assert select_levels(slot, lines) == levels


@pytest.mark.parametrize(("slot", "lines"), [(4, 2), (-1, 2), (2, 1)])
def test_a_slot_the_lines_cannot_name_is_refused(slot: int, lines: int) -> None:
    with pytest.raises(ValueError, match="cannot be selected"):
        select_levels(slot, lines)


class JournalPin(MockPin):
    """A mock pin that also writes each level change into its factory's shared journal."""

    def _change_state(self, value: bool) -> bool:
        changed = bool(super()._change_state(value))
        if changed:
            self.factory.journal.append((int(self.info.name.removeprefix("GPIO")), value))
        return changed


@pytest.fixture
def factory() -> Iterator[Any]:
    f: Any = MockFactory(pin_class=JournalPin)
    f.journal = []
    yield f
    f.close()


def test_a_switch_drops_sim_detect_around_the_select_lines(factory: Any) -> None:
    sleeps: list[tuple[float, list[tuple[int, bool]]]] = []
    mux = SimMux(WIRING, factory, sleep=lambda s: sleeps.append((s, list(factory.journal))))
    assert factory.journal == [(ENABLE, True)]  # built at rest: slot 0, card shown, enabled
    factory.journal.clear()

    mux.select(3 - 1)  # slot 2: S0 low, S1 high
    assert factory.journal == [
        (DETECT, True),  # the modem is told "no card" (through the open-drain transistor)
        (ENABLE, False),
        (6, True),  # S1
        (ENABLE, True),
        (DETECT, False),  # and a card is back: the new one
    ]
    # The removal lasts REMOVED_S before anything moves; the switch settles SETTLE_S
    # before the card is shown again.
    assert [s for s, _ in sleeps] == [REMOVED_S, SETTLE_S]
    assert sleeps[0][1] == [(DETECT, True)]
    assert sleeps[1][1][-1] == (ENABLE, True)
    assert mux.active == 2

    factory.journal.clear()
    mux.select(1)
    assert factory.journal == [(DETECT, True), (ENABLE, False), (5, True), (6, False),
                               (ENABLE, True), (DETECT, False)]
    assert [factory.pin(p).state for p in SELECT] == [True, False]
    mux.close()


def test_a_directly_wired_detect_line_is_low_for_no_card(factory: Any) -> None:
    direct = SlotMuxSettings(port="/p", select_pins=SELECT, detect_pin=DETECT,
                             detect_active_high=False)
    mux = SimMux(direct, factory, sleep=lambda s: None)
    assert factory.pin(DETECT).state is True  # a card is shown from the start
    factory.journal.clear()
    mux.select(1)
    assert factory.journal == [(DETECT, False), (5, True), (DETECT, True)]
    mux.close()


def test_a_slot_beyond_the_cards_is_refused(factory: Any) -> None:
    mux = SimMux(WIRING, factory, sleep=lambda s: None)
    with pytest.raises(ValueError, match="not one of the 3 cards"):
        mux.select(3)
    mux.close()


# --- the simulator seam (daemon/mux_bridge.py) ----------------------------------------


class FakePool:
    """Stands in for the pool's control socket."""

    def __init__(self, ok: bool = True) -> None:
        self.requests: list[dict[str, Any]] = []
        self.ok = ok

    def __call__(self, directory: Path, payload: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(payload)
        return {"ok": True} if self.ok else {"ok": False, "error": "no slot 2"}


def test_the_bridge_tells_the_pool_the_selected_slot_when_a_card_is_shown() -> None:
    pool = FakePool()
    board = MuxBoard(_modems(WIRING), _Log(), factory=SimulatorPinFactory(
        Path("/pool"), (WIRING,), send=pool), sleep=lambda s: None)
    assert pool.requests == [{"cmd": "mux_select", "port": 2, "slot": 0}]  # at start-up
    mux = board.mux_for("/pool/ttyGSM2")
    assert mux is not None and mux.active == 0
    assert board.mux_for("/pool/ttyGSM1") is None
    mux.select(2)
    mux.select(1)
    assert pool.requests[1:] == [{"cmd": "mux_select", "port": 2, "slot": 2},
                                 {"cmd": "mux_select", "port": 2, "slot": 1}]
    board.close()


def test_the_bridge_refuses_select_lines_moved_while_the_modem_sees_a_card() -> None:
    pool = FakePool()
    factory = SimulatorPinFactory(Path("/pool"), (WIRING,), send=pool)
    mux = SimMux(WIRING, factory, sleep=lambda s: None)
    with pytest.raises(RuntimeError, match="changed while SIM-detect showed"):
        factory.pin(SELECT[0]).state = True  # behind the multiplexer's back
    assert pool.requests == []
    mux.close()
    factory.close()


def test_a_pool_that_refuses_the_selection_fails_the_switch() -> None:
    factory = SimulatorPinFactory(Path("/pool"), (WIRING,), send=FakePool(ok=False))
    mux = SimMux(WIRING, factory, sleep=lambda s: None)
    with pytest.raises(MuxError, match=r"refused mux_select.*no slot 2"):
        mux.select(2)
    assert mux.active is None
    mux.close()
    factory.close()


class _Log:
    def info(self, event: str, **kw: Any) -> None:
        pass

    error = info


def _modems(*muxes: SlotMuxSettings) -> Any:
    from daemon.config import ModemSettings

    return ModemSettings(slot_mux=muxes, slot_pin_factory="simulator",
                         slot_simulator_dir="/pool")
