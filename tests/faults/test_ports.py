"""Modem faults mid-batch: a port unplugged and replugged, a port that hangs."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from tests.faults.helpers import (
    batch,
    control,
    expected_pairs,
    final_states,
    log_tail,
    network_duplicates,
    states_of_port,
    terminal_problems,
    with_modem_keys,
)
from tests.support.hq import Hq
from tests.support.wait import wait_until

LATENCY = (0.2, 0.05)  # long enough that a batch of 200 spans the fault and the repair
BACK_IN_SERVICE_S = 10


def _done(hq: Hq, ids: set[str]) -> bool:
    return len(final_states(hq, ids)) == len(ids) and all(
        s["state"] in {"sent", "failed", "uncertain", "expired", "cancelled"}
        for s in final_states(hq, ids).values())


def _check_once_each(hq: Hq, pool: Any, b: dict[str, Any]) -> Counter[str]:
    ids = set(expected_pairs(b))
    assert terminal_problems(hq, ids) == []
    assert network_duplicates(pool) == {}, "sent twice"
    finals = final_states(hq, ids)
    on_network = {(m["to"], m["text"]) for m in pool.network()}
    for i, s in finals.items():
        if s["state"] == "sent":
            assert expected_pairs(b)[i] in on_network, f"{i} sent per HQ, not on the network"
    return Counter(s["state"] for s in finals.values())


def _sent_on(pool: Any, port: str) -> int:
    return sum(1 for m in pool.network() if m["port"] == port)


def test_unplugged_port_mid_batch_loses_nothing(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool = pool_factory(4, latency=LATENCY)
    daemon = daemon_factory(pool)
    daemon.start()
    hq.wait_online()
    b = batch("unplug", "u", 200)
    ids = set(expected_pairs(b))
    hq.publish("outbox", b)

    wait_until(lambda: len(pool.network()) >= 40 and _sent_on(pool, "ttyGSM1") > 0, 30,
               "the batch to be under way on every port")
    control(pool, "unplug", port=1)
    at_unplug = len(pool.network())
    on_1 = _sent_on(pool, "ttyGSM1")
    # The other three ports keep sending while ttyGSM1 is out.
    wait_until(lambda: len(pool.network()) >= at_unplug + 45, 30,
               "the other ports to keep sending")
    # At most the message in flight at the unplug can still land on ttyGSM1.
    assert _sent_on(pool, "ttyGSM1") <= on_1 + 1
    assert daemon.alive

    heard_before_replug = len(hq.received)
    control(pool, "replug", port=1)
    replugged = time.monotonic()

    def back() -> bool:
        later = hq.received[heard_before_replug:]
        ready = any(m.get("port") == "ttyGSM1" and m.get("state") == "ready"
                    for t, st in later if t == "state" for m in st.get("modems") or [])
        return ready or _sent_on(pool, "ttyGSM1") > on_1 + 1
    try:
        wait_until(back, BACK_IN_SERVICE_S, "ttyGSM1 back in service after the replug")
    except AssertionError:
        raise AssertionError(f"states of ttyGSM1 HQ heard: {states_of_port(hq, 'ttyGSM1')}\n"
                             f"{log_tail(daemon)}") from None
    back_after = time.monotonic() - replugged

    wait_until(lambda: _done(hq, ids), 60, "every message of the batch to finish")
    finals = _check_once_each(hq, pool, b)
    print(f"\nunplug figures: finals={dict(finals)} back_in_service_after={back_after:.1f}s "
          f"per_port={Counter(m['port'] for m in pool.network())}")
    assert set(finals) <= {"sent", "uncertain"}, finals
    assert finals["uncertain"] <= 1, "only the message in flight at the unplug may be uncertain"
    assert daemon.stop() == 0


def test_hung_port_is_detected_and_its_message_finished_elsewhere_or_uncertain(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool = pool_factory(4, latency=LATENCY)
    # 20x the latency, so only the hung port times out, even on a slow machine.
    daemon = with_modem_keys(daemon_factory(pool), "cmgs_timeout_s = 4")
    daemon.start()
    hq.wait_online()
    b = batch("hang", "h", 200)
    ids = set(expected_pairs(b))
    hq.publish("outbox", b)

    wait_until(lambda: len(pool.network()) >= 40 and _sent_on(pool, "ttyGSM2") > 0, 30,
               "the batch to be under way on every port")
    heard_before_hang = len(hq.received)
    control(pool, "hang", port=2, on=True)
    on_2 = _sent_on(pool, "ttyGSM2")
    try:
        wait_until(lambda: _done(hq, ids), 90, "the rest of the batch to finish")
    except AssertionError:
        raise AssertionError(f"{Counter(s['state'] for s in final_states(hq, ids).values())}\n"
                             f"{log_tail(daemon)}") from None
    # The PDU written just before the hang may reach the network; its answer never comes.
    assert _sent_on(pool, "ttyGSM2") <= on_2 + 1, "a hung port cannot send"
    finals = _check_once_each(hq, pool, b)
    during_hang = [m.get("state") for t, st in hq.received[heard_before_hang:] if t == "state"
                   for m in st.get("modems") or [] if m.get("port") == "ttyGSM2"]
    uncertain = [s for s in final_states(hq, ids).values() if s["state"] == "uncertain"]
    failed = [s for s in final_states(hq, ids).values() if s["state"] == "failed"]
    print(f"\nhang figures: finals={dict(finals)} ttyGSM2 states during hang={during_hang} "
          f"uncertain={[(s['id'], s.get('sim'), s.get('error')) for s in uncertain]} "
          f"failed={[(s['id'], s.get('sim'), s.get('error')) for s in failed][:5]}")
    assert not failed, "a hung port must not fail messages that never reached it"
    assert len(uncertain) <= 1, "only the message in flight when it hung may be uncertain"
    for s in uncertain:
        assert s["sim"]["port"] == "ttyGSM2" and s["error"]["code"] == "modem_timeout", s
    assert any(st != "ready" for st in during_hang), (
        f"the hung port was never reported out of service: {during_hang}")

    heard_before_unhang = len(hq.received)
    control(pool, "hang", port=2, on=False)
    wait_until(lambda: any(m.get("port") == "ttyGSM2" and m.get("state") == "ready"
                           for t, st in hq.received[heard_before_unhang:] if t == "state"
                           for m in st.get("modems") or []),
               BACK_IN_SERVICE_S + 5, "ttyGSM2 reported ready after the hang ends")
    after = batch("after-hang", "ah", 40, start=1000)
    hq.publish("outbox", after)
    wait_until(lambda: _done(hq, set(expected_pairs(after))), 60, "the next batch")
    assert _sent_on(pool, "ttyGSM2") > on_2, "ttyGSM2 is not used again after the hang"
    assert network_duplicates(pool) == {}
    assert daemon.stop() == 0
