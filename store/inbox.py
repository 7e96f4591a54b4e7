"""The receive side of the store: inbound parts and their reassembly, delivery reports,
the stop-list. Mixed into Store over the intake (an opt-out queues its confirmation);
every public method is one transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from store import events
from store.base import ID_CHUNK
from store.intake import OPT_OUT_CODE, Confirmation, IntakeMixin
from store.models import (
    Inbound,
    InboundPart,
    Message,
    NumberHealth,
    Part,
    PartReport,
    State,
    StopEntry,
)

TP_ST_TEMPORARY_MAX = 0x3F  # above: the SC gave up (23.040 §9.2.3.15)
REPLY_STATES = (State.SENDING, State.SENT, State.DELIVERED, State.FAILED, State.UNCERTAIN)


@dataclass(frozen=True)
class IncomingPart:
    """A received SMS-DELIVER as the daemon hands it to the store."""

    iccid: str
    port: str
    sender: str  # E.164 when it could be normalised, else as received
    reference: int | None
    total: int
    number: int
    text: str
    encoding: str
    fingerprint: str


@dataclass(frozen=True)
class Received:
    """What storing one part led to."""

    duplicate: bool  # this PDU was already on disk (read twice): nothing new
    inbound_id: str | None  # set when a whole message was assembled
    opted_out: str | None  # the keyword, when the message was an opt-out


@dataclass(frozen=True)
class ReportOutcome:
    """What a status report did."""

    matched: bool
    message_state: str | None
    number_inactive: bool


class InboxMixin(IntakeMixin):
    """Methods Store gains for the receive path."""

    # --- inbound ------------------------------------------------------------

    def receive_part(self, part: IncomingPart, now: float,
                     classify: Callable[[str], str | None],
                     confirmation: Confirmation | None = None) -> Received:
        """Commit one received PDU; assemble, publish and apply an opt-out when it completes."""
        with self._tx():
            inserted = InboundPart.insert(
                iccid=part.iccid, port=part.port, sender=part.sender,
                reference=part.reference, total=part.total, number=part.number,
                text=part.text, encoding=part.encoding, fingerprint=part.fingerprint,
                received_at=now).on_conflict_ignore().execute()
            if not inserted:
                return Received(duplicate=True, inbound_id=None, opted_out=None)
            group = list(self._open_group(part))
            numbers = {p.number for p in group}
            if numbers != set(range(1, part.total + 1)):
                return Received(duplicate=False, inbound_id=None, opted_out=None)
            inbound_id, text = self._assemble(group, complete=True, now=now)
            keyword = classify(text)
            if keyword:
                self._opt_out(part.sender, keyword, inbound_id, now, confirmation)
            return Received(duplicate=False, inbound_id=inbound_id, opted_out=keyword)

    def _open_group(self, part: IncomingPart) -> Iterator[InboundPart]:
        query = InboundPart.select().where(
            (InboundPart.iccid == part.iccid) & (InboundPart.sender == part.sender)
            & (InboundPart.total == part.total) & InboundPart.inbound_id.is_null())
        if part.reference is None:
            query = query.where(InboundPart.fingerprint == part.fingerprint)
        else:
            query = query.where(InboundPart.reference == part.reference)
        return iter(query.order_by(InboundPart.number, InboundPart.id))

    def _assemble(self, group: list[InboundPart], complete: bool, now: float) -> tuple[str, str]:
        by_number: dict[int, InboundPart] = {}
        for p in group:
            by_number.setdefault(p.number, p)  # a part received twice counts once
        ordered = [by_number[n] for n in sorted(by_number)]
        first = ordered[0]
        text = "".join(p.text for p in ordered)
        digest = hashlib.sha1("|".join([first.iccid] + [p.fingerprint for p in ordered])
                              .encode()).hexdigest()[:20]
        inbound_id = f"in-{digest}"
        reply_to = self._last_sent_to(first.sender)
        Inbound.insert(id=inbound_id, iccid=first.iccid, port=first.port, sender=first.sender,
                       text=text, parts=first.total, complete=complete,
                       received_at=first.received_at,
                       in_reply_to=reply_to[0] if reply_to else None).execute()
        InboundPart.update(inbound_id=inbound_id).where(
            InboundPart.id.in_([p.id for p in group])).execute()
        body: dict[str, Any] = {
            "id": inbound_id, "from": first.sender, "text": text,
            "received_at": events.rfc3339(first.received_at), "parts": first.total,
            "complete": complete, "sim": {"port": first.port, "iccid": first.iccid}}
        if not complete:
            body["parts_received"] = len(ordered)
        if reply_to:
            body["in_reply_to"] = {"id": reply_to[0], "batch_id": reply_to[1]}
        events.add(events.TOPIC_INBOX, body)
        return inbound_id, text

    def _last_sent_to(self, number: str) -> tuple[str, str] | None:
        row = (Message.select(Message.hq_id, Message.batch_id)
               .where((Message.to == number) & Message.state.in_(REPLY_STATES))
               .order_by(Message.updated_at.desc()).first())
        return (row.hq_id, row.batch_id) if row else None

    def flush_partials(self, older_than: float, now: float) -> int:
        """Publish, as complete: false, every multipart message still missing parts."""
        with self._tx():
            stale = list(InboundPart.select(
                InboundPart.iccid, InboundPart.sender, InboundPart.reference,
                InboundPart.total).where(
                InboundPart.inbound_id.is_null() & (InboundPart.received_at < older_than))
                .group_by(InboundPart.iccid, InboundPart.sender, InboundPart.reference,
                          InboundPart.total))
            for key in stale:
                group = list(InboundPart.select().where(
                    (InboundPart.iccid == key.iccid) & (InboundPart.sender == key.sender)
                    & (InboundPart.reference == key.reference)
                    & (InboundPart.total == key.total) & InboundPart.inbound_id.is_null())
                    .order_by(InboundPart.number, InboundPart.id))
                if group:
                    self._assemble(group, complete=False, now=now)
            return len(stale)

    # --- opt-out and the stop-list ------------------------------------------

    def _opt_out(self, number: str, keyword: str, inbound_id: str, now: float,
                 confirmation: Confirmation | None) -> None:
        StopEntry.insert(number=number, added_at=now, source="sms",
                         keyword=keyword).on_conflict_ignore().execute()
        events.add(events.TOPIC_EVENTS, {"type": "opt_out", "at": events.rfc3339(now),
                                         "number": number, "keyword": keyword,
                                         "inbound_id": inbound_id})
        self._cancel_to([number], now)
        if confirmation is not None:
            self._insert_confirmation(f"optout-{inbound_id}", number, confirmation, now)

    def _cancel_to(self, numbers: list[str], now: float) -> int:
        count = 0
        for i in range(0, len(numbers), ID_CHUNK):
            waiting = list(Message.select(Message.id).where(
                Message.to.in_(numbers[i : i + ID_CHUNK])
                & Message.state.in_([State.QUEUED, State.SCHEDULED])))
            for msg in waiting:
                self._move(msg.id, State.CANCELLED, now,
                           error=(OPT_OUT_CODE, "the number is on the stop-list"))
            count += len(waiting)
        return count

    def stoplist_add(self, numbers: list[str], now: float) -> dict[str, int]:
        """HQ stop-lists numbers; their waiting messages are cancelled with opted_out."""
        with self._tx():
            before = StopEntry.select().count()
            for number in numbers:
                StopEntry.insert(number=number, added_at=now,
                                 source="hq").on_conflict_ignore().execute()
            added = StopEntry.select().count() - before
            cancelled = self._cancel_to(numbers, now)
            return {"added": added, "cancelled": cancelled}

    def stoplist_remove(self, numbers: list[str]) -> int:
        """HQ lifts the stop for these numbers; returns how many were on the list."""
        with self._tx():
            removed = 0
            for i in range(0, len(numbers), ID_CHUNK):
                removed += StopEntry.delete().where(
                    StopEntry.number.in_(numbers[i : i + ID_CHUNK])).execute()
            return int(removed)

    def stoplist(self) -> list[dict[str, Any]]:
        """The whole stop-list, newest first."""
        with self._tx():
            return [{"number": e.number, "added_at": events.rfc3339(e.added_at),
                     "source": e.source, "keyword": e.keyword}
                    for e in StopEntry.select().order_by(StopEntry.added_at.desc())]

    # --- delivery reports ---------------------------------------------------

    def apply_report(self, iccid: str, mr: int, status: int, delivered: bool, pending: bool,
                     now: float, inactive_after: int) -> ReportOutcome:
        """Match a status report to the newest part sent from `iccid` with reference `mr`."""
        with self._tx():
            part = (Part.select().where((Part.iccid == iccid) & (Part.mr == mr))
                    .order_by(Part.id.desc()).first())
            if part is None:
                return ReportOutcome(False, None, False)
            PartReport.insert(part_id=part.id, status=status, final=not pending,
                              at=now).on_conflict_replace().execute()
            msg = Message.get_by_id(part.message_id)
            if pending or msg.state != State.SENT:
                return ReportOutcome(True, msg.state, False)
            reports = {r.part_id: r for r in PartReport.select().join(
                Part, on=(PartReport.part_id == Part.id)).where(Part.message_id == msg.id)}
            parts = list(Part.select().where(Part.message_id == msg.id))
            failed = [(p.number, reports[p.id].status) for p in parts
                      if p.id in reports and reports[p.id].final
                      and reports[p.id].status > TP_ST_TEMPORARY_MAX]
            if failed:
                number, tp_st = failed[0]
                self._move(msg.id, State.FAILED, now, error=(
                    "delivery_failed",
                    f"status report TP-ST 0x{tp_st:02X} for part {number} of {msg.parts}"))
                return ReportOutcome(True, State.FAILED, self._count_failure(msg.to, now,
                                                                             inactive_after))
            done = all(p.id in reports and reports[p.id].final for p in parts)
            if done and len(parts) >= msg.parts:
                self._move(msg.id, State.DELIVERED, now)
                NumberHealth.insert(number=msg.to, failures=0).on_conflict(
                    conflict_target=[NumberHealth.number],
                    update={NumberHealth.failures: 0, NumberHealth.reported: False}).execute()
                return ReportOutcome(True, State.DELIVERED, False)
            return ReportOutcome(True, msg.state, False)

    def _count_failure(self, number: str, now: float, inactive_after: int) -> bool:
        NumberHealth.insert(number=number, failures=1).on_conflict(
            conflict_target=[NumberHealth.number],
            update={NumberHealth.failures: NumberHealth.failures + 1}).execute()
        health = NumberHealth.get_by_id(number)
        if health.failures >= inactive_after and not health.reported:
            NumberHealth.update(reported=True).where(NumberHealth.number == number).execute()
            events.add(events.TOPIC_EVENTS, {"type": "number_inactive",
                                             "at": events.rfc3339(now), "number": number,
                                             "failures": health.failures})
            return True
        return False
