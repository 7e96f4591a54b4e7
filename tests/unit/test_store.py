"""store: the message state machine and the event outbox, on a real SQLite file."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from store.base import IllegalTransition
from store.events import with_envelope
from store.intake import NewMessage
from store.store import Store

NOW = 1_790_000_000.0
PORT, ICCID = "/dev/ttyGSM0", "8986001234567890123"


def _msg(hq_id: str, *, batch_id: str = "b-1", priority: int = 5, parts: int = 1,
         not_before: float | None = None, expires_at: float | None = None) -> NewMessage:
    return NewMessage(hq_id=hq_id, batch_id=batch_id, to="+8613800138000", text=f"text {hq_id}",
                      encoding="gsm7", parts=parts, priority=priority, not_before=not_before,
                      expires_at=expires_at, delivery_report=True, urgent=False)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path)
    yield s
    s.close()


def _states(store: Store) -> dict[str, str]:
    with sqlite3.connect(store.path) as db:
        return dict(db.execute("SELECT hq_id, state FROM message"))


def _events(store: Store) -> list[tuple[str, dict[str, Any]]]:
    return [(e.topic, json.loads(e.body)) for e in store.pending_events(0, 10_000)]


def _status(store: Store, hq_id: str) -> list[dict[str, Any]]:
    return [b for t, b in _events(store) if t == "status" and b["id"] == hq_id]


def _claim_all(store: Store) -> list[str]:
    out = []
    while (c := store.claim_next(PORT, ICCID, NOW)) is not None:
        out.append(c.hq_id)
    return out


# --- accept_batch ---------------------------------------------------------------

@pytest.mark.parametrize(("first", "second", "outcome"), [
    (["a", "b"], ["c"], (1, 0)),
    (["a", "b"], ["a", "b"], (0, 2)),
    (["a"], ["a", "a", "b"], (1, 2)),
    ([], ["x", "x", "x"], (1, 2)),  # duplicates inside one batch
    ([], [], (0, 0)),
])
def test_accept_batch_counts_duplicates(
    store: Store, first: list[str], second: list[str], outcome: tuple[int, int]
) -> None:
    store.accept_batch("b-0", [_msg(i) for i in first], [], NOW)
    result = store.accept_batch("b-1", [_msg(i) for i in second], [], NOW)
    assert (result.accepted, result.duplicates) == outcome
    assert sorted(_states(store)) == sorted(set(first) | set(second))


def test_accept_batch_writes_one_status_per_accepted_message_and_one_ack(store: Store) -> None:
    rejected = [{"id": "bad", "code": "invalid_number", "reason": "x"}]
    msgs = [_msg("a"), _msg("b", not_before=NOW + 60), _msg("a")]
    store.accept_batch("b-1", msgs, rejected, NOW)
    events = _events(store)
    statuses = [(b["id"], b["state"]) for t, b in events if t == "status"]
    assert statuses == [("a", "queued"), ("b", "scheduled")]
    acks = [b for t, b in events if t == "ack"]
    assert acks == [{"batch_id": "b-1", "accepted": 2, "duplicates": 1, "rejected": rejected}]
    assert all(b["batch_id"] == "b-1" and b["encoding"] == "gsm7" and b["parts"] == 1
               for t, b in events if t == "status")


def test_duplicate_batch_still_gets_an_ack_but_no_status(store: Store) -> None:
    store.accept_batch("b-1", [_msg("a")], [], NOW)
    store.accept_batch("b-1", [_msg("a")], [], NOW)
    # The ack comes before the statuses it implies.
    assert [t for t, _ in _events(store)] == ["ack", "status", "ack"]


# --- claim_next -----------------------------------------------------------------

@pytest.mark.parametrize(("priorities", "order"), [
    ([5, 9, 5, 9, 0], ["m1", "m3", "m0", "m2", "m4"]),
    ([0, 0, 0], ["m0", "m1", "m2"]),
    ([1, 2, 3], ["m2", "m1", "m0"]),
    ([9], ["m0"]),
])
def test_claim_next_takes_highest_priority_then_oldest(
    store: Store, priorities: list[int], order: list[str]
) -> None:
    for i, p in enumerate(priorities):  # one batch per message: "oldest" spans batches
        store.accept_batch(f"b{i}", [_msg(f"m{i}", priority=p)], [], NOW + i)
    assert _claim_all(store) == order


def test_claim_next_returns_none_when_nothing_is_queued(store: Store) -> None:
    assert store.claim_next(PORT, ICCID, NOW) is None
    store.accept_batch("b", [_msg("later", not_before=NOW + 3600)], [], NOW)
    assert store.claim_next(PORT, ICCID, NOW) is None


def test_claim_commits_sending_with_port_and_attempts(tmp_path: Path, store: Store) -> None:
    store.accept_batch("b", [_msg("a", batch_id="b", parts=3)], [], NOW)
    claimed = store.claim_next(PORT, ICCID, NOW + 1)
    assert claimed is not None
    assert (claimed.hq_id, claimed.batch_id, claimed.parts, claimed.attempts) == ("a", "b", 3, 1)
    assert claimed.to == "+8613800138000" and claimed.delivery_report is True
    assert _status(store, "a")[-1]["state"] == "sending"
    assert _status(store, "a")[-1]["sim"] == {"port": PORT, "iccid": ICCID}
    store.close()
    reopened = Store(tmp_path)  # committed: visible after a restart
    try:
        assert reopened.queue_counts() == {"queued": 0, "scheduled": 0, "sending": 1}
    finally:
        reopened.close()


# --- sending outcomes -----------------------------------------------------------

def test_record_part_and_mark_sent(store: Store) -> None:
    store.accept_batch("b", [_msg("a", parts=2)], [], NOW)
    c = store.claim_next(PORT, ICCID, NOW)
    assert c is not None
    store.record_part(c.id, 1, ICCID, 17, NOW)
    store.record_part(c.id, 2, ICCID, 18, NOW)
    keys = {"minute": "2026-11-23T10:00", "hour": "2026-11-23T10", "day": "2026-11-23",
            "month": "2026-11"}
    store.mark_sent(c.id, NOW + 1, keys)
    assert _states(store) == {"a": "sent"}
    assert [b["state"] for b in _status(store, "a")] == ["queued", "sending", "sent"]
    # Operators count parts: a 2-part message is 2 against the SIM's limits.
    assert store.sim_counts("2026-11-23") == {ICCID: 2}
    assert store.sim_counts("2026-11-24") == {ICCID: 0}
    assert store.queue_counts() == {"queued": 0, "scheduled": 0, "sending": 0}


def test_requeue_puts_the_message_back_and_counts_attempts(store: Store) -> None:
    store.accept_batch("b", [_msg("a")], [], NOW)
    first = store.claim_next(PORT, ICCID, NOW)
    assert first is not None
    store.requeue(first.id, NOW)
    assert _states(store) == {"a": "queued"}
    second = store.claim_next("/dev/ttyGSM1", ICCID, NOW)
    assert second is not None and (second.id, second.attempts) == (first.id, 2)


def _queued(store: Store) -> int:
    store.accept_batch("b", [_msg("a")], [], NOW)
    return 1


def _sending(store: Store) -> int:
    store.accept_batch("b", [_msg("a")], [], NOW)
    c = store.claim_next(PORT, ICCID, NOW)
    assert c is not None
    return c.id


def _sent(store: Store) -> int:
    mid = _sending(store)
    store.mark_sent(mid, NOW)
    return mid


def _cancelled(store: Store) -> int:
    store.accept_batch("b", [_msg("a")], [], NOW)
    assert store.cancel(["a"], NOW) == {"a": "cancelled"}
    return 1


def _scheduled(store: Store) -> int:
    store.accept_batch("b", [_msg("a", not_before=NOW + 60)], [], NOW)
    return 1


@pytest.mark.parametrize(("setup", "action"), [
    (_queued, lambda s, m: s.mark_sent(m, NOW)),
    (_queued, lambda s, m: s.requeue(m, NOW)),
    (_scheduled, lambda s, m: s.mark_sent(m, NOW)),
    (_sent, lambda s, m: s.mark_sent(m, NOW)),
    (_sent, lambda s, m: s.requeue(m, NOW)),
    (_cancelled, lambda s, m: s.mark_sent(m, NOW)),
    (_cancelled, lambda s, m: s.requeue(m, NOW)),
    (_cancelled, lambda s, m: s.mark_failed(m, "modem_error", "x", NOW)),
])
def test_illegal_transitions_raise_and_change_nothing(store: Store, setup: Any,
                                                      action: Any) -> None:
    mid = setup(store)
    before, events_before = _states(store), _events(store)
    with pytest.raises(IllegalTransition):
        action(store, mid)
    assert _states(store) == before
    assert _events(store) == events_before


# --- settle_in_flight -----------------------------------------------------------

@pytest.mark.parametrize(("parts", "recorded", "state"), [
    (1, [1], "sent"),
    (3, [1, 2, 3], "sent"),
    (1, [], "uncertain"),
    (3, [1, 2], "uncertain"),
    (2, [2], "uncertain"),
])
def test_settle_in_flight_after_restart(tmp_path: Path, parts: int, recorded: list[int],
                                        state: str) -> None:
    store = Store(tmp_path)
    store.accept_batch("b", [_msg("a", parts=parts), _msg("idle")], [], NOW)
    c = store.claim_next(PORT, ICCID, NOW)
    assert c is not None and c.hq_id == "a"
    for n in recorded:
        store.record_part(c.id, n, ICCID, 40 + n, NOW)
    store.close()
    store = Store(tmp_path)
    store.run_started = NOW + 5
    try:
        waiting = store.settle_in_flight(NOW + 6, final=False)
        assert waiting == {"sent": int(state == "sent"), "uncertain": 0,
                           "waiting": int(state == "uncertain")}
        counts = store.settle_in_flight(NOW + 10, final=True)
        assert counts == {"sent": 0, "uncertain": int(state == "uncertain"), "waiting": 0}
        assert _states(store) == {"a": state, "idle": "queued"}
        last = _status(store, "a")[-1]
        assert last["state"] == state
        if state == "uncertain":
            assert last["error"]["code"] == "uncertain_after_restart"
        else:
            assert "error" not in last
        assert store.settle_in_flight(NOW + 20, final=True) == {
            "sent": 0, "uncertain": 0, "waiting": 0}
    finally:
        store.close()


def test_a_status_report_after_restart_proves_an_unconfirmed_send(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.accept_batch("b", [_msg("a")], [], NOW)
    c = store.claim_next(PORT, ICCID, NOW)
    assert c is not None
    store.close()
    store = Store(tmp_path)
    store.run_started = NOW + 5
    try:
        assert store.settle_in_flight(NOW + 6, final=False)["waiting"] == 1
        assert not store.settle_by_report("other-sim", c.to, True, False, NOW + 7)
        assert store.settle_by_report(ICCID, c.to, True, False, NOW + 7)
        assert [s["state"] for s in _status(store, "a")][-2:] == ["sent", "delivered"]
        assert store.settle_in_flight(NOW + 8, final=True)["uncertain"] == 0
    finally:
        store.close()


# --- cancelling -----------------------------------------------------------------

def test_cancel_touches_only_waiting_messages(store: Store) -> None:
    store.accept_batch("b", [_msg("q"), _msg("s", not_before=NOW + 60), _msg("busy", priority=9)],
                       [], NOW)
    assert store.claim_next(PORT, ICCID, NOW).hq_id == "busy"  # type: ignore[union-attr]
    outcome = store.cancel(["q", "s", "busy", "nope"], NOW)
    assert outcome == {"q": "cancelled", "s": "cancelled", "busy": "too_late:sending",
                       "nope": "unknown"}
    assert _states(store) == {"q": "cancelled", "s": "cancelled", "busy": "sending"}
    assert _status(store, "q")[-1]["error"]["code"] == "cancelled"
    assert store.cancel(["q"], NOW) == {"q": "too_late:cancelled"}


def test_cancel_batch_touches_only_waiting_messages_of_that_batch(store: Store) -> None:
    store.accept_batch("b1", [_msg("a1", batch_id="b1", priority=9), _msg("a2", batch_id="b1"),
                              _msg("a3", batch_id="b1", not_before=NOW + 60)], [], NOW)
    store.accept_batch("b2", [_msg("c1", batch_id="b2")], [], NOW)
    assert store.claim_next(PORT, ICCID, NOW).hq_id == "a1"  # type: ignore[union-attr]
    assert store.cancel_batch("b1", NOW) == 2
    assert _states(store) == {"a1": "sending", "a2": "cancelled", "a3": "cancelled",
                              "c1": "queued"}
    assert store.cancel_batch("b1", NOW) == 0
    assert store.cancel_batch("unknown", NOW) == 0


# --- event outbox ---------------------------------------------------------------

def test_pending_events_are_in_strictly_increasing_seq(store: Store) -> None:
    store.accept_batch("b", [_msg(f"m{i}") for i in range(5)], [], NOW)
    store.add_event("events", {"type": "modem_up", "port": PORT})
    seqs = [e.seq for e in store.pending_events(0, 100)]
    assert len(seqs) == 7
    assert all(a < b for a, b in itertools.pairwise(seqs))
    assert [e.seq for e in store.pending_events(seqs[2], 2)] == seqs[3:5]
    assert store.unpublished_count() == 7


def test_a_batch_is_one_outbox_row_that_publishes_one_status_per_message(
        store: Store) -> None:
    later = NOW + 3600
    store.accept_batch("b", [_msg("m0"), _msg("m1", not_before=later), _msg("m2")], [], NOW)
    store.add_event("events", {"type": "modem_up"})
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT count(*) FROM event").fetchone()[0] == 3  # ack, range, event
    # Deferred before its first status went out: that status still says queued.
    store.defer(store.peek_queued(1)[0].id, later, "quiet_hours", NOW)
    pending = store.pending_events(0, 100)
    assert [e.topic for e in pending] == ["ack", "status", "status", "status", "events",
                                          "status"]
    assert json.loads(pending[-1].body)["state"] == "scheduled"
    assert [e.seq for e in pending] == list(range(pending[0].seq, pending[0].seq + 6))
    bodies = [json.loads(e.body) for e in pending[1:4]]
    assert [(b["id"], b["state"]) for b in bodies] == [
        ("m0", "queued"), ("m1", "scheduled"), ("m2", "queued")]
    assert bodies[0] == {"id": "m0", "batch_id": "b-1", "state": "queued",
                         "at": "2026-09-21T14:13:20.000+00:00", "parts": 1, "encoding": "gsm7"}
    # Resuming inside the range, and a window that ends inside it.
    assert [e.seq for e in store.pending_events(pending[1].seq, 2)] == [
        pending[2].seq, pending[3].seq]
    assert store.unpublished_count() == 6


def test_a_range_row_goes_when_its_last_status_is_acknowledged(store: Store) -> None:
    store.accept_batch("b", [_msg(f"m{i}") for i in range(3)], [], NOW)
    ack, first, second, last = store.pending_events(0, 100)
    store.delete_events([ack.seq, first.seq, second.seq])
    assert store.unpublished_count() == 3  # a crash now republishes the range: HQ drops by seq
    store.delete_events([last.seq])
    assert store.unpublished_count() == 0
    store.add_event("events", {"n": 1})
    assert store.pending_events(0, 10)[0].seq == last.seq + 1


def test_a_database_from_before_range_rows_opens_and_works(tmp_path: Path) -> None:
    Store(tmp_path).close()
    with sqlite3.connect(tmp_path / "gateway.sqlite3") as db:
        db.execute("DROP INDEX event_range_end")  # as a file from before range rows
        db.execute("ALTER TABLE event DROP COLUMN last_seq")
        db.execute("INSERT INTO event (topic, body, retain) VALUES ('events', '{}', 0)")
    store = Store(tmp_path)
    try:
        store.accept_batch("b", [_msg("m0")], [], NOW)
        assert [e.topic for e in store.pending_events(0, 10)] == ["events", "ack", "status"]
    finally:
        store.close()


@pytest.mark.parametrize("reopen", [False, True])
def test_seq_never_goes_back_after_delete(tmp_path: Path, reopen: bool) -> None:
    store = Store(tmp_path)
    store.add_event("events", {"n": 1})
    store.add_event("events", {"n": 2})
    newest = store.pending_events(0, 10)[-1].seq
    store.delete_events([newest])
    if reopen:
        store.close()
        store = Store(tmp_path)
    store.add_event("events", {"n": 3})
    try:
        events = store.pending_events(0, 10)
        assert [json.loads(e.body)["n"] for e in events] == [1, 3]
        assert events[-1].seq > newest
        store.delete_events([e.seq for e in events])
        store.add_event("events", {"n": 4})
        assert store.pending_events(0, 10)[0].seq > events[-1].seq
        assert store.unpublished_count() == 1
    finally:
        store.close()


def test_retained_flag_round_trips(store: Store) -> None:
    store.add_event("state", {"online": True}, retain=True)
    (event,) = store.pending_events(0, 10)
    assert (event.topic, event.retain, json.loads(event.body)) == ("state", True,
                                                                   {"online": True})


@pytest.mark.parametrize("body", [
    {},
    {"batch_id": "b", "accepted": 1},
    {"id": "m", "text": "尊敬的林瓊 Привет 😀", "nested": {"a": [1, 2]}},
    {"gw": "ignored?", "x": 1},
])
@pytest.mark.parametrize(("gw", "seq"), [("gw-01", 1), ("gw_2", 123456789)])
def test_with_envelope_puts_gw_and_seq_first_and_keeps_the_body(
    store: Store, body: dict[str, Any], gw: str, seq: int
) -> None:
    store.add_event("events", body)
    (event,) = store.pending_events(0, 10)
    out = with_envelope(event.body, gw, seq)
    pairs = json.loads(out, object_pairs_hook=list)
    assert pairs[:2] == [("gw", gw), ("seq", seq)]
    assert [(k, v) for k, v in pairs[2:]] == list(json.loads(event.body,
                                                              object_pairs_hook=list))
