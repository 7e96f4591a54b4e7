"""The store's core: one SQLite connection, one lock, transactions, and the state machine.

Callers on any thread are serialised by the lock, so SQLite never has to busy-wait
between our own threads. The Store (store/store.py) is this plus one mixin per
concern: intake, SIM counters, the receive path, the event outbox.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peewee import OperationalError, SqliteDatabase

from store import events
from store.models import EXTRA_DDL, TABLES, TRANSITIONS, State, database

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


class IllegalTransition(RuntimeError):
    """A state change the contract's state machine does not allow."""


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


class StoreBase:
    """The connection and its transactions; every public method of a Store is one of them."""

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
            self._migrate()  # first: the extra indexes may be on columns it adds
            for ddl in EXTRA_DDL:
                self._db.execute_sql(ddl)
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

    def _rows_where_in(self, select: str, column: str, values: Sequence[Any]) -> list[Any]:
        """The rows of `select` (it has no WHERE) whose `column` is one of `values`."""
        rows: list[Any] = []
        for i in range(0, len(values), ID_CHUNK):
            chunk = values[i : i + ID_CHUNK]
            rows += self._db.execute_sql(
                f"{select} WHERE {column} IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        return rows

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
