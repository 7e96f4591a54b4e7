"""The event outbox: what HQ must hear, in seq order, kept until the broker acknowledges it.

Mixed into Store. Most rows are one payload each. A batch's `queued` (or
`scheduled`) statuses are one *range row* instead: it reserves the seqs
seq..last_seq and names the first message id; the statuses are built from the
message rows when they are published. Intake of a 100,000-message batch then
writes one outbox row, not 100,000, and HQ still sees one status per message,
each with its own seq.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from store import events
from store.base import ID_CHUNK, StoreBase
from store.models import State

# A range row's messages as their first status described them.
_SELECT_RANGE = (
    "SELECT id, hq_id, batch_id, parts, encoding, created_at FROM message"
    " WHERE id >= ? AND id <= ? ORDER BY id")


@dataclass(frozen=True)
class PendingEvent:
    """One payload waiting for the broker's PUBACK."""

    seq: int
    topic: str
    body: str
    retain: bool


class OutboxMixin(StoreBase):
    """Methods Store gains for the outbox."""

    def add_event(self, topic: str, body: dict[str, Any], retain: bool = False) -> None:
        """Queue one payload for HQ on its own."""
        with self._tx():
            events.add(topic, body, retain)

    def _add_status_range(self, first_id: int, scheduled: list[bool]) -> None:
        """The first statuses of messages inserted from `first_id` on, `scheduled` or
        `queued` each; inside the inserting transaction."""
        count = len(scheduled)
        if count <= 0:
            return
        # The first state is recorded, not read back later: a message may be
        # deferred (not_before moved) before its `queued` status is published.
        usual = sum(scheduled) * 2 > count
        spec = {"first_id": first_id,  # `at` comes from each message's created_at
                "state": State.SCHEDULED.value if usual else State.QUEUED.value,
                "except": [i for i, s in enumerate(scheduled) if s is not usual]}
        row = self._db.execute_sql(
            "SELECT seq FROM sqlite_sequence WHERE name = 'event'").fetchone()
        first_seq = (row[0] if row else 0) + 1
        last_seq = first_seq + count - 1
        self._db.execute_sql(
            "INSERT INTO event (seq, topic, body, retain, last_seq) VALUES (?, ?, ?, 0, ?)",
            (first_seq, events.TOPIC_STATUS, json.dumps(spec, separators=(",", ":")),
             last_seq))
        # AUTOINCREMENT hands out seqs after the reserved range from now on.
        self._db.execute_sql(
            "UPDATE sqlite_sequence SET seq = ? WHERE name = 'event'", (last_seq,))

    def pending_events(self, after_seq: int, limit: int) -> list[PendingEvent]:
        """Up to `limit` unpublished payloads with seq > after_seq, oldest first."""
        with self._lock:
            # A range row that after_seq falls inside (rows before it are few:
            # in flight or acknowledged and about to be deleted).
            open_range = self._db.execute_sql(
                "SELECT seq, topic, body, retain, last_seq FROM event"
                " WHERE seq <= ? AND last_seq > ? ORDER BY seq", (after_seq, after_seq)).fetchall()
            later = self._db.execute_sql(
                "SELECT seq, topic, body, retain, last_seq FROM event WHERE seq > ?"
                " ORDER BY seq LIMIT ?", (after_seq, limit)).fetchall()
            out: list[PendingEvent] = []
            for seq, topic, body, retain, last_seq in open_range + later:
                if len(out) >= limit:
                    break
                if last_seq is None:
                    out.append(PendingEvent(seq, topic, body, bool(retain)))
                else:
                    start = max(seq, after_seq + 1)
                    end = min(last_seq, start + limit - len(out) - 1)
                    out += self._expand(seq, json.loads(body), start, end)
            return out

    def _expand(self, seq: int, spec: dict[str, Any], start: int, end: int) -> Iterator[
            PendingEvent]:
        """The statuses with seqs start..end of the range row at `seq`."""
        first_id = spec["first_id"]
        offset = first_id - seq
        usual = State(spec["state"])
        other = State.QUEUED if usual is State.SCHEDULED else State.SCHEDULED
        exceptions = set(spec["except"])
        rows = self._db.execute_sql(_SELECT_RANGE, (start + offset, end + offset))
        for msg_id, hq_id, batch_id, parts, encoding, created_at in rows:
            state = other if msg_id - first_id in exceptions else usual
            body = events.status_body(hq_id, batch_id, state, created_at, parts=parts,
                                      encoding=encoding)
            yield PendingEvent(msg_id - offset, events.TOPIC_STATUS, events.dumps(body), False)

    def delete_events(self, seqs: Iterable[int]) -> None:
        """Forget payloads the broker has acknowledged.

        A range row goes when its last seq is acknowledged: PUBACKs come in publish
        order (MQTT 5 §4.6), so the rest of it was acknowledged before.
        """
        seq_list = list(seqs)
        if not seq_list:
            return
        with self._tx():
            for i in range(0, len(seq_list), ID_CHUNK):
                chunk = seq_list[i : i + ID_CHUNK]
                marks = ",".join("?" * len(chunk))
                self._db.execute_sql(
                    f"DELETE FROM event WHERE seq IN ({marks}) AND last_seq IS NULL", chunk)
                self._db.execute_sql(f"DELETE FROM event WHERE last_seq IN ({marks})", chunk)

    def unpublished_count(self) -> int:
        """Payloads still waiting for the broker (a range row counts as its statuses)."""
        with self._lock:
            row = self._db.execute_sql(
                "SELECT coalesce(sum(coalesce(last_seq, seq) - seq + 1), 0) FROM event"
            ).fetchone()
            return int(row[0])
