"""Health verdicts and the LED patterns they light, on gpiozero's mock pins with our own clock."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from daemon import leds
from daemon.config import LedSettings
from daemon.health import Fault, Pool, PortSnapshot, Snapshot, assess, port_fault
from daemon.leds import LedPanel, code_pattern

STEP = 0.05
PINS = LedSettings(enabled=True, pin_factory="mock")
READY = PortSnapshot("ttyGSM0", "ready", registered=True, signal=20)


# --- health: pure ------------------------------------------------------------------


@pytest.mark.parametrize(("port", "fault"), [
    (READY, None),
    (PortSnapshot("p", "sending"), None),
    (PortSnapshot("p", "ready", last_error="no answer to PDU"), None),  # recovered: no fault
    (PortSnapshot("p", "opening"), None),
    (PortSnapshot("p", "absent", last_error="device node missing"), Fault.MODEM_FAULT),
    (PortSnapshot("p", "fault", last_error="ttyUSB0: [Errno 5] I/O error"), Fault.MODEM_FAULT),
    (PortSnapshot("p", "quarantined", last_error="SIM asks for a PIN (connect)"),
     Fault.DEAD_SIM),
    (PortSnapshot("p", "fault", last_error="+CME ERROR: 10 on connect"), Fault.DEAD_SIM),
    (PortSnapshot("p", "quarantined", last_error="no ICCID from any of AT+CCID"),
     Fault.MODEM_FAULT),
    (PortSnapshot("p", "quarantined", last_error="not registered (signal 3)"),
     Fault.NO_SIGNAL),
    (PortSnapshot("p", "fault", last_error="no answer to PDU"), Fault.HUNG_MODEM),
    (PortSnapshot("p", "opening", last_error="no answer to connect"), Fault.HUNG_MODEM),
    (PortSnapshot("p", "ready", held_by="hour"), Fault.SIM_OVER_QUOTA),
    (PortSnapshot("p", "ready", held_by="benched"), Fault.SIM_OVER_QUOTA),
    (PortSnapshot("p", "ready", held_by="gap"), None),  # limits.min_gap_s paces, it is no fault
])
def test_each_port_condition_names_its_fault(port: PortSnapshot, fault: Fault | None) -> None:
    assert port_fault(port) is fault


def test_faults_are_ordered_worst_first_and_the_pool_is_rated() -> None:
    health = assess(Snapshot(
        broker_connected=False, store_error="database or disk is full",
        ports=(READY, PortSnapshot("ttyGSM1", "quarantined", last_error="not registered"),
               PortSnapshot("ttyGSM2", "absent"))))
    assert [f.fault for f in health.faults] == [Fault.DISK_FULL, Fault.NO_BROKER,
                                                Fault.MODEM_FAULT, Fault.NO_SIGNAL]
    assert health.faults[3].ports == ("ttyGSM1",)
    assert (health.pool, health.ready, health.total) == (Pool.DEGRADED, 1, 3)
    assert health.as_dict()["faults"][0]["fault"] == "disk_full"


@pytest.mark.parametrize(("ports", "pool"), [
    ((READY, READY), Pool.ALL_READY),
    ((READY, PortSnapshot("p", "fault")), Pool.DEGRADED),
    ((PortSnapshot("p", "fault"),), Pool.NONE),
    ((), Pool.NONE),
])
def test_pool_health(ports: tuple[PortSnapshot, ...], pool: Pool) -> None:
    assert assess(Snapshot(True, ports)).pool is pool


def test_fault_codes_are_distinct_and_start_at_one() -> None:
    assert sorted(f.value for f in Fault) == list(range(1, len(Fault) + 1))


# --- LEDs on mock pins --------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def panel() -> Any:
    factory = MockFactory()
    clock = Clock()
    p = LedPanel(PINS, clock=clock, factory=factory)
    p.test_factory = factory  # type: ignore[attr-defined]
    p.test_clock = clock  # type: ignore[attr-defined]
    yield p
    p.close()
    factory.close()


def trace(panel: Any, led: str, start: float, seconds: float) -> list[bool]:
    """The pin's level every STEP from `start`, as the leds thread would set it."""
    pin = panel.test_factory.pin(getattr(PINS, f"{led}_pin"))
    out = []
    for i in range(round(seconds / STEP)):
        t = start + (i + 0.5) * STEP  # mid-step: no float ties with pattern edges
        panel.test_clock.now = t
        panel.render(t)
        out.append(bool(pin.state))
    return out


def blinks(levels: list[bool]) -> int:
    """Rising edges: how many times the LED lit."""
    return sum(1 for a, b in itertools.pairwise(levels) if b and not a) + (
        1 if levels and levels[0] else 0)


def show(panel: Any, snapshot: Snapshot, at: float = 0.0, activity: Any = None) -> None:
    panel.test_clock.now = at
    panel.show(assess(snapshot), snapshot.broker_connected, activity, now=at)


HEALTHY = Snapshot(broker_connected=True, ports=(READY, READY))


def test_disabled_leds_create_no_gpiozero_object() -> None:
    p = LedPanel(LedSettings())
    assert not p.enabled and p.factory_name == "none"
    p.update(object())  # a no-op, not an error
    assert p.render(1.0) == {}
    assert p.describe() == {"enabled": False, "factory": "none", "leds": {}}


def test_healthy_gateway_steady_broker_and_pool_no_fault(panel: Any) -> None:
    show(panel, HEALTHY)
    assert all(trace(panel, "broker", 0, 3))
    assert all(trace(panel, "pool", 0, 3))
    assert not any(trace(panel, "fault", 0, 3))
    assert panel.describe()["leds"]["fault"] == {"pin": PINS.fault_pin, "pattern": "off",
                                                 "lit": False, "code": 0, "fault": None}


def test_heartbeat_blinks_while_the_main_loop_updates_and_stops_when_it_does_not(
        panel: Any) -> None:
    levels = []
    for second in range(3):
        show(panel, HEALTHY, at=float(second))
        levels += trace(panel, "heartbeat", float(second), 1.0)
    assert blinks(levels) == 3
    assert not any(trace(panel, "heartbeat", 5.0, 3.0))  # no update for 3 s: dark


def test_broker_led_blinks_fast_while_reconnecting(panel: Any) -> None:
    show(panel, Snapshot(broker_connected=False, ports=(READY,)))
    assert blinks(trace(panel, "broker", 0, 2.0)) == 10  # 5 Hz


@pytest.mark.parametrize(("ports", "lit_blinks", "steady"), [
    ((READY, READY), 1, True),
    ((READY, PortSnapshot("p", "fault")), 2, False),  # slow blink: 1 s on, 1 s off
    ((PortSnapshot("p", "fault"),), 0, False),
])
def test_pool_led(panel: Any, ports: tuple[PortSnapshot, ...], lit_blinks: int,
                  steady: bool) -> None:
    show(panel, Snapshot(True, ports))
    levels = trace(panel, "pool", 0, 4.0)
    assert blinks(levels) == lit_blinks
    assert all(levels) is steady


def test_activity_flashes_once_per_change(panel: Any) -> None:
    show(panel, HEALTHY, at=0.0, activity=(0, 0))
    assert not any(trace(panel, "activity", 0, 1.0))
    show(panel, HEALTHY, at=1.0, activity=(1, 0))  # a part went out
    levels = trace(panel, "activity", 1.0, 1.0)
    assert blinks(levels) == 1 and levels.count(True) == round(leds.ACTIVITY_FLASH_S / STEP)
    show(panel, HEALTHY, at=2.0, activity=(1, 0))
    assert not any(trace(panel, "activity", 2.0, 1.0))


@pytest.mark.parametrize(("snapshot", "fault"), [
    (Snapshot(True, (READY,), store_error="database or disk is full"), Fault.DISK_FULL),
    (Snapshot(False, (READY,)), Fault.NO_BROKER),
    (Snapshot(True, (PortSnapshot("p", "absent"),)), Fault.MODEM_FAULT),
    (Snapshot(True, (PortSnapshot("p", "fault", last_error="no answer to PDU"),)),
     Fault.HUNG_MODEM),
    (Snapshot(True, (PortSnapshot("p", "quarantined", last_error="SIM asks for a PIN"),)),
     Fault.DEAD_SIM),
    (Snapshot(True, (PortSnapshot("p", "quarantined", last_error="not registered"),)),
     Fault.NO_SIGNAL),
    (Snapshot(True, (PortSnapshot("p", "ready", held_by="hour"),)), Fault.SIM_OVER_QUOTA),
])
def test_fault_led_blinks_the_faults_code_then_pauses(panel: Any, snapshot: Snapshot,
                                                      fault: Fault) -> None:
    show(panel, snapshot)
    period = code_pattern(fault.value).period
    levels = trace(panel, "fault", 0, period)
    assert blinks(levels) == fault.value
    # ends with the pause: dark for CODE_PAUSE_S
    pause = round(leds.CODE_PAUSE_S / STEP)
    assert not any(levels[-pause:])
    assert blinks(trace(panel, "fault", period, period)) == fault.value  # and repeats
    described = panel.describe()["leds"]["fault"]
    assert (described["code"], described["fault"]) == (fault.value, fault.label)
    # the mock pin's own history agrees: fault.value rises per cycle (2 cycles traced)
    states = panel.test_factory.pin(PINS.fault_pin).states
    assert sum(1 for s in states if s.state) == 2 * fault.value


def test_the_worst_fault_is_shown_and_a_code_keeps_its_phase_across_updates(
        panel: Any) -> None:
    both = Snapshot(False, (PortSnapshot("p", "absent"),))  # no_broker (2) + modem_fault (3)
    show(panel, both, at=0.0)
    levels = []
    for i in range(round(code_pattern(2).period / 0.2)):  # the main loop ticks every 0.2 s
        show(panel, both, at=i * 0.2)
        levels += trace(panel, "fault", i * 0.2, 0.2)
    assert blinks(levels) == 2


def test_auto_pin_factory_falls_back_to_the_mock_off_a_pi(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leds, "PI_MODEL_FILE", tmp_path / "model")  # not there: not a Pi
    logged: list[tuple[str, dict[str, Any]]] = []

    class Log:
        def info(self, event: str, **kw: Any) -> None:
            logged.append((event, kw))

        error = info

    factory, name = leds.choose_factory("auto", Log())
    assert name == "mock" and isinstance(factory, MockFactory)
    assert logged == [("led_pin_factory", {"factory": "mock", "reason": "not a Raspberry Pi"})]
    factory.close()
