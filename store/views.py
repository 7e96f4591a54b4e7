"""Read-only views of the store for the technician's commands and the LEDs.

Plain queries under the store's lock; nothing here writes. Numbers come back in
full: masking is the caller's policy (daemon/).
"""

from __future__ import annotations

from typing import Any

from store import events
from store.store import Store


def _rows(store: Store, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with store._lock:
        cursor = store._db.execute_sql(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def activity_marker(store: Store) -> tuple[int, int] | None:
    """Changes whenever a part is sent or an SMS received; None when the store is busy."""
    if not store._lock.acquire(blocking=False):  # never make the main loop wait for a batch
        return None
    try:
        cursor = store._db.execute_sql(
            "SELECT (SELECT coalesce(max(id), 0) FROM part), "
            "(SELECT coalesce(max(rowid), 0) FROM inbound)")
        sent, received = cursor.fetchone()
        return int(sent), int(received)
    finally:
        store._lock.release()


def state_counts(store: Store) -> dict[str, int]:
    """How many messages are in each state (every state, terminal ones too)."""
    return {r["state"]: int(r["n"]) for r in _rows(
        store, "SELECT state, count(*) AS n FROM message GROUP BY state ORDER BY state")}


_WAITING_COLUMNS = ('SELECT id, hq_id, batch_id, state, priority, "to", parts, encoding, '
                    "attempts, not_before, created_at FROM message ")


def next_waiting(store: Store, limit: int) -> list[dict[str, Any]]:
    """The next `limit` messages to go out: queued in dispatch order, then scheduled by time."""
    order = [c.id for c in store.peek_queued(limit)]
    rows: list[dict[str, Any]] = []
    if order:
        marks = ",".join("?" * len(order))
        found = {r["id"]: r for r in _rows(store, _WAITING_COLUMNS + f"WHERE id IN ({marks})",
                                            tuple(order))}
        rows = [found[i] for i in order if i in found]
    if len(rows) < limit:
        rows += _rows(store, _WAITING_COLUMNS + "WHERE state = 'scheduled' "
                      "ORDER BY not_before, id LIMIT ?", (limit - len(rows),))
    for r in rows:
        del r["id"]
        r["not_before"] = events.rfc3339(r["not_before"]) if r["not_before"] else None
        r["created_at"] = events.rfc3339(r["created_at"])
    return rows


def last_inbound(store: Store, limit: int) -> list[dict[str, Any]]:
    """The last `limit` received SMS, newest first."""
    rows = _rows(store, "SELECT id, received_at, port, iccid, sender, text, parts, complete, "
                        "in_reply_to FROM inbound ORDER BY received_at DESC, rowid DESC LIMIT ?",
                 (limit,))
    for r in rows:
        r["received_at"] = events.rfc3339(r["received_at"])
        r["complete"] = bool(r["complete"])
    return rows


def sims(store: Store) -> list[dict[str, Any]]:
    """Every SIM seen (every column of its row: identities, counters), by last port."""
    return _rows(store, "SELECT * FROM sim ORDER BY last_port, iccid")
