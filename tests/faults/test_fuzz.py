"""Random and mutated payloads on the outbox and cmd topics never stop the gateway."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from typing import Any

from tests.faults.helpers import (
    PersistentHq,
    batch,
    expected_pairs,
    fast_publisher,
    final_states,
    log_tail,
    number,
    unique_by_seq,
)
from tests.support.broker import Broker
from tests.support.wait import wait_until

SEED = 77
OUTBOX_PAYLOADS = 10_000
CMD_PAYLOADS = 1_000
ID_POOL = 30  # accepted fuzz messages reuse these ids: at most 30 are really sent

JUNK_VALUES: list[Any] = [None, True, False, 0, -1, 1e308, 2**70, "", " ", "\u0000", "\ud800x",
                          "x" * 5000, [], {}, [1, 2], {"a": 1}, "2026-11-24T09:00:00",
                          "2020-01-01T00:00:00+08:00", "not a date", "+86", "13800138000",
                          "😀" * 100, "{name}", "{{", "}}", "{0}", "{name!r}", 5.5, -0.0]


def _valid_message(rng: random.Random, i: int) -> dict[str, Any]:
    k = rng.randrange(ID_POOL)
    return {"id": f"fz-{k}", "to": number(5000 + k), "text": f"fuzz {k}"}


def _mutated_batch(rng: random.Random, i: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"batch_id": f"fzb-{i}",
                           "messages": [_valid_message(rng, i) for _ in range(rng.randint(0, 4))]}
    for _ in range(rng.randint(1, 4)):
        msgs = doc.get("messages")
        items = [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []
        target = doc if not items or rng.random() < 0.3 else rng.choice(items)
        key = rng.choice(["id", "to", "text", "template", "vars", "priority", "not_before",
                          "expires_at", "delivery_report", "urgent", "messages", "junk",
                          "batch_id"])
        if target is doc and key == "batch_id":
            continue  # keep it readable and unique: each payload's ack is counted
        if rng.random() < 0.15:
            target.pop(key, None)
        else:
            target[key] = rng.choice(JUNK_VALUES)
    return doc


def _nested(depth: int) -> bytes:
    return b'{"batch_id": "deep", "messages": ' + b"[" * depth + b"]" * depth + b"}"


def _outbox_payload(rng: random.Random, i: int) -> tuple[bytes, str | None]:
    """A payload and the batch_id its ack must carry (None: not tracked one by one)."""
    r = rng.random()
    if r < 0.15:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))), None
    if r < 0.25:
        return json.dumps(rng.choice([1, "x", [1], None, 3.5, True, ["batch_id"]])).encode(), None
    if r < 0.27:
        return (b"[" * rng.choice([100, 10_000, 200_000]) + b"]"), None
    if r < 0.29:
        return _nested(rng.choice([50, 5_000, 100_000])), None
    if r < 0.30:
        return json.dumps({"batch_id": f"fzb-{i}", "messages": [
            {"id": "huge", "to": number(1), "text": "x" * 2_000_000}]}).encode(), f"fzb-{i}"
    if r < 0.40:
        raw = bytearray(json.dumps(_mutated_batch(rng, i)).encode())
        for _ in range(rng.randint(1, 5)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw), None
    if r < 0.45:
        return json.dumps({"batch_id": rng.choice(JUNK_VALUES),
                           "messages": rng.choice(JUNK_VALUES)}).encode(), None
    doc = _mutated_batch(rng, i)
    return json.dumps(doc).encode(), doc["batch_id"]


def _cmd_payload(rng: random.Random, i: int) -> tuple[bytes, str | None]:
    r = rng.random()
    if r < 0.15:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200))), None
    if r < 0.2:
        return b"[" * 100_000, None
    doc: dict[str, Any] = {"cmd_id": f"c-{i}",
                           "cmd": rng.choice(["state", "cancel", "cancel_batch", "pause",
                                              "resume", "bogus", "", 5, None, ["state"]])}
    for _ in range(rng.randint(0, 3)):
        doc[rng.choice(["ids", "batch_id", "numbers", "x"])] = rng.choice(
            [*JUNK_VALUES, ["fz-1", "nope"], [f"fz-{rng.randrange(ID_POOL)}"]])
    return json.dumps(doc).encode(), "c-" + str(i)


def test_fuzzed_payloads_never_stop_the_gateway(
        pool_factory: Any, daemon_factory: Any, broker: Broker) -> None:
    # Not the hq fixture: it subscribes to smsgw/gw/# and would receive the fuzz itself.
    hq = PersistentHq(broker.port, "gw-test", client_id="hq-fuzz",
                      topics=("ack", "reply", "status", "state"))
    try:
        _run(hq, pool_factory, daemon_factory, broker)
    finally:
        hq.close()


def _run(hq: PersistentHq, pool_factory: Any, daemon_factory: Any, broker: Broker) -> None:
    began = time.monotonic()
    rng = random.Random(SEED)
    pool = pool_factory(2)
    daemon = daemon_factory(pool)
    daemon.start()
    hq.wait_online()
    fuzzer = fast_publisher(hq.client._port)

    tracked_batches: Counter[str] = Counter()
    tracked_cmds: set[str] = set()
    infos = []
    for i in range(OUTBOX_PAYLOADS):
        payload, batch_id = _outbox_payload(rng, i)
        if batch_id:
            tracked_batches[batch_id] += 1
        infos.append(fuzzer.publish(f"{hq.root}/outbox", payload, qos=1))
        if i % 10 == 0:
            payload, cmd_id = _cmd_payload(rng, i // 10)
            if cmd_id:
                tracked_cmds.add(cmd_id)
            infos.append(fuzzer.publish(f"{hq.root}/cmd", payload, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    fuzzer.disconnect()
    fuzzer.loop_stop()
    published_at = time.monotonic() - began

    def acks() -> list[dict[str, Any]]:
        return unique_by_seq(hq.on("ack"))
    try:
        wait_until(lambda: len(acks()) >= OUTBOX_PAYLOADS, 100,
                   f"{OUTBOX_PAYLOADS} BatchAcks")
    except AssertionError:
        raise AssertionError(f"{len(acks())} acks; alive={daemon.alive}\n{log_tail(daemon)}"
                             ) from None
    assert daemon.alive
    replies = unique_by_seq(hq.on("reply"))
    wait_until(lambda: tracked_cmds <= {r.get("cmd_id") for r in unique_by_seq(hq.on("reply"))},
               30, "a reply to every command with a readable cmd_id")
    replies = unique_by_seq(hq.on("reply"))

    # The gateway is still working: resume (the fuzz may have paused it), then a good batch.
    hq.publish("cmd", {"cmd_id": "final-resume", "cmd": "resume"})
    wait_until(lambda: any(r.get("cmd_id") == "final-resume" for r in hq.on("reply")), 20,
               "the reply to resume")
    good = batch("after-fuzz", "g", 10, start=9000)
    hq.publish("outbox", good)
    assert hq.wait_ack("after-fuzz")["accepted"] == 10
    gids = set(expected_pairs(good))
    wait_until(lambda: {i for i, s in final_states(hq, gids).items()
                        if s["state"] == "sent"} == gids, 60, "the good batch to be sent")
    duration = time.monotonic() - began

    all_acks = acks()
    ack_ids = Counter(a.get("batch_id") for a in all_acks)
    codes: Counter[str] = Counter()
    for a in all_acks:
        if "error" in a:
            codes["batch:" + a["error"]["code"]] += 1
        for r in a.get("rejected") or []:
            codes["message:" + r["code"]] += 1
        if a.get("duplicates"):
            codes["message:duplicate"] += a["duplicates"]
        if a.get("accepted"):
            codes["message:accepted"] += a["accepted"]
    reply_codes = Counter(("ok" if r.get("ok") else r.get("error", {}).get("code"))
                          for r in replies)
    print(f"\nfuzz figures: published_in={published_at:.1f}s duration={duration:.1f}s "
          f"acks={len(all_acks)} codes={dict(codes)} replies={len(replies)} "
          f"reply_codes={dict(reply_codes)} network={len(pool.network())}")
    assert len(all_acks) == OUTBOX_PAYLOADS + 1, "one BatchAck per outbox payload"
    wrong = {b: (n, ack_ids[b]) for b, n in tracked_batches.items() if ack_ids[b] != n}
    assert wrong == {}, f"batch_id: (published, acked): {list(wrong.items())[:10]}"
    non_batches = [a for a in all_acks if "accepted" not in a]
    assert all(a["error"]["code"] == "bad_batch" for a in non_batches)
    assert daemon.alive
    assert daemon.stop() == 0
