"""The durable heart: every state change of a message and every row that must survive a power cut.

One SQLite connection, one lock: callers on any thread are serialised here,
so SQLite never has to busy-wait between our own threads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from peewee import OperationalError, SqliteDatabase

from store import events
from store.inbox import OPT_OUT_CODE, Confirmation, InboxMixin
from store.models import (
    EXTRA_DDL,
    TABLES,
    TRANSITIONS,
    Message,
    Part,
    Sim,
    State,
    database,
)
from store.outbox import OutboxMixin

DB_FILE = "gateway.sqlite3"
# FULL: a commit is on the medium before we ack it to the broker, even on power loss.
PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "full",
    "busy_timeout": 5000,
    "foreign_keys": 1,
    "cache_size": -4000,  # 4 MB: the Pi's memory matters more than a few page reads
}
ID_CHUNK = 500  # bound parameters per IN (...) lookup; SQLite allows 32766
ERROR_UNCERTAIN = "uncertain_after_restart"


class StoreUnavailable(RuntimeError):
    """The database cannot take writes now (disk full, I/O error, locked): try again later."""


def _first_error(e: BaseException) -> BaseException:
    """The error that started a chain of database errors.

    On SQLITE_FULL or an I/O error SQLite has already rolled back, so peewee's own
    rollback fails too ("no transaction is active") and would hide the cause.
    """
    while isinstance(e.__context__, (OperationalError, sqlite3.OperationalError)):
        e = e.__context__
    return e


_SELECT_MOVED = (
    'SELECT id, hq_id, batch_id, state, parts, encoding, port, iccid, attempts, "to"'
    " FROM message WHERE id = ?")
_UPDATE_MOVED = (
    "UPDATE message SET state = ?, updated_at = ?, error_code = coalesce(?, error_code),"
    " error_reason = coalesce(?, error_reason) WHERE id = ?")
_UPDATE_MOVED_CLEAR = (
    "UPDATE message SET state = ?, updated_at = ?, error_code = coalesce(?, error_code),"
    " error_reason = coalesce(?, error_reason), port = NULL, iccid = NULL WHERE id = ?")
# One statement per send: a counter whose key is another period starts again.
_COUNT_SEND = (
    "INSERT INTO sim (iccid, minute_key, minute_count, hour_key, hour_count, day_key,"
    " day_count, month_key, month_count, sent_total, last_sent_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(iccid) DO UPDATE SET "
    + ", ".join(
        f"{p}_count = CASE WHEN {p}_key IS excluded.{p}_key"
        f" THEN {p}_count + excluded.{p}_count ELSE excluded.{p}_count END,"
        f" {p}_key = excluded.{p}_key" for p in ("minute", "hour", "day", "month"))
    + ", sent_total = sent_total + excluded.sent_total, last_sent_at = excluded.last_sent_at")
_SELECT_COUNTERS = (
    "SELECT iccid, minute_key, minute_count, hour_key, hour_count, day_key, day_count,"
    " month_key, month_count, last_sent_at, blocked_until, quota_key FROM sim")


class IllegalTransition(RuntimeError):
    """A state change the contract's state machine does not allow."""


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


@dataclass(frozen=True)
class Claimed:
    """A message handed to one port, committed as `sending`."""

    id: int
    hq_id: str
    batch_id: str
    to: str
    text: str
    parts: int
    encoding: str
    delivery_report: bool
    attempts: int
    iccid: str = ""  # the SIM it was claimed for: a port that changed cards since gives it back


@dataclass(frozen=True)
class Moved:
    """A message as it was just before `_move` changed its state."""

    id: int
    hq_id: str
    batch_id: str
    state: str
    parts: int
    encoding: str
    port: str | None
    iccid: str | None
    attempts: int
    to: str


@dataclass(frozen=True)
class Candidate:
    """A queued message the dispatcher may place, without its text."""

    id: int
    hq_id: str
    to: str
    urgent: bool
    priority: int
    parts: int
    attempts: int
    avoid_iccid: str | None


@dataclass(frozen=True)
class SimCounters:
    """A SIM's counters as stored; a counter whose key is not the current period is zero."""

    iccid: str
    keys: dict[str, str | None]
    counts: dict[str, int]
    last_sent_at: float | None
    blocked_until: float | None
    quota_key: str | None

    def count(self, period: str, current_key: str) -> int:
        return self.counts[period] if self.keys[period] == current_key else 0


PERIODS = ("minute", "hour", "day", "month")


class Store(InboxMixin, OutboxMixin):
    """The gateway's SQLite file; every method is one transaction."""

    def __init__(self, data_dir: str | Path) -> None:
        path = Path(data_dir)
        path.mkdir(parents=True, exist_ok=True)
        self.path = path / DB_FILE
        self._db = SqliteDatabase(str(self.path), pragmas=PRAGMAS, thread_safe=False,
                                  check_same_thread=False, autoconnect=False)
        database.initialize(self._db)
        self._lock = threading.RLock()
        self._depth = 0  # open _tx blocks, under the lock (0: no transaction)
        # Why the last write failed, until a write commits again (for `smsgw status`, LEDs).
        self.write_error: str | None = None
        # Messages `sending` with updated_at before this belong to an earlier run.
        self.run_started = float("inf")
        self._db.connect()
        with self._tx():
            self._db.create_tables(TABLES)
            for ddl in EXTRA_DDL:
                self._db.execute_sql(ddl)
            self._migrate()
            cursor = self._db.execute_sql(
                "SELECT coalesce(max(rank), 0) FROM message WHERE state NOT IN (?, ?)",
                (State.QUEUED.value, State.SCHEDULED.value))
            self._dispatch_rank: int = cursor.fetchone()[0]

    def _migrate(self) -> None:
        """Columns added since the first release, for files an older version wrote."""
        columns = {c.name for c in self._db.get_columns("event")}
        if "last_seq" not in columns:
            self._db.execute_sql("ALTER TABLE event ADD COLUMN last_seq INTEGER")

    def close(self) -> None:
        """Close the connection; later calls raise."""
        with self._lock:
            if not self._db.is_closed():
                self._db.close()

    def transaction(self) -> Any:
        """One commit around several store calls (they join it)."""
        return self._tx()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside a transaction: a block whose exception undoes only the block."""
        with self._lock:
            assert self._depth, "a savepoint needs an open transaction"
            conn = self._db.connection()
            conn.execute("SAVEPOINT part")
            try:
                yield
            except BaseException as e:
                # SQLite may have rolled the whole transaction back itself (a full
                # disk): then there is no savepoint left, and the caller must know.
                if conn.in_transaction:
                    conn.execute("ROLLBACK TO part")
                    conn.execute("RELEASE part")
                if isinstance(e, OperationalError | sqlite3.OperationalError):
                    self.write_error = str(_first_error(e))
                    raise StoreUnavailable(self.write_error) from e
                raise
            conn.execute("RELEASE part")

    @property
    def lock(self) -> threading.RLock:
        """Held by every transaction: hold it to make a commit and what follows one step."""
        return self._lock

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One transaction; a nested call joins the one already open.

        Written by hand rather than with peewee's atomic(): a sent message passes
        through four nested blocks, and savepoints for each cost more CPU than the
        SQL inside them. Nothing catches an exception half-way through a
        transaction except through `savepoint`.
        """
        try:
            with self._lock:
                if self._depth:
                    self._depth += 1
                    try:
                        yield
                    finally:
                        self._depth -= 1
                    return
                conn = self._db.connection()
                changes = conn.total_changes
                conn.execute("BEGIN IMMEDIATE")
                self._depth = 1
                try:
                    yield
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                finally:
                    self._depth = 0
                # Only a commit that wrote proves there is room again: reads always commit.
                if self.write_error and conn.total_changes > changes:
                    self.write_error = None
        except (OperationalError, sqlite3.OperationalError) as e:
            self.write_error = str(_first_error(e))
            raise StoreUnavailable(self.write_error) from e

    # --- intake -------------------------------------------------------------

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
        found: set[str] = set()
        for i in range(0, len(ids), ID_CHUNK):
            chunk = ids[i : i + ID_CHUNK]
            marks = ",".join("?" * len(chunk))
            cursor = self._db.execute_sql(
                f"SELECT hq_id FROM message WHERE hq_id IN ({marks})", chunk)
            found.update(row[0] for row in cursor)
        return found

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

    # --- dispatch -----------------------------------------------------------

    def peek_queued(self, limit: int) -> list[Candidate]:
        """The next `limit` queued messages in dispatch order, without taking them."""
        with self._lock:
            cursor = self._db.execute_sql(
                "SELECT id, hq_id, \"to\", urgent, priority, parts, attempts, avoid_iccid"
                " FROM message WHERE state = 'queued'"
                " ORDER BY urgent DESC, priority DESC, rank, id LIMIT ?", (limit,))
            return [Candidate(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6], r[7])
                    for r in cursor]

    def claim(self, message_id: int, port: str, iccid: str, now: float) -> Claimed | None:
        """Commit one queued message as `sending` on this port; None if it is no longer queued."""
        return self.claim_many([(message_id, port, iccid)], now)[0]

    def claim_many(self, picks: list[tuple[int, str, str]], now: float) -> list[Claimed | None]:
        """Claim (message id, port, iccid) picks in one commit: ports freed together
        do not wait for one fsync each. None where a message is no longer queued."""
        with self._tx():
            return [self._claim_one(message_id, port, iccid, now)
                    for message_id, port, iccid in picks]

    def _claim_one(self, message_id: int, port: str, iccid: str, now: float) -> Claimed | None:
        cursor = self._db.execute_sql(
            "UPDATE message SET state = 'sending', port = ?, iccid = ?,"
            " attempts = attempts + 1, updated_at = ?"
            " WHERE id = ? AND state = 'queued'"
            " RETURNING id, hq_id, batch_id, \"to\", text, parts, encoding,"
            " delivery_report, attempts, rank",
            (port, iccid, now, message_id))
        row = cursor.fetchone()
        if row is None:
            return None
        self._dispatch_rank = max(self._dispatch_rank, row[9])
        claimed = Claimed(id=row[0], hq_id=row[1], batch_id=row[2], to=row[3], text=row[4],
                          parts=row[5], encoding=row[6], delivery_report=bool(row[7]),
                          attempts=row[8], iccid=iccid)
        events.add(events.TOPIC_STATUS, events.status_body(
            claimed.hq_id, claimed.batch_id, State.SENDING, now, parts=claimed.parts,
            encoding=claimed.encoding, port=port, iccid=iccid, attempts=claimed.attempts))
        return claimed

    def claim_next(self, port: str, iccid: str, now: float) -> Claimed | None:
        """Take the first queued message in dispatch order for this port."""
        for candidate in self.peek_queued(1):
            return self.claim(candidate.id, port, iccid, now)
        return None

    def defer(self, message_id: int, until: float, reason: str, now: float) -> None:
        """A queued message must wait (quiet hours, frequency cap): scheduled until `until`."""
        with self._tx():
            msg = Message.get_by_id(message_id)
            if msg.state != State.QUEUED:
                return
            Message.update(state=State.SCHEDULED, not_before=until, updated_at=now).where(
                Message.id == message_id).execute()
            body = events.status_body(msg.hq_id, msg.batch_id, State.SCHEDULED, now,
                                      parts=msg.parts, encoding=msg.encoding)
            body["not_before"] = events.rfc3339(until)
            body["reason"] = reason
            events.add(events.TOPIC_STATUS, body)

    def defer_all_queued(self, until: float, reason: str, now: float) -> int:
        """Every SIM is at a limit: the whole queue is scheduled until the earliest resumes."""
        with self._tx():
            rows = list(Message.select(Message.id, Message.hq_id, Message.batch_id,
                                       Message.parts, Message.encoding)
                        .where(Message.state == State.QUEUED))
            Message.update(state=State.SCHEDULED, not_before=until, updated_at=now).where(
                Message.state == State.QUEUED).execute()
            for msg in rows:
                body = events.status_body(msg.hq_id, msg.batch_id, State.SCHEDULED, now,
                                          parts=msg.parts, encoding=msg.encoding)
                body["not_before"] = events.rfc3339(until)
                body["reason"] = reason
                events.add(events.TOPIC_STATUS, body)
            return len(rows)

    def sent_to_since(self, number: str, since: float) -> list[float]:
        """When messages to `number` were handed to a modem after `since` (frequency cap)."""
        with self._lock:
            cursor = self._db.execute_sql(
                "SELECT updated_at FROM message WHERE \"to\" = ? AND updated_at > ?"
                " AND state IN ('sending', 'sent', 'delivered', 'uncertain')"
                " ORDER BY updated_at", (number, since))
            return [r[0] for r in cursor]

    def record_part(self, message_id: int, number: int, iccid: str, mr: int, now: float) -> None:
        """Remember that the network took part `number` under reference `mr`."""
        with self._tx():
            self._db.execute_sql(
                "INSERT OR REPLACE INTO part (message_id, number, iccid, mr, sent_at)"
                " VALUES (?, ?, ?, ?, ?)", (message_id, number, iccid, mr, now))

    def mark_sent(self, message_id: int, now: float,
                  period_keys: dict[str, str] | None = None,
                  last_part: tuple[int, str, int] | None = None) -> None:
        """Every part was taken by the network; the SIM's counters grow by its parts.

        `last_part` (number, iccid, mr) is recorded in the same commit: one fsync
        fewer between two sends on a port.
        """
        with self._tx():
            if last_part is not None:
                number, iccid, mr = last_part
                self._db.execute_sql(
                    "INSERT OR REPLACE INTO part (message_id, number, iccid, mr, sent_at)"
                    " VALUES (?, ?, ?, ?, ?)", (message_id, number, iccid, mr, now))
            msg = self._move(message_id, State.SENT, now)
            if period_keys is not None:
                self._count_send(msg.iccid, msg.parts, now, period_keys)

    def mark_failed(self, message_id: int, code: str, reason: str, now: float,
                    state: State = State.FAILED) -> None:
        """End the message in `state` (failed, uncertain...) with an error code."""
        with self._tx():
            self._move(message_id, state, now, error=(code, reason))

    def requeue(self, message_id: int, now: float, retry_at: float | None = None,
                avoid_iccid: str | None = None, attempted: bool = True) -> None:
        """The message provably never reached the network: back to the queue.

        With `retry_at` it waits (scheduled) until then; `avoid_iccid` asks the
        dispatcher to try another SIM first. `attempted=False`: its PDU was never
        written, so the claim does not use up one of its attempts.
        """
        with self._tx():
            Message.update(avoid_iccid=avoid_iccid).where(Message.id == message_id).execute()
            if not attempted:
                self._db.execute_sql("UPDATE message SET attempts = max(attempts - 1, 0)"
                                     " WHERE id = ?", (message_id,))
            self._move(message_id, State.QUEUED, now, clear_sim=True)
            if retry_at is not None and retry_at > now:
                Message.update(state=State.SCHEDULED, not_before=retry_at).where(
                    Message.id == message_id).execute()

    def _move(self, message_id: int, new: State, now: float,
              error: tuple[str, str] | None = None, clear_sim: bool = False) -> Moved:
        """The one place a message changes state: checks the move, writes it and its status.

        Plain SQL on purpose: it runs several times per message sent, and peewee's
        query building cost more CPU than the rest of the send path together.
        """
        row = self._db.execute_sql(_SELECT_MOVED, (message_id,)).fetchone()
        if row is None:
            raise IllegalTransition(f"message #{message_id} does not exist")
        msg = Moved(*row)
        old = State(msg.state)
        if new not in TRANSITIONS.get(old, frozenset()):
            raise IllegalTransition(f"message {msg.hq_id}: {old} -> {new}")
        code, reason = error if error else (None, None)
        self._db.execute_sql(_UPDATE_MOVED_CLEAR if clear_sim else _UPDATE_MOVED,
                             (new.value, now, code, reason, message_id))
        events.add(events.TOPIC_STATUS, events.status_body(
            msg.hq_id, msg.batch_id, new, now, parts=msg.parts, encoding=msg.encoding,
            port=None if clear_sim else msg.port, iccid=msg.iccid, attempts=msg.attempts,
            error=error))
        return msg

    def _count_send(self, iccid: str | None, parts: int, now: float,
                    keys: dict[str, str]) -> None:
        if not iccid:
            return
        params: list[Any] = [iccid]
        for period in PERIODS:
            params += [keys[period], parts]
        self._db.execute_sql(_COUNT_SEND, (*params, parts, now))

    def sim_counters(self, iccids: list[str] | None = None) -> dict[str, SimCounters]:
        """The counters of these SIMs (every SIM when None), by ICCID."""
        with self._lock:
            if iccids is None:
                rows = self._db.execute_sql(_SELECT_COUNTERS).fetchall()
            else:
                rows = []
                for i in range(0, len(iccids), ID_CHUNK):
                    chunk = iccids[i : i + ID_CHUNK]
                    rows += self._db.execute_sql(
                        _SELECT_COUNTERS + f" WHERE iccid IN ({','.join('?' * len(chunk))})",
                        chunk).fetchall()
        return {r[0]: SimCounters(
            iccid=r[0], keys=dict(zip(PERIODS, r[1:9:2], strict=True)),
            counts=dict(zip(PERIODS, r[2:9:2], strict=True)), last_sent_at=r[9],
            blocked_until=r[10], quota_key=r[11]) for r in rows}

    def bench_sim(self, iccid: str, until: float, reason: str, port: str, now: float) -> None:
        """Keep a failing SIM out of dispatch until `until`, and tell HQ (sim_blocked)."""
        with self._tx():
            Sim.insert(iccid=iccid).on_conflict_ignore().execute()
            Sim.update(blocked_until=until).where(Sim.iccid == iccid).execute()
            events.add(events.TOPIC_EVENTS, {
                "type": "sim_blocked", "at": events.rfc3339(now), "port": port, "iccid": iccid,
                "until": events.rfc3339(until), "reason": reason})

    def note_quota(self, iccid: str, key: str, port: str, period: str, limit: int,
                   resumes: float, now: float) -> None:
        """Announce once per period that a SIM reached a limit (sim_quota_reached)."""
        with self._tx():
            sim = Sim.get_or_none(Sim.iccid == iccid)
            if sim is None or sim.quota_key == key:
                return
            Sim.update(quota_key=key).where(Sim.iccid == iccid).execute()
            events.add(events.TOPIC_EVENTS, {
                "type": "sim_quota_reached", "at": events.rfc3339(now), "port": port,
                "iccid": iccid, "period": period, "limit": limit,
                "resumes_at": events.rfc3339(resumes)})

    # --- cancelling ---------------------------------------------------------

    def cancel(self, hq_ids: list[str], now: float) -> dict[str, str]:
        """Cancel waiting messages by HQ id; says per id what happened."""
        outcome: dict[str, str] = {}
        with self._tx():
            for i in range(0, len(hq_ids), ID_CHUNK):
                chunk = hq_ids[i : i + ID_CHUNK]
                for msg in Message.select().where(Message.hq_id.in_(chunk)):
                    outcome[msg.hq_id] = self._cancel_one(msg, now)
        for hq_id in hq_ids:
            outcome.setdefault(hq_id, "unknown")
        return outcome

    def cancel_batch(self, batch_id: str, now: float) -> int:
        """Cancel every waiting message of a batch; returns how many."""
        with self._tx():
            waiting = list(Message.select().where(
                (Message.batch_id == batch_id)
                & Message.state.in_([State.QUEUED, State.SCHEDULED])))
            for msg in waiting:
                self._cancel_one(msg, now)
            return len(waiting)

    def _cancel_one(self, msg: Message, now: float) -> str:
        if msg.state not in (State.QUEUED, State.SCHEDULED):
            return f"too_late:{msg.state}"
        self._move(msg.id, State.CANCELLED, now, error=("cancelled", "cancelled by HQ"))
        return "cancelled"

    # --- start-up -----------------------------------------------------------

    def settle_in_flight(self, now: float, final: bool) -> dict[str, int]:
        """Settle messages a previous run left `sending` (see README, "the settle rule").

        Every part confirmed -> sent. Otherwise, when `final`, uncertain; until then
        they wait for a status report that proves it (`settle_by_report`).
        """
        counts = {"sent": 0, "uncertain": 0, "waiting": 0}
        with self._tx():
            for msg in Message.select().where((Message.state == State.SENDING)
                                              & (Message.updated_at < self.run_started)):
                taken = Part.select().where(Part.message_id == msg.id).count()
                if taken >= msg.parts:
                    self._move(msg.id, State.SENT, now)
                    counts["sent"] += 1
                elif final:
                    self._move(msg.id, State.UNCERTAIN, now, error=(
                        ERROR_UNCERTAIN,
                        f"gateway stopped while the modem held it ({taken}/{msg.parts} parts"
                        " confirmed); not sent again"))
                    counts["uncertain"] += 1
                else:
                    counts["waiting"] += 1
        return counts

    def settle_by_report(self, iccid: str, recipient: str, delivered: bool, failed: bool,
                         now: float) -> bool:
        """A status report no part matches may prove a message left `sending` went out."""
        with self._tx():
            msg = (Message.select().where(
                (Message.state == State.SENDING) & (Message.updated_at < self.run_started)
                & (Message.iccid == iccid) & (Message.to == recipient))
                .order_by(Message.updated_at.desc()).first())
            if msg is None:
                return False
            self._move(msg.id, State.SENT, now)
            if delivered and msg.parts == 1:
                self._move(msg.id, State.DELIVERED, now)
            elif failed:
                self._move(msg.id, State.FAILED, now, error=(
                    "delivery_failed", "status report after restart says it was not delivered"))
            return True

    def note_sim(self, iccid: str, imsi: str, port: str, imei: str) -> None:
        """Record where a SIM was last seen."""
        with self._tx():
            Sim.insert(iccid=iccid, imsi=imsi, last_port=port, last_imei=imei).on_conflict(
                conflict_target=[Sim.iccid],
                update={Sim.imsi: imsi, Sim.last_port: port, Sim.last_imei: imei}).execute()

    def sim_counts(self, day_key: str) -> dict[str, int]:
        """SMS parts sent per ICCID in the gateway-local day `day_key`."""
        with self._lock:
            return {s.iccid: (s.day_count if s.day_key == day_key else 0)
                    for s in Sim.select(Sim.iccid, Sim.day_key, Sim.day_count)}

    # --- queue view ---------------------------------------------------------

    def queue_counts(self) -> dict[str, int]:
        """How many messages wait, by state (queued, scheduled, sending)."""
        with self._lock:
            out = {}
            for state in (State.QUEUED, State.SCHEDULED, State.SENDING):
                cursor = self._db.execute_sql(
                    "SELECT count(*) FROM message WHERE state = ?", (state.value,))
                out[state.value] = cursor.fetchone()[0]
            return out

    def unsent_count(self) -> int:
        """Messages not yet handed to a modem (the pull gate compares this with high_water)."""
        counts = self.queue_counts()
        return counts["queued"] + counts["scheduled"]

    def promote_due(self, now: float) -> int:
        """Move scheduled messages whose time has come back to queued."""
        with self._tx():
            due = list(Message.select().where(
                (Message.state == State.SCHEDULED) & (Message.not_before <= now)))
            for msg in due:
                self._move(msg.id, State.QUEUED, now)
            return len(due)

    def expire_overdue(self, now: float) -> int:
        """End waiting messages whose expires_at has passed; they never reach the network."""
        with self._tx():
            overdue = list(Message.select().where(
                Message.state.in_([State.QUEUED, State.SCHEDULED])
                & Message.expires_at.is_null(False) & (Message.expires_at <= now)))
            for msg in overdue:
                self._move(msg.id, State.EXPIRED, now,
                           error=("expired", "expires_at passed before it could be sent"))
            return len(overdue)
