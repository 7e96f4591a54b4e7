"""One worker thread per serial port: it alone owns the modem and walks its state machine.

The dispatcher hands it one claimed message at a time (`assign`); the worker
sends it, records every part the network took, and settles the message.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from daemon import logs
from daemon.batch import mask
from daemon.receiver import ReceivePolicy, Receiver
from modem.errors import CmsError, ModemError, ModemGone
from modem.pdu import MAX_REFERENCE, encode_submit, plan_text
from modem.port import ModemInfo, ModemPort, RadioStatus, SendError
from store.models import State
from store.store import Claimed, Store

RADIO_POLL_S = 30.0  # CSQ/CREG while idle: often enough for a dashboard, rare on the wire
IDLE_WAIT_S = 1.0
# CMS codes worth another try (27.005 §3.2.5 and vendors): network congestion and
# temporary failures. Anything else is final for this message.
TRANSIENT_CMS = frozenset({38, 41, 42, 47, 98, 111, 331, 332, 500, 512, 513, 514, 515})
MAX_TRANSIENT_ATTEMPTS = 3


class PortState(StrEnum):
    """Where a port is; changed only by `PortWorker._set_state`, which logs it."""

    ABSENT = "absent"
    OPENING = "opening"
    READY = "ready"
    SENDING = "sending"
    FAULT = "fault"
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class PortView:
    """A snapshot of a port for state reports."""

    port: str
    state: PortState
    imei: str | None
    imsi: str | None
    iccid: str | None
    operator: str | None
    signal: int | None
    registered: bool
    last_error: str | None


class PortWorker:
    """Owns one ModemPort on its own thread."""

    def __init__(self, path: str, baudrate: int, cmgs_timeout_s: float, reopen_backoff_s: float,
                 store: Store, clock: Callable[[], float],
                 on_change: Callable[[bool], None], receive: ReceivePolicy,
                 on_stored: Callable[[], None]) -> None:
        self.path = path
        self.name = os.path.basename(path)
        self._wake = threading.Event()
        self._modem = ModemPort(path, baudrate, cmgs_timeout_s, on_unsolicited=self._wake.set)
        self._backoff_s = reopen_backoff_s
        self._store = store
        self._clock = clock
        # on_change(significant): wakes the dispatcher; significant changes (not the
        # ready <-> sending flicker of every send) are worth a new GatewayState.
        self._on_change = on_change
        self._log = logs.get("port").bind(port=self.name)
        self._lock = threading.Lock()
        self._receiver = Receiver(self._modem, self.name, store, clock, receive, self._log,
                                  on_stored)
        self._job: Claimed | None = None
        self._stopping = threading.Event()
        self._state = PortState.ABSENT
        self._info: ModemInfo | None = None
        self._radio = RadioStatus(signal=None, registered=False, operator=None)
        self._last_error: str | None = None
        self._concat_ref = random.randrange(MAX_REFERENCE + 1)
        self.last_progress = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"port-{self.name}", daemon=True)

    # --- called from other threads ------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the worker to finish its current send and close the port."""
        self._stopping.set()
        self._wake.set()

    def join(self, timeout: float) -> bool:
        """Wait for the thread; True when it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def idle(self) -> bool:
        """Ready to take a message now."""
        with self._lock:
            return self._state is PortState.READY and self._job is None

    @property
    def iccid(self) -> str | None:
        return self._info.iccid if self._info else None

    def assign(self, job: Claimed) -> None:
        """Hand over one message already committed as `sending` to this port."""
        with self._lock:
            if self._job is not None:
                raise RuntimeError(f"{self.name} already has a job")
            self._job = job
        self._wake.set()

    def view(self) -> PortView:
        info, radio = self._info, self._radio
        return PortView(port=self.name, state=self._state,
                        imei=info.imei if info else None, imsi=info.imsi if info else None,
                        iccid=info.iccid if info else None, operator=radio.operator,
                        signal=radio.signal, registered=radio.registered,
                        last_error=self._last_error)

    # --- the worker thread ---------------------------------------------------

    def _set_state(self, new: PortState, reason: str | None = None) -> None:
        with self._lock:
            old, self._state = self._state, new
        if old is new:
            return
        flicker = {old, new} == {PortState.READY, PortState.SENDING}
        if not flicker:
            self._log.info("port_state", old=old.value, new=new.value, reason=reason,
                           iccid=self.iccid)
        self._on_change(not flicker)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.last_progress = time.monotonic()
            if not self._modem.is_alive:
                self._open_or_wait()
                continue
            job = self._take_job()
            if job is not None:
                self._send(job)
            elif time.monotonic() - self._radio_at > RADIO_POLL_S:
                self._poll_radio()
            self._receive()
        self._modem.close()
        self._set_state(PortState.ABSENT, "stopped")

    _radio_at = 0.0

    def _open_or_wait(self) -> None:
        if self._state in (PortState.READY, PortState.SENDING):
            self._set_state(PortState.FAULT, self._last_error or "port closed")
        if not os.path.exists(self.path):
            self._set_state(PortState.ABSENT, "device node missing")
            self._stopping.wait(self._backoff_s)
            return
        self._set_state(PortState.OPENING)
        try:
            info = self._modem.open()
        except ModemError as e:
            self._last_error = str(e)
            self._set_state(PortState.FAULT, str(e))
            self._stopping.wait(self._backoff_s)
            return
        self._info = info
        self._receiver.reset(info.iccid)
        self._store.note_sim(info.iccid, info.imsi, self.name, info.imei)
        self._poll_radio()
        self._log.info("modem_identified", imei=info.imei, iccid=info.iccid,
                       model=info.model, operator=self._radio.operator)
        self._set_state(PortState.READY)

    def _receive(self) -> None:
        try:
            self._receiver.handle_unsolicited()
            self._receiver.scan_if_due()
        except ModemError as e:
            self._last_error = str(e)
            self._log.warning("receive_failed", error=str(e))
            if isinstance(e, ModemGone):
                self._modem.close()

    def _poll_radio(self) -> None:
        self._radio_at = time.monotonic()
        try:
            self._radio = self._modem.radio()
        except ModemError as e:
            self._last_error = str(e)
            self._log.warning("radio_poll_failed", error=str(e))

    def _take_job(self) -> Claimed | None:
        self._wake.wait(IDLE_WAIT_S)
        self._wake.clear()
        with self._lock:
            return self._job

    def _send(self, job: Claimed) -> None:
        self._set_state(PortState.SENDING)
        log = self._log.bind(msg_id=job.hq_id, batch_id=job.batch_id, iccid=self.iccid)
        iccid = self.iccid or ""
        plan = plan_text(job.text)
        reference = self._next_reference()
        pdus = encode_submit(job.to, plan, reference, job.delivery_report)

        def on_part(index: int, mr: int) -> None:
            self._store.record_part(job.id, index + 1, iccid, mr, self._clock())

        try:
            self._modem.send(pdus, on_part)
        except SendError as e:
            self._settle_failure(job, e, log)
        else:
            self._store.mark_sent(job.id, self._clock())
            log.info("sent", to=mask(job.to), parts=plan.count, encoding=plan.encoding.value)
        finally:
            with self._lock:
                self._job = None
            self.last_progress = time.monotonic()
            if self._modem.is_alive:
                self._set_state(PortState.READY)
            self._on_change(False)

    def _settle_failure(self, job: Claimed, e: SendError, log: object) -> None:
        now = self._clock()
        self._last_error = str(e.cause)
        cause = e.cause
        if e.maybe_sent:
            self._store.mark_failed(job.id, "modem_timeout", f"{cause}; the network may have it,"
                                    " so it is not sent again", now, state=State.UNCERTAIN)
        elif e.parts_done:
            self._store.mark_failed(job.id, "modem_error", f"{cause} after "
                                    f"{len(e.parts_done)} of {job.parts} parts went out", now)
        elif isinstance(cause, CmsError) and cause.code not in TRANSIENT_CMS:
            self._store.mark_failed(job.id, "modem_error", str(cause), now)
        elif job.attempts >= MAX_TRANSIENT_ATTEMPTS and not isinstance(cause, ModemGone):
            self._store.mark_failed(job.id, "modem_error", f"{cause} (after {job.attempts}"
                                    " attempts)", now)
        else:
            # Nothing reached the network: it may go again, on this port or another.
            self._store.requeue(job.id, now)
        self._log.warning("send_failed", msg_id=job.hq_id, error=str(cause),
                          maybe_sent=e.maybe_sent, parts_done=len(e.parts_done))
        if isinstance(cause, ModemGone):
            self._modem.close()

    def _next_reference(self) -> int:
        self._concat_ref = (self._concat_ref + 1) % (MAX_REFERENCE + 1)
        return self._concat_ref
