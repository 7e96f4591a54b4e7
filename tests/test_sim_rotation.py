"""Rotating SIMs inside a port, end to end: simulated ports with several card slots."""

from __future__ import annotations

from collections import Counter
from typing import Any

from modem.sim.control import request
from tests.support.gateway import Daemon, SimulatedPool
from tests.support.hq import Hq
from tests.support.wait import wait_until

SLOTS = ("--slots", "3", "--switch-delay", "0.3")
ROTATION = ("\n[limits]\nper_hour = 0\nper_day = 10\n"
            "\n[send]\nretry_backoff_s = 0\nbench_after_failures = 1\n")
MODEMS = "switch_timeout_s = 20\n"


def _start(pool_factory: Any, daemon_factory: Any, hq: Hq,
           ports: int = 2) -> tuple[SimulatedPool, Daemon]:
    pool = pool_factory(ports, extra_args=SLOTS)
    daemon = daemon_factory(pool, extra=ROTATION, modems_extra=MODEMS)
    daemon.start()
    hq.wait_online()
    return pool, daemon


def _batch(batch_id: str, n: int, text: str = "") -> dict[str, Any]:
    return {"batch_id": batch_id, "messages": [
        {"id": f"{batch_id}-{i}", "to": f"+86138{i:08d}", "text": text or f"{batch_id} {i}"}
        for i in range(n)]}


def test_ports_rotate_cards_past_the_daily_quota_and_keep_counting_over_a_restart(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool, daemon = _start(pool_factory, daemon_factory, hq)
    batch = _batch("rot", 55)
    hq.publish("outbox", batch)
    wait_until(lambda: len(pool.network()) >= 25, 120, "25 messages out")
    assert daemon.stop() == 0
    daemon.start()
    ids = [m["id"] for m in batch["messages"]]
    hq.wait_final(ids, {"sent"}, 180)

    network = pool.network()
    assert sorted(m["text"] for m in network) == sorted(m["text"] for m in batch["messages"])
    per_card = Counter(m["iccid"] for m in network)
    assert max(per_card.values()) <= 10, per_card
    assert len(per_card) >= 6 - 1  # 55 messages need at least 6 cards of 10
    switched = [e for e in hq.on("events") if e["type"] == "sim_switched"]
    assert len(switched) >= 4
    assert all(e["reason"] and e["took_s"] >= 0 for e in switched)
    assert "sim_switched" in daemon.log()


def test_a_card_the_operator_blocks_is_switched_away_from_without_a_duplicate(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool, _ = _start(pool_factory, daemon_factory, hq, ports=1)
    assert request(pool.dir, {"cmd": "block_after", "port": 0, "sends": 3, "code": 21})["ok"]
    batch = _batch("blk", 8)
    hq.publish("outbox", batch)
    hq.wait_final([m["id"] for m in batch["messages"]], {"sent"}, 120)
    network = pool.network()
    assert sorted(m["text"] for m in network) == sorted(m["text"] for m in batch["messages"])
    assert len({m["iccid"] for m in network}) >= 2
    assert any(e["type"] == "sim_switched" for e in hq.on("events"))


def test_multipart_messages_never_straddle_a_switch(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool, _ = _start(pool_factory, daemon_factory, hq, ports=1)
    text = "Длинное напоминание о продлении подписки. " * 5  # 210 characters: 4 UCS2 parts
    batch = _batch("mp", 8, text=text)
    hq.publish("outbox", batch)
    hq.wait_final([m["id"] for m in batch["messages"]], {"sent"}, 120)
    network = pool.network()
    assert len(network) == 8
    # Every message arrived whole: the network joins parts per card, so a message
    # split over two cards would never be complete in the journal.
    assert all(m["text"] == text and m["parts"] == 4 for m in network)
    assert len({m["iccid"] for m in network}) >= 2  # and switches did happen


def test_an_empty_slot_is_skipped_and_reported(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool = pool_factory(1, extra_args=SLOTS)
    assert request(pool.dir, {"cmd": "slot", "port": 0, "slot": 1, "state": "empty"})["ok"]
    daemon = daemon_factory(pool, extra=ROTATION, modems_extra=MODEMS)
    daemon.start()
    hq.wait_online()
    batch = _batch("skip", 15)
    hq.publish("outbox", batch)
    hq.wait_final([m["id"] for m in batch["messages"]], {"sent"}, 120)
    unusable = wait_until(lambda: next((e for e in hq.on("events")
                                        if e["type"] == "sim_slot_unusable"), None), 10,
                          "the empty slot reported")
    assert unusable["slot"] == 1
    assert len({m["iccid"] for m in pool.network()}) == 2
