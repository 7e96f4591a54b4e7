"""Sending policies as plain functions: quotas, quiet hours, caps, routes, failures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from daemon.dispatcher import choose_port
from daemon.failures import Ladder, Step, Verdict, judge_send_failure
from daemon.quota import Holiday, Limits, QuotaPolicy, blocked, period_end
from daemon.schedule import QuietHours, Route, cap_until, quiet_until
from modem.errors import CmsError, ModemGone, ModemTimeout
from store.sims import SimCounters
from store.store import Candidate

SHANGHAI = ZoneInfo("Asia/Shanghai")
POLICY = QuotaPolicy(SHANGHAI, Limits(per_hour=10, per_day=20, min_gap_s=2.0),
                     {"special": Limits(per_day=5)},
                     (Holiday(date(2027, 2, 5), date(2027, 2, 20), Limits(per_day=100)),))


def _at(y: int, mo: int, d: int, h: int, mi: int = 0, zone: ZoneInfo = SHANGHAI) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=zone).timestamp()


def _counters(now: float, hour: int = 0, day: int = 0, last: float | None = None,
              blocked_until: float | None = None) -> SimCounters:
    keys = POLICY.keys(now)
    return SimCounters("sim", dict(keys), {"minute": 0, "hour": hour, "day": day, "month": day},
                       last, blocked_until, None)


@pytest.mark.parametrize(("hour", "day", "last_ago", "expect"), [
    (0, 0, None, None),
    (9, 9, 10.0, None),
    (10, 10, 10.0, "hour"),
    (5, 20, 10.0, "day"),
    (1, 1, 1.0, "gap"),
])
def test_a_sim_is_held_by_the_first_limit_it_reached(
        hour: int, day: int, last_ago: float | None, expect: str | None) -> None:
    now = _at(2026, 11, 23, 15, 30)
    last = now - last_ago if last_ago is not None else None
    block = blocked(POLICY, _counters(now, hour, day, last), "sim", now)
    assert (block.period if block else None) == expect


def test_counters_of_a_past_period_count_as_zero() -> None:
    earlier = _at(2026, 11, 23, 14, 59)
    assert blocked(POLICY, _counters(earlier, hour=10, day=10), "sim",
                   _at(2026, 11, 23, 15, 0)) is None


def test_the_hour_limit_lifts_at_the_next_local_hour() -> None:
    now = _at(2026, 11, 23, 15, 30)
    block = blocked(POLICY, _counters(now, hour=10, day=10), "sim", now)
    assert block is not None and block.until == _at(2026, 11, 23, 16, 0)
    assert period_end(POLICY, "day", now) == _at(2026, 11, 24, 0, 0)
    assert period_end(POLICY, "month", _at(2026, 12, 31, 23)) == _at(2027, 1, 1, 0)


def test_per_sim_overrides_and_holidays_change_the_limits() -> None:
    assert POLICY.limits_for("special", _at(2026, 11, 23, 12)).per_day == 5
    assert POLICY.limits_for("sim", _at(2027, 2, 10, 12)).per_day == 100
    assert POLICY.limits_for("sim", _at(2027, 2, 21, 12)).per_day == 20


def test_a_benched_sim_waits_until_its_bench_ends() -> None:
    now = _at(2026, 11, 23, 12)
    block = blocked(POLICY, _counters(now, blocked_until=now + 60), "sim", now)
    assert block is not None and block.period == "benched" and block.until == now + 60


QUIET = QuietHours(time(21, 0), time(8, 0))


@pytest.mark.parametrize(("number", "local", "zone", "until"), [
    ("+8613800138000", (23, 0), "Asia/Shanghai", (1, 8, 0)),  # next morning
    ("+8613800138000", (7, 59), "Asia/Shanghai", (0, 8, 0)),
    ("+8613800138000", (8, 0), "Asia/Shanghai", None),
    ("+8613800138000", (20, 59), "Asia/Shanghai", None),
    ("+447911123456", (22, 30), "Europe/London", (1, 8, 0)),
])
def test_quiet_hours_follow_the_recipients_clock(
        number: str, local: tuple[int, int], zone: str,
        until: tuple[int, int, int] | None) -> None:
    tz = ZoneInfo(zone)
    now = _at(2026, 11, 23, *local, zone=tz)
    got = quiet_until(number, now, QUIET)
    if until is None:
        assert got is None
    else:
        days, h, m = until
        assert got == _at(2026, 11, 23 + days, h, m, zone=tz)


def test_no_quiet_hours_configured_means_never_quiet() -> None:
    assert quiet_until("+8613800138000", _at(2026, 11, 23, 23), None) is None


@pytest.mark.parametrize(("sent_ago_h", "cap", "wait_h"), [
    ([], 2, None), ([1], 2, None), ([5, 1], 2, 19), ([30, 1], 2, None), ([3, 2, 1], 2, 22),
])
def test_the_frequency_cap_counts_a_rolling_day(
        sent_ago_h: list[float], cap: int, wait_h: float | None) -> None:
    now = 1_000_000.0
    got = cap_until([now - h * 3600 for h in sent_ago_h], now, cap)
    assert got == (None if wait_h is None else now + wait_h * 3600)


@dataclass
class FakePort:
    name: str
    iccid: str | None
    operator: str | None
    idle: bool = True
    busy: bool = False
    can_rotate: bool = False

    def dispatch_view(self) -> tuple[bool, bool, str | None]:
        return self.idle, self.busy or self.can_rotate, self.iccid

    def assign(self, job: object) -> bool:
        return True


def _cand(to: str, avoid: str | None = None) -> Candidate:
    return Candidate(1, "m", to, False, 5, 1, 0, avoid)


PORTS = [FakePort("p0", "a", "CHINA MOBILE"), FakePort("p1", "b", "CHN-UNICOM")]


@pytest.mark.parametrize(("to", "routes", "ports", "avoid", "expect"), [
    ("+8613800138000", (), PORTS, None, "p0"),
    ("+8613800138000", (), PORTS, "a", "p1"),
    ("+8613800138000", (Route("+86138", operators=("chn-unicom",)),), PORTS, None, "p1"),
    ("+8613800138000", (Route("+86138", iccids=("c",), fallback=True),), PORTS, None, "p0"),
    ("+8613800138000", (Route("+86138", iccids=("c",), fallback=False),), PORTS, None, None),
    ("+8613900139000", (Route("+86138", iccids=("b",), fallback=False),), PORTS, None, "p0"),
    ("+8613800138000", (Route("+86", iccids=("a",)), Route("+86138", iccids=("b",))), PORTS,
     None, "p1"),
    ("+8613800138000", (), [PORTS[0]], "a", "p0"),
])
def test_choose_port_prefers_routes_and_avoids_the_sim_that_failed(
        to: str, routes: tuple[Route, ...], ports: list[FakePort], avoid: str | None,
        expect: str | None) -> None:
    port = choose_port(_cand(to, avoid), ports, routes)
    assert (port.name if port else None) == expect


@pytest.mark.parametrize(("cause", "parts_done", "maybe", "attempts", "verdict", "sim_fault"), [
    (ModemTimeout("x"), 0, True, 1, Verdict.UNCERTAIN, True),
    (CmsError("PDU", 38), 1, False, 1, Verdict.FAIL, True),
    (CmsError("PDU", 38), 0, False, 1, Verdict.REQUEUE, True),
    (CmsError("PDU", 38), 0, False, 3, Verdict.FAIL, True),
    (CmsError("PDU", 21), 0, False, 5, Verdict.REQUEUE, True),
    (CmsError("PDU", 1), 0, False, 1, Verdict.FAIL, False),
    (CmsError("PDU", 304), 0, False, 1, Verdict.FAIL, False),
    (ModemGone("unplugged"), 0, False, 9, Verdict.REQUEUE, False),
])
def test_a_failed_send_is_judged_by_the_error_and_how_far_it_got(
        cause: Exception, parts_done: int, maybe: bool, attempts: int, verdict: Verdict,
        sim_fault: bool) -> None:
    outcome = judge_send_failure(cause, parts_done, 2, maybe, attempts, 3, 10.0)  # type: ignore[arg-type]
    assert (outcome.verdict, outcome.sim_fault) == (verdict, sim_fault)


def test_retries_back_off_and_a_vanished_port_retries_at_once() -> None:
    first = judge_send_failure(CmsError("PDU", 42), 0, 1, False, 1, 5, 10.0)
    second = judge_send_failure(CmsError("PDU", 42), 0, 1, False, 2, 5, 10.0)
    gone = judge_send_failure(ModemGone("x"), 0, 1, False, 2, 5, 10.0)
    assert (first.retry_in_s, second.retry_in_s, gone.retry_in_s) == (10.0, 20.0, 0.0)


def test_the_recovery_ladder_climbs_and_backs_off() -> None:
    ladder = Ladder(reopen_tries=2, soft_tries=1, full_tries=1, base_backoff_s=1,
                    max_backoff_s=8, quarantine_s=100)
    assert [ladder.step(n) for n in range(5)] == [
        Step.REOPEN, Step.REOPEN, Step.SOFT_RESET, Step.FULL_RESET, Step.QUARANTINE]
    assert [ladder.backoff(n) for n in range(5)] == [0, 1, 2, 4, 100]
