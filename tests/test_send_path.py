"""The spine end to end: HQ publishes batches over a real mosquitto, the real daemon sends
them through simulated modems on pseudo-terminals, HQ hears about every message."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.support.hq import Hq
from tests.support.wait import wait_until

GSM7_SPECIALS = "€ [ ] { } ^ ~ | \\"
RUSSIAN_400 = ("Уважаемый клиент, напоминаем: пробный период заканчивается завтра. " * 7)[:400]
TEMPLATE = "尊敬的{name}，您的积分{points}分将于{date}到期。回复TD退订 #{n}"


def _number(i: int) -> str:
    return f"+86138{i:08d}"


def _first_batch() -> dict[str, Any]:
    messages = []
    for i in range(100):
        kind = i % 4
        if kind == 0:
            text = f"您好，订单{i}已确认。"
        elif kind == 1:
            text = f"Здравствуйте! Ваш бонус {i} рублей."
        elif kind == 2:
            text = f"Order {i}: {GSM7_SPECIALS} @£$¥ ok"
        else:
            text = f"{i} {RUSSIAN_400}"[:400]
        messages.append({"id": f"a-{i}", "to": _number(i), "text": text})
    return {"batch_id": "batch-a", "messages": messages}


def _second_batch() -> dict[str, Any]:
    return {"batch_id": "batch-b", "template": TEMPLATE, "messages": [
        {"id": f"b-{i}", "to": _number(1000 + i),
         "vars": {"name": "林瓊", "points": 150 + i, "date": "11月30日", "n": i}}
        for i in range(100)]}


def _expected(batch: dict[str, Any]) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for m in batch["messages"]:
        text = m.get("text") or batch["template"].format(**m["vars"])
        out[(m["to"], text)] += 1
    return out


def test_two_batches_reach_the_network_once_each_with_identical_text(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool = pool_factory(4)
    daemon = daemon_factory(pool)
    daemon.start()
    hq.wait_online()
    first, second = _first_batch(), _second_batch()
    hq.publish("outbox", first)
    hq.publish("outbox", second)

    assert hq.wait_ack("batch-a") == {"gw": "gw-test", "seq": hq.wait_ack("batch-a")["seq"],
                                      "batch_id": "batch-a", "accepted": 100,
                                      "duplicates": 0, "rejected": []}
    assert hq.wait_ack("batch-b")["accepted"] == 100
    ids = [m["id"] for m in first["messages"] + second["messages"]]
    hq.wait_final(ids, {"sent"}, timeout=120)

    expected = _expected(first) + _expected(second)
    wait_until(lambda: len(pool.network()) >= 200, 10, "200 messages on the network")
    got = Counter((m["to"], m["text"]) for m in pool.network())
    assert got == expected
    for msg_id in ids:
        assert hq.statuses(msg_id) == ["queued", "sending", "sent"], msg_id
    sent = {s["id"]: s for s in hq.on("status") if s["state"] == "sent"}
    assert sent["a-3"]["encoding"] == "ucs2" and sent["a-3"]["parts"] == 6
    assert sent["a-2"]["encoding"] == "gsm7" and sent["a-2"]["parts"] == 1
    assert {s["sim"]["port"] for s in sent.values()} == {f"ttyGSM{i}" for i in range(4)}

    # The same batches again: all duplicates, nothing more on the network.
    hq.received.clear()
    hq.publish("outbox", first)
    hq.publish("outbox", second)
    acks = [hq.wait_ack("batch-a"), hq.wait_ack("batch-b")]
    assert sum(a["duplicates"] for a in acks) == 200
    assert sum(a["accepted"] for a in acks) == 0
    assert len(pool.network()) == 200
    assert daemon.stop() == 0


def test_bad_items_are_rejected_with_codes_and_good_ones_go_out(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool = pool_factory(2)
    daemon = daemon_factory(pool)
    daemon.start()
    hq.wait_online()
    hq.publish("outbox", b"this is not json {")
    assert hq.wait_ack(None)["error"]["code"] == "bad_batch"

    good = [{"id": f"g-{i}", "to": _number(i), "text": f"good {i}"} for i in range(10)]
    bad = [
        ({"id": "x-number", "to": "12345", "text": "hi"}, "invalid_number"),
        ({"id": "x-empty", "to": _number(50), "text": ""}, "empty_text"),
        ({"id": "x-blank", "to": _number(51), "text": "   "}, "empty_text"),
        ({"id": "x-var", "to": _number(52), "template": "Hi {name}", "vars": {}},
         "template_var_missing"),
        ({"id": "x-long", "to": _number(53), "text": "x" * 2000}, "too_long"),
        ({"id": "x-type", "to": 8613800138000, "text": "hi"}, "bad_message"),
        ({"id": "x-noto", "text": "hi"}, "bad_message"),
        ({"id": "x-offset", "to": _number(54), "text": "hi",
          "not_before": "2026-11-24T09:00:00"}, "bad_message"),
        ({"id": "x-expired", "to": _number(55), "text": "hi",
          "expires_at": "2020-01-01T00:00:00+08:00"}, "expired"),
        ({"id": "x-vartype", "to": _number(56), "template": "Hi {name}",
          "vars": {"name": ["a"]}}, "bad_message"),
    ]
    hq.publish("outbox", {"batch_id": "mixed", "messages": good + [b for b, _ in bad]})
    ack = hq.wait_ack("mixed")
    assert ack["accepted"] == 10
    assert {r["id"]: r["code"] for r in ack["rejected"]} == {b["id"]: code for b, code in bad}
    assert all(r["reason"] for r in ack["rejected"])
    hq.wait_final([g["id"] for g in good], {"sent"}, timeout=60)
    assert sorted(m["text"] for m in pool.network()) == sorted(g["text"] for g in good)
    assert daemon.alive


def test_a_batch_published_while_the_daemon_is_stopped_is_sent_when_it_starts(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool = pool_factory(2)
    daemon = daemon_factory(pool)
    daemon.start()
    hq.wait_online()
    assert daemon.stop() == 0
    wait_until(lambda: hq.on("state") and not hq.on("state")[-1]["online"], 10,
               "the gateway to say it is offline")

    hq.publish("outbox", {"batch_id": "while-down", "messages": [
        {"id": f"d-{i}", "to": _number(i), "text": f"sent after start {i}"} for i in range(5)]})
    daemon.start()
    assert hq.wait_ack("while-down", timeout=30)["accepted"] == 5
    hq.wait_final([f"d-{i}" for i in range(5)], {"sent"}, timeout=30)
    assert len(pool.network()) == 5
