"""The durable heart: every state change of a message and every row that must survive a power cut.

Store is the connection and state machine of store/base.py with one mixin per concern
(intake, SIM counters, receive path, event outbox); this module adds dispatch,
cancelling, start-up recovery and the queue view.
"""

from __future__ import annotations

from dataclasses import dataclass

from store import events
from store.base import ID_CHUNK
from store.inbox import InboxMixin
from store.models import Message, Part, State
from store.sims import SimsMixin

ERROR_UNCERTAIN = "uncertain_after_restart"


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


class Store(InboxMixin, SimsMixin):
    """The gateway's SQLite file; every public method is one transaction."""

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
