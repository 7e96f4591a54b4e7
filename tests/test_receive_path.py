"""Replies come home: inbound SMS, delivery reports, opt-outs and HQ commands, end to end."""

from __future__ import annotations

import sqlite3
from typing import Any

from modem.sim.control import request
from tests.support.gateway import Daemon, SimulatedPool
from tests.support.hq import Hq
from tests.support.wait import wait_until

RUSSIAN_3_PARTS = ("Добрый день! Спасибо за напоминание о продлении подписки. " * 3)[:190]
CHINESE_2_PARTS = ("您好，我想了解一下积分兑换的规则，以及到期后是否还能延期使用。"
                   "谢谢！请尽快回复我，") * 2
RECEIVE = "\n[receive]\nscan_s = 2\nreassembly_timeout_s = 3\ninactive_after = 2\n"
CUSTOMER = "+8613800138000"


def _inject(pool: SimulatedPool, port: int, sender: str, text: str, **extra: Any) -> None:
    reply = request(pool.dir, {"cmd": "inject_sms", "port": port, "from": sender,
                               "text": text, **extra})
    assert reply["ok"], reply


def _inbox(hq: Hq, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    return wait_until(lambda: (got := hq.on("inbox")) and len(got) >= count and got, timeout,
                      f"{count} inbound messages")


def _start(pool_factory: Any, daemon_factory: Any, hq: Hq, ports: int = 2,
           extra: str = RECEIVE) -> tuple[SimulatedPool, Daemon]:
    pool = pool_factory(ports)
    daemon = daemon_factory(pool, extra=extra)
    daemon.start()
    hq.wait_online()
    wait_until(lambda: any(m["state"] == "ready" for m in _state(hq)["modems"]), 20,
               "a ready port")
    return pool, daemon


def _state(hq: Hq) -> dict[str, Any]:
    return hq.on("state")[-1] if hq.on("state") else {"modems": []}


def test_multipart_replies_arrive_reassembled_and_byte_identical_once_each(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool, _ = _start(pool_factory, daemon_factory, hq)
    _inject(pool, 0, "+79161234567", RUSSIAN_3_PARTS)
    _inject(pool, 1, CUSTOMER, CHINESE_2_PARTS, ref_bits=16)
    inbox = _inbox(hq, 2)
    by_text = {m["text"]: m for m in inbox}
    assert set(by_text) == {RUSSIAN_3_PARTS, CHINESE_2_PARTS}
    assert by_text[RUSSIAN_3_PARTS]["parts"] == 3
    assert by_text[RUSSIAN_3_PARTS]["from"] == "+79161234567"
    assert by_text[CHINESE_2_PARTS]["parts"] == 2
    assert all(m["complete"] is True for m in inbox)
    assert by_text[CHINESE_2_PARTS]["sim"]["port"] == "ttyGSM1"
    # A later storage scan must not publish them again.
    wait_until(lambda: _sim_storage_empty(pool), 10, "the SIM storage to be emptied")
    hq.publish("cmd", {"cmd_id": "s", "cmd": "state"})
    wait_until(lambda: hq.on("reply"), 10, "a reply")
    assert len(hq.on("inbox")) == 2


def _sim_storage_empty(pool: SimulatedPool) -> bool:
    stats = request(pool.dir, {"cmd": "stats"})["ports"]
    return all(sum((p.get("inbox_used") or {}).values()) == 0 for p in stats)


def test_parts_out_of_order_assemble_and_a_missing_part_is_published_incomplete(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool, _ = _start(pool_factory, daemon_factory, hq)
    _inject(pool, 0, "+79161234567", RUSSIAN_3_PARTS, order=[3, 1, 2], repeat=[1])
    first = _inbox(hq, 1)[0]
    assert first["text"] == RUSSIAN_3_PARTS and first["complete"] is True

    _inject(pool, 0, "+79031234567", RUSSIAN_3_PARTS, drop=[2])
    partial = wait_until(lambda: next((m for m in hq.on("inbox") if not m["complete"]), None),
                         30, "the incomplete message after the reassembly timeout")
    assert partial["from"] == "+79031234567"
    assert partial["parts"] == 3
    assert RUSSIAN_3_PARTS.startswith(partial["text"][:60])
    assert len(hq.on("inbox")) == 2


def test_replies_during_a_broker_outage_are_published_once_after_it_returns(
        pool_factory: Any, daemon_factory: Any, hq: Hq, broker: Any) -> None:
    pool, _ = _start(pool_factory, daemon_factory, hq)
    hq.close()
    broker.stop()
    for i in range(20):
        _inject(pool, i % 2, f"+861390013{i:04d}", f"Reply number {i}")
    wait_until(lambda: _sim_storage_empty(pool), 30, "all 20 replies taken off the SIMs")
    broker.start()
    hq2 = Hq(broker.port, "gw-test")
    try:
        inbox = _inbox(hq2, 20, timeout=60)
        assert sorted(m["text"] for m in inbox) == sorted(f"Reply number {i}" for i in range(20))
        assert len({m["id"] for m in inbox}) == 20
    finally:
        hq2.close()


def test_a_reply_read_but_not_published_survives_sigkill(
        pool_factory: Any, daemon_factory: Any, hq: Hq, broker: Any) -> None:
    pool, daemon = _start(pool_factory, daemon_factory, hq)
    broker.stop()  # nothing can be published now
    _inject(pool, 0, CUSTOMER, "Please call me back")
    wait_until(lambda: _sim_storage_empty(pool), 20, "the reply to leave the SIM")
    daemon.kill()
    db = daemon.dir / "data" / "gateway.sqlite3"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT text FROM inbound").fetchall() == [("Please call me back",)]
    broker.start()
    hq2 = Hq(broker.port, "gw-test")
    try:
        daemon.start()
        inbox = _inbox(hq2, 1)
        assert inbox[0]["text"] == "Please call me back"
    finally:
        hq2.close()


def test_an_opt_out_reply_stops_the_number(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool, _ = _start(pool_factory, daemon_factory, hq)
    hq.publish("outbox", {"batch_id": "before", "messages": [
        {"id": "first", "to": CUSTOMER, "text": "Your points expire soon"}]})
    hq.wait_final(["first"], {"sent"}, 30)
    hq.publish("cmd", {"cmd_id": "p", "cmd": "pause"})
    wait_until(lambda: any(r["cmd_id"] == "p" for r in hq.on("reply")), 10, "pause")
    hq.publish("outbox", {"batch_id": "waiting", "messages": [
        {"id": "second", "to": CUSTOMER, "text": "Another offer"}]})
    hq.wait_ack("waiting")

    _inject(pool, 0, CUSTOMER, "退订")
    event = wait_until(lambda: next((e for e in hq.on("events") if e["type"] == "opt_out"),
                                    None), 30, "the opt_out event")
    assert event["number"] == CUSTOMER and event["keyword"] == "退订"
    reply = _inbox(hq, 1)[0]
    assert reply["id"] == event["inbound_id"]
    assert reply["in_reply_to"] == {"id": "first", "batch_id": "before"}
    cancelled = wait_until(lambda: [s for s in hq.on("status") if s["id"] == "second"
                                    and s["state"] == "cancelled"], 10, "second cancelled")
    assert cancelled[0]["error"]["code"] == "opted_out"

    hq.publish("outbox", {"batch_id": "after", "messages": [
        {"id": "third", "to": "13800138000", "text": "Come back!"}]})
    ack = hq.wait_ack("after")
    assert ack["accepted"] == 0
    assert ack["rejected"][0]["code"] == "opted_out"


def test_delivery_reports_settle_sent_messages_and_flag_dead_numbers(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool, _ = _start(pool_factory, daemon_factory, hq, ports=2)
    assert request(pool.dir, {"cmd": "reports", "outcome": "delivered", "delay_s": 0.2})["ok"]
    hq.publish("outbox", {"batch_id": "ok", "messages": [
        {"id": "d-1", "to": CUSTOMER, "text": "short"},
        {"id": "d-2", "to": "+8613900139000", "text": "长" * 150}]})
    hq.wait_final(["d-1", "d-2"], {"delivered"}, 30)
    assert hq.statuses("d-2") == ["queued", "sending", "sent", "delivered"]

    assert request(pool.dir, {"cmd": "reports", "outcome": "failed", "delay_s": 0.2})["ok"]
    dead = "+8613700137000"
    for i in range(2):
        hq.publish("outbox", {"batch_id": f"dead-{i}", "messages": [
            {"id": f"x-{i}", "to": dead, "text": f"attempt {i}"}]})
        hq.wait_final([f"x-{i}"], {"failed"}, 30)
    failed = next(s for s in hq.on("status") if s["id"] == "x-0" and s["state"] == "failed")
    assert failed["error"]["code"] == "delivery_failed"
    event = wait_until(lambda: next((e for e in hq.on("events")
                                     if e["type"] == "number_inactive"), None), 10,
                       "number_inactive")
    assert event["number"] == dead and event["failures"] == 2


def test_every_command_is_answered_and_takes_effect(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    _start(pool_factory, daemon_factory, hq)

    def command(cmd_id: str, cmd: str, **args: Any) -> dict[str, Any]:
        hq.publish("cmd", {"cmd_id": cmd_id, "cmd": cmd, **args})
        return wait_until(lambda: next((r for r in hq.on("reply") if r["cmd_id"] == cmd_id),
                                       None), 10, f"the reply to {cmd}")

    assert command("1", "pause")["ok"]
    hq.publish("outbox", {"batch_id": "held", "messages": [
        {"id": f"h-{i}", "to": f"+8613800138{i:03d}", "text": f"held {i}"} for i in range(6)]})
    hq.wait_ack("held")
    assert command("2", "state")["result"]["queue"]["queued"] == 6
    assert command("3", "cancel", ids=["h-0", "h-1", "nope"])["result"]["ids"] == {
        "h-0": "cancelled", "h-1": "cancelled", "nope": "unknown"}
    assert command("4", "stoplist_add", numbers=["13800138002"])["result"]["cancelled"] == 1
    assert command("5", "stoplist_remove", numbers=["+8613800138002"])["result"] == {
        "removed": 1}
    assert command("6", "cancel_batch", batch_id="held")["result"] == {"cancelled": 3}
    hq.publish("outbox", {"batch_id": "go", "messages": [
        {"id": "g-1", "to": "+8613800138002", "text": "after removal"}]})
    hq.wait_ack("go")
    assert command("7", "resume")["ok"]
    hq.wait_final(["g-1"], {"sent"}, 30)
    assert [s["state"] for s in hq.on("status") if s["id"] == "h-2"][-1] == "cancelled"
    bad = command("8", "launch_rockets")
    assert bad["ok"] is False and bad["error"]["code"] == "unknown_command"
    assert command("9", "stoplist_add", numbers=["12"])["error"]["code"] == "invalid_number"
