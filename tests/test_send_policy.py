"""Sending like a careful operator, end to end: quotas, blocks, quiet hours, caps, expiry,
priority and routes, on the real daemon, a real mosquitto and simulated ports."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from modem.sim.control import request
from tests.support.gateway import Daemon, SimulatedPool
from tests.support.hq import Hq
from tests.support.wait import wait_until

BEIJING = ZoneInfo("Asia/Shanghai")
NO_LIMITS = "\n[limits]\nper_hour = 0\nper_day = 0\n"


def _start(pool_factory: Any, daemon_factory: Any, hq: Hq, ports: int, extra: str = "",
           modems_extra: str = "") -> tuple[SimulatedPool, Daemon]:
    pool = pool_factory(ports)
    daemon = daemon_factory(pool, extra=extra, modems_extra=modems_extra)
    daemon.start()
    hq.wait_online()
    _wait_ready(hq, ports)
    return pool, daemon


def _state(hq: Hq, tag: str) -> dict[str, Any]:
    cmd_id = f"{tag}-{time.monotonic()}"
    hq.publish("cmd", {"cmd_id": cmd_id, "cmd": "state"})
    return wait_until(lambda: next((r["result"] for r in hq.on("reply")
                                    if r["cmd_id"] == cmd_id), None), 10, "a state reply")


def _wait_ready(hq: Hq, ports: int) -> dict[str, Any]:
    return wait_until(lambda: (s := _state(hq, "ready")) and len(s["modems"]) == ports and all(
        m["state"] == "ready" for m in s["modems"]) and s, 30, f"{ports} ready ports")


def _batch(batch_id: str, n: int, to: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"batch_id": batch_id, "messages": [
        {"id": f"{batch_id}-{i}", "to": to or f"+86138{i:08d}", "text": f"{batch_id} {i}",
         **extra} for i in range(n)]}


def _last_states(hq: Hq) -> dict[str, str]:
    last: dict[str, str] = {}
    for s in hq.on("status"):
        last[s["id"]] = s["state"]
    return last


def test_sims_stop_at_their_quota_and_the_counters_survive_a_restart(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool, daemon = _start(pool_factory, daemon_factory, hq, 4,
                          extra="\n[limits]\nper_hour = 10\nper_day = 0\n")
    hq.publish("outbox", _batch("q", 100))
    wait_until(lambda: len(pool.network()) >= 40, 60, "40 sends")
    reached = wait_until(lambda: (e := [x for x in hq.on("events")
                                        if x["type"] == "sim_quota_reached"]) and len(e) >= 4
                         and e, 20, "four sim_quota_reached events")
    assert {e["period"] for e in reached} == {"hour"}
    wait_until(lambda: Counter(_last_states(hq).values())["scheduled"] == 60, 60,
               "the other 60 scheduled")
    assert len(pool.network()) == 40
    assert set(Counter(m["iccid"] for m in pool.network()).values()) == {10}
    modems = _state(hq, "after")["modems"]
    assert sorted(m["sent_today"] for m in modems) == [10, 10, 10, 10]

    assert daemon.stop() == 0
    daemon.start()
    hq.wait_online()
    modems = _wait_ready(hq, 4)["modems"]
    assert sorted(m["sent_today"] for m in modems) == [10, 10, 10, 10]
    assert len(pool.network()) == 40


def test_a_sim_the_operator_blocks_is_benched_and_its_work_finishes_elsewhere(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool, _ = _start(pool_factory, daemon_factory, hq, 3,
                     extra=NO_LIMITS + "\n[send]\nretry_backoff_s = 0\nbench_after_failures = 2\n")
    assert request(pool.dir, {"cmd": "block_after", "port": 0, "sends": 5, "code": 21})["ok"]
    batch = _batch("blk", 60)
    hq.publish("outbox", batch)
    ids = [m["id"] for m in batch["messages"]]
    hq.wait_final(ids, {"sent", "failed", "uncertain"}, 90)
    assert Counter(_last_states(hq)[i] for i in ids) == {"sent": 60}
    network = pool.network()
    assert sorted(m["text"] for m in network) == sorted(m["text"] for m in batch["messages"])
    blocked = next(e for e in hq.on("events") if e["type"] == "sim_blocked")
    assert blocked["port"] == "ttyGSM0"
    assert Counter(m["port"] for m in network)["ttyGSM0"] == 5


def test_quiet_hours_hold_a_message_until_morning_but_not_an_urgent_one(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool = pool_factory(2)
    daemon = daemon_factory(pool, extra=NO_LIMITS + '\n[quiet_hours]\nstart = "21:00"\n'
                            'end = "08:00"\n')
    late = datetime(2026, 11, 23, 23, 0, tzinfo=BEIJING).timestamp()
    daemon.set_clock(late)
    daemon.start()
    hq.wait_online()
    _wait_ready(hq, 2)
    hq.publish("outbox", {"batch_id": "night", "messages": [
        {"id": "calm", "to": "+8613800138000", "text": "Your points expire soon"},
        {"id": "code", "to": "+8613900139000", "text": "Code 4711", "urgent": True}]})
    hq.wait_final(["code"], {"sent"}, 30)
    scheduled = wait_until(lambda: next((s for s in hq.on("status") if s["id"] == "calm"
                                         and s["state"] == "scheduled"), None), 20,
                           "the calm message scheduled")
    assert scheduled["reason"] == "quiet_hours"
    assert scheduled["not_before"].startswith("2026-11-24T00:00:00")  # 08:00 Beijing
    assert [m["text"] for m in pool.network()] == ["Code 4711"]

    daemon.set_clock(datetime(2026, 11, 24, 8, 0, 5, tzinfo=BEIJING).timestamp())
    hq.wait_final(["calm"], {"sent"}, 30)
    assert sorted(m["text"] for m in pool.network()) == ["Code 4711", "Your points expire soon"]


def test_the_frequency_cap_holds_across_batches(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool, _ = _start(pool_factory, daemon_factory, hq, 2,
                     extra=NO_LIMITS + "\n[send]\nper_recipient_24h = 2\n")
    customer = "+8613800138000"
    hq.publish("outbox", _batch("first", 2, to=customer))
    hq.wait_final(["first-0", "first-1"], {"sent"}, 30)
    hq.publish("outbox", _batch("second", 1, to=customer))
    held = wait_until(lambda: next((s for s in hq.on("status") if s["id"] == "second-0"
                                    and s["state"] == "scheduled"), None), 20,
                      "the third message held")
    assert held["reason"] == "frequency_cap"
    assert len(pool.network()) == 2


def test_an_expired_message_never_reaches_the_network(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool, _ = _start(pool_factory, daemon_factory, hq, 1, extra=NO_LIMITS)
    hq.publish("cmd", {"cmd_id": "p", "cmd": "pause"})
    wait_until(lambda: hq.on("reply"), 10, "pause")
    soon = datetime.fromtimestamp(time.time() + 2, tz=BEIJING).isoformat()
    hq.publish("outbox", {"batch_id": "exp", "expires_at": soon, "messages": [
        {"id": "e-1", "to": "+8613800138000", "text": "too late"}]})
    expired = wait_until(lambda: next((s for s in hq.on("status") if s["id"] == "e-1"
                                       and s["state"] == "expired"), None), 20, "expiry")
    assert expired["error"]["code"] == "expired"
    hq.publish("cmd", {"cmd_id": "r", "cmd": "resume"})
    hq.publish("outbox", _batch("after", 1))
    hq.wait_final(["after-0"], {"sent"}, 20)
    assert [m["text"] for m in pool.network()] == ["after 0"]


def test_an_urgent_message_overtakes_a_big_batch(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool, _ = _start(pool_factory, daemon_factory, hq, 2, extra=NO_LIMITS)
    hq.publish("outbox", _batch("big", 5000))
    hq.wait_ack("big", timeout=60)
    hq.publish("outbox", {"batch_id": "otp", "messages": [
        {"id": "otp-1", "to": "+8613900139000", "text": "Your code: 271828", "urgent": True}]})
    hq.wait_final(["otp-1"], {"sent"}, 30)
    texts = [m["text"] for m in pool.network()]
    position = texts.index("Your code: 271828")
    acked_at = len([s for s in hq.on("status") if s["state"] == "sent"])
    assert position <= 10, f"the urgent message was send number {position} ({acked_at} sent)"
    hq.publish("cmd", {"cmd_id": "c", "cmd": "cancel_batch", "batch_id": "big"})
    wait_until(lambda: any(r["cmd_id"] == "c" for r in hq.on("reply")), 20, "cancel_batch")


def test_a_route_prefers_its_operator_and_falls_back_when_allowed(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool = pool_factory(3)
    probe = daemon_factory(pool, extra=NO_LIMITS)
    probe.start()
    hq.wait_online()
    operators = {m["port"]: m["operator"] for m in _wait_ready(hq, 3)["modems"]}
    assert probe.stop() == 0
    lonely = Counter(operators.values()).most_common()[-1][0]  # the operator fewest SIMs have
    route_port = next(p for p, o in operators.items() if o == lonely)

    daemon = daemon_factory(pool, extra=NO_LIMITS + '\n[[routing]]\nprefix = "+86139"\n'
                            f'operators = ["{lonely}"]\nfallback = false\n')
    daemon.start()
    hq.received.clear()
    hq.wait_online()
    _wait_ready(hq, 3)
    hq.publish("outbox", _batch("route", 12, to="+8613900139000"))
    hq.wait_final([f"route-{i}" for i in range(12)], {"sent"}, 60)
    assert {m["port"] for m in pool.network()} == {route_port}
    assert daemon.stop() == 0

    fallback = daemon_factory(pool, extra=NO_LIMITS + '\n[[routing]]\nprefix = "+86139"\n'
                              'iccids = ["0000"]\nfallback = true\n')
    fallback.start()
    hq.received.clear()
    hq.wait_online()
    _wait_ready(hq, 3)
    hq.publish("outbox", _batch("fb", 12, to="+8613900139001"))
    hq.wait_final([f"fb-{i}" for i in range(12)], {"sent"}, 60)
    used = {m["port"] for m in pool.network() if m["text"].startswith("fb ")}
    assert len(used) > 1
