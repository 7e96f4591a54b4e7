"""Intake: a validated batch becomes queued rows, duplicates and opt-outs counted, in one commit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from store import events
from store.models import State
from store.outbox import OutboxMixin

OPT_OUT_CODE = "opted_out"


@dataclass(frozen=True)
class Confirmation:
    """The SMS that answers an opt-out, pre-planned by the daemon."""

    text: str
    encoding: str
    parts: int


class NewMessage(NamedTuple):  # a tuple: a 100,000-message batch builds 100,000 of them
    """A validated message ready to be queued."""

    hq_id: str
    batch_id: str
    to: str
    text: str
    encoding: str
    parts: int
    priority: int
    not_before: float | None
    expires_at: float | None
    delivery_report: bool
    urgent: bool


@dataclass(frozen=True)
class BatchOutcome:
    """What a batch did to the queue."""

    accepted: int
    duplicates: int
    rejected: int = 0  # invalid, and opted out


class IntakeMixin(OutboxMixin):
    """Methods Store gains for taking batches."""

    def accept_batch(
        self, batch_id: str, messages: list[NewMessage], rejected: list[dict[str, str]],
        now: float,
    ) -> BatchOutcome:
        """Queue the new messages, count duplicates and queue the BatchAck, all in one commit."""
        return self.accept_batch_chunks(batch_id, [(messages, rejected)], now)

    def accept_batch_chunks(
        self, batch_id: str, chunks: Iterable[tuple[list[NewMessage], list[dict[str, str]]]],
        now: float,
    ) -> BatchOutcome:
        """`accept_batch` for a batch validated a chunk at a time (daemon/validator.py).

        One commit still: each chunk is inserted as it comes, and the BatchAck's row,
        written first so that HQ hears the verdict before the statuses it implies,
        gets its counts at the end. An exception from `chunks` rolls everything back.
        """
        with self._tx():
            ack_seq = events.add(events.TOPIC_ACK, {"batch_id": batch_id})
            known: set[str] = set()
            invalid: list[dict[str, str]] = []
            opted_out: list[dict[str, str]] = []
            accepted = duplicates = 0
            for messages, rejected in chunks:
                invalid += rejected
                known |= self._existing_ids([m.hq_id for m in messages])
                stopped = self.stoplisted(sorted({m.to for m in messages}))
                fresh: list[NewMessage] = []
                for m in messages:
                    if m.hq_id in known:
                        duplicates += 1
                    elif m.to in stopped:
                        opted_out.append({"id": m.hq_id, "code": OPT_OUT_CODE,
                                          "reason": "the number opted out of messages"})
                    else:
                        known.add(m.hq_id)
                        fresh.append(m)
                self._insert_messages(fresh, now, rank_offset=accepted)
                accepted += len(fresh)
            ack = {"batch_id": batch_id, "accepted": accepted, "duplicates": duplicates,
                   "rejected": invalid + opted_out}
            self._db.execute_sql("UPDATE event SET body = ? WHERE seq = ?",
                                 (events.dumps(ack), ack_seq))
        return BatchOutcome(accepted=accepted, duplicates=duplicates,
                            rejected=len(invalid) + len(opted_out))

    def _existing_ids(self, ids: list[str]) -> set[str]:
        return {r[0] for r in self._rows_where_in("SELECT hq_id FROM message", "hq_id", ids)}

    def _insert_messages(self, fresh: list[NewMessage], now: float, rank_offset: int = 0) -> None:
        # Raw executemany: peewee's insert_many builds SQL per row and is ~10x slower here.
        rows = []
        # Start-time fair queuing: a new batch's ranks start where dispatch is now,
        # so it interleaves 1:1 with older batches of its priority instead of
        # waiting behind (or jumping ahead of) all of them.
        base = self._dispatch_rank + rank_offset  # later chunks of one batch follow on
        for offset, m in enumerate(fresh):
            state = State.SCHEDULED if m.not_before and m.not_before > now else State.QUEUED
            rows.append((m.hq_id, m.batch_id, m.to, m.text, m.encoding, m.parts, m.priority,
                         m.not_before, m.expires_at, m.delivery_report, m.urgent, state, 0,
                         base + offset, now, now))
        if not rows:
            return
        first_id = self._db.execute_sql("SELECT coalesce(max(id), 0) + 1 FROM message"
                                        ).fetchone()[0]
        cursor = self._db.cursor()
        cursor.executemany(
            "INSERT INTO message (hq_id, batch_id, \"to\", text, encoding, parts, priority,"
            " not_before, expires_at, delivery_report, urgent, state, attempts, rank, created_at,"
            " updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        # Rowids of one transaction's inserts are consecutive (max + 1 each); the
        # range row below relies on it, so check rather than trust.
        last_id = self._db.execute_sql("SELECT max(id) FROM message").fetchone()[0]
        if last_id != first_id + len(rows) - 1:
            raise RuntimeError(f"message ids {first_id}..{last_id} are not consecutive")
        self._add_status_range(first_id, [r[11] == State.SCHEDULED for r in rows])

    def _insert_confirmation(self, hq_id: str, to: str, c: Confirmation, now: float) -> None:
        """Queue the one answer to an opt-out; it bypasses the stop-list on purpose."""
        self._insert_messages([NewMessage(
            hq_id=hq_id, batch_id="opt-out-confirmations", to=to, text=c.text,
            encoding=c.encoding, parts=c.parts, priority=9, not_before=None, expires_at=None,
            delivery_report=False, urgent=True)], now)

    def signature_seen(self, sig: str) -> bool:
        """Whether a signed batch with this signature was answered and not yet forgotten.

        Raises StoreUnavailable when it cannot tell: the batch then stays at the broker.
        """
        with self._tx():  # a read error must not look like a bug that answers bad_batch
            return self._db.execute_sql("SELECT 1 FROM seen_signature WHERE sig = ?",
                                        (sig,)).fetchone() is not None

    def remember_signatures(self, signed: Iterable[tuple[str, int]], oldest: float) -> None:
        """Record (signature, ts) pairs and forget every one signed before `oldest`.

        Joins the caller's transaction: call it in the one that answers the batch, so
        its signature is kept exactly when its BatchAck is.
        """
        with self._tx():
            # An index range on ts: only the few rows that just left the window are read.
            self._db.execute_sql("DELETE FROM seen_signature WHERE ts < ?", (oldest,))
            self._db.cursor().executemany(
                "INSERT OR IGNORE INTO seen_signature (sig, ts) VALUES (?, ?)",
                [(sig, ts) for sig, ts in signed if ts >= oldest])

    def stoplisted(self, numbers: list[str]) -> set[str]:
        """Which of `numbers` are on the stop-list; call inside the caller's transaction."""
        # Plain SQL: a 100,000-message batch asks for 100,000 numbers at once.
        listed = self._db.execute_sql("SELECT count(*) FROM stop_entry").fetchone()[0]
        if listed <= len(numbers):  # the smaller side is read whole
            wanted = set(numbers)
            return {r[0] for r in self._db.execute_sql("SELECT number FROM stop_entry")
                    if r[0] in wanted}
        return {r[0] for r in self._rows_where_in("SELECT number FROM stop_entry", "number",
                                                   numbers)}
