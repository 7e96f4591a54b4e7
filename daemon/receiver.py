"""The receive duties of one port, run on that port's own thread.

Notifications (+CMTI, +CDS, +CDSI) and a periodic scan of every storage lead to
the same step: decode, commit to the store, and only then delete from the modem.
The scan is the safety net for notifications python-gsmmodem swallowed and for
messages that arrived while the daemon was down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from daemon.batch import Rejected, mask, normalise_number
from daemon.optout import OptOutMatcher
from modem.inbound import (
    InlineReport,
    NewMessageNotice,
    StoredPdu,
    StoredReportNotice,
    UndecodablePdu,
    decode_deliver,
    decode_report,
    parse_notices,
)
from modem.pdu import plan_text
from modem.port import ModemPort
from store.inbox import IncomingPart
from store.intake import Confirmation
from store.store import Store

REPORT_MEMORY = "SR"


@dataclass(frozen=True)
class ReceivePolicy:
    """What the configuration says about receiving."""

    default_region: str
    scan_s: float
    matcher: OptOutMatcher
    confirmation_text: str
    inactive_after: int

    @property
    def confirmation(self) -> Confirmation | None:
        if not self.confirmation_text:
            return None
        plan = plan_text(self.confirmation_text)
        return Confirmation(self.confirmation_text, plan.encoding.value, plan.count)


class Receiver:
    """Owned by one PortWorker; every method runs on the port's thread."""

    def __init__(self, modem: ModemPort, port: str, store: Store, clock: Callable[[], float],
                 policy: ReceivePolicy, log: Any, on_stored: Callable[[], None]) -> None:
        self._modem = modem
        self._port = port
        self._store = store
        self._clock = clock
        self._policy = policy
        self._confirmation = policy.confirmation
        self._log = log
        self._on_stored = on_stored  # wakes the publisher
        self._scan_at = 0.0
        self._memories: list[str] | None = None
        self.iccid = ""

    def reset(self, iccid: str) -> None:
        """A (re)opened modem: remember its SIM and scan its storage now."""
        self.iccid = iccid
        self._scan_at = 0.0
        self._memories = None

    @property
    def scan_at(self) -> float:
        """When the next storage scan is due (time.monotonic)."""
        return self._scan_at

    def handle_unsolicited(self) -> None:
        """Act on every notification queued since the last call."""
        for group in self._modem.take_unsolicited():
            notices, _noise = parse_notices(group)
            for notice in notices:
                if isinstance(notice, NewMessageNotice):
                    stored = self._modem.read_stored(notice.memory, notice.index)
                    if stored is not None:
                        self._take(stored)
                elif isinstance(notice, StoredReportNotice):
                    stored = self._modem.read_stored(notice.memory, notice.index)
                    if stored is not None:
                        self._take_report(stored)
                elif isinstance(notice, InlineReport):
                    self._apply_report(notice.pdu)

    def scan_if_due(self) -> None:
        """Read every storage when the scan interval has passed."""
        now = time.monotonic()
        if now < self._scan_at:
            return
        self._scan_at = now + self._policy.scan_s
        if self._memories is None:
            self._memories = self._modem.memories()  # once per opening: it never changes
        for memory in self._memories:
            for stored in self._modem.list_stored(memory):
                if memory == REPORT_MEMORY:
                    self._take_report(stored)
                else:
                    self._take(stored)

    def _take(self, stored: StoredPdu) -> None:
        try:
            part = decode_deliver(stored.pdu)
        except UndecodablePdu:
            try:
                decode_report(stored.pdu)
            except UndecodablePdu as e:
                # Keep it on the SIM rather than lose it; a technician can read it.
                self._log.error("undecodable_pdu", memory=stored.memory, index=stored.index,
                                error=str(e))
                return
            self._take_report(stored)
            return
        sender = _normalise_sender(part.sender, self._policy.default_region)
        received = self._store.receive_part(IncomingPart(
            iccid=self.iccid, port=self._port, sender=sender, reference=part.reference,
            total=part.total, number=part.number, text=part.text, encoding=part.encoding,
            fingerprint=part.fingerprint), self._clock(), self._policy.matcher.match,
            self._confirmation)
        # Only now, with the part on disk, may it leave the modem.
        self._modem.delete_stored(stored.memory, stored.index)
        if received.inbound_id:
            self._log.info("sms_received", inbound_id=received.inbound_id, sender=mask(sender),
                           parts=part.total)
            self._on_stored()
        if received.opted_out:
            self._log.info("opt_out", sender=mask(sender), keyword=received.opted_out)

    def _take_report(self, stored: StoredPdu) -> None:
        self._apply_report(stored.pdu)
        self._modem.delete_stored(stored.memory, stored.index)

    def _apply_report(self, pdu: str) -> None:
        try:
            report = decode_report(pdu)
        except UndecodablePdu as e:
            self._log.warning("undecodable_report", error=str(e))
            return
        outcome = self._store.apply_report(
            self.iccid, report.mr, report.status, report.delivered, report.pending,
            self._clock(), self._policy.inactive_after)
        if not outcome.matched and not report.pending:
            recipient = _normalise_sender(report.recipient, self._policy.default_region)
            if self._store.settle_by_report(self.iccid, recipient, report.delivered,
                                            not report.delivered, self._clock()):
                self._log.info("settled_by_report", mr=report.mr, recipient=mask(recipient))
        self._log.info("status_report", mr=report.mr, tp_st=report.status,
                       matched=outcome.matched, state=outcome.message_state)
        if outcome.number_inactive:
            self._log.warning("number_inactive", number=mask(report.recipient))
        self._on_stored()


def _normalise_sender(sender: str, region: str) -> str:
    try:
        return normalise_number(sender, region)
    except Rejected:
        return sender  # short codes and alphanumeric senders stay as they came

