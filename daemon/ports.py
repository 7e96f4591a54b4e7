"""One worker thread per serial port: it alone owns the modem and walks its state machine.

The dispatcher hands it one claimed message at a time (`assign`); the worker
sends it and settles the message (daemon/sending.py). Between sends it receives
(daemon/receiver.py), watches the radio, and climbs the recovery ladder
(daemon/failures.py) when the modem misbehaves.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from daemon import logs
from daemon.failures import Step, port_is_suspect
from daemon.port_types import PortConfig, PortState, PortView
from daemon.receiver import ReceivePolicy, Receiver
from daemon.sending import Sender
from daemon.slots import SlotKeeper
from modem.errors import ModemError, SimNotReady
from modem.port import ModemInfo, ModemPort, RadioStatus
from store import events
from store.base import StoreUnavailable
from store.store import Claimed, Store

RADIO_POLL_S = 120.0  # CSQ/CREG/COPS while idle: enough for a dashboard, rare on the wire
BENCHED_POLL_S = 5.0  # a port without network looks again this often
# Work arrives by events (assign, a notification, a task); the timeout only brings
# the next radio poll or storage scan, so an idle pool does not spin.
IDLE_WAIT_MAX_S = 30.0
STORE_RETRY_S = 2.0
UP_STATES = frozenset({"ready", "sending"})


SettleAndTake = Callable[["PortWorker", Callable[[], None]], Claimed | None]


class PortWorker:
    """Owns one ModemPort on its own thread."""

    def __init__(self, path: str, config: PortConfig, store: Store, clock: Callable[[], float],
                 on_change: Callable[[bool], None], receive: ReceivePolicy,
                 on_stored: Callable[[], None],
                 settle_and_take: SettleAndTake | None = None) -> None:
        self.path = path
        self._wake_publisher = on_stored
        self.name = os.path.basename(path)
        self._wake = threading.Event()
        self._modem = ModemPort(path, config.baudrate, config.cmgs_timeout_s,
                                on_unsolicited=self._wake.set)
        self._ladder = config.ladder
        self._store = store
        self._clock = clock
        # on_change(significant): wakes the dispatcher; significant changes (not the
        # ready <-> sending flicker of every send) are worth a new GatewayState.
        self._on_change = on_change
        self._log = logs.get("port").bind(port=self.name)
        self._outage = logs.StoreOutage(self._log)
        self._lock = threading.Lock()
        self._receiver = Receiver(self._modem, self.name, store, clock, receive, self._log,
                                  on_stored)
        self._slots = SlotKeeper(self._modem, self.name, config.slots, store, config.quota,
                                 clock, self._log)
        self._job: Claimed | None = None
        self._closed = False  # stopped: takes no more jobs
        self._tasks: list[Callable[[ModemPort], None]] = []
        self._stopping = threading.Event()
        # Dispatcher.settle_and_take: commits a send's outcome and claims this port's
        # next message in one go; without it every message goes through the dispatcher.
        take_next = None if settle_and_take is None else partial(settle_and_take, self)
        self._sender = Sender(self._modem, self.name, config, store, clock, self._log,
                              self._slots, self._durably, self._note_error, self._stopping,
                              take_next)
        self._state = PortState.ABSENT
        self._info: ModemInfo | None = None
        self._radio = RadioStatus(signal=None, registered=False, operator=None)
        self._radio_at = 0.0
        self._last_error: str | None = None
        self._failures = 0
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
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def iccid(self) -> str | None:
        return self._info.iccid if self._info else None

    @property
    def state(self) -> PortState:
        return self._state

    @property
    def operator(self) -> str | None:
        return self._radio.operator

    def dispatch_view(self) -> tuple[bool, bool, str | None]:
        """(idle: ready to take a message now; occupied: sending or about to, or able to
        change cards, so not held for long; ICCID) in one lock: the dispatcher asks
        every port on every round."""
        with self._lock:
            idle = self._state is PortState.READY and self._job is None
            busy = self._state is PortState.SENDING or self._job is not None
        return idle, busy or self._slots.multi, self._info.iccid if self._info else None

    def assign(self, job: Claimed) -> bool:
        """Hand over one message already committed as `sending` to this port.

        False when the port cannot take it (it has a job, or it is stopping): the
        caller puts the message back in the queue.
        """
        with self._lock:
            if self._job is not None or self._closed:
                return False
            self._job = job
        self._wake.set()
        return True

    def call(self, fn: Callable[[ModemPort], Any], timeout: float) -> Any:
        """Run `fn(modem)` on this port's own thread between sends (USSD, probes)."""
        done = threading.Event()
        box: dict[str, Any] = {}

        def task(modem: ModemPort) -> None:
            try:
                box["result"] = fn(modem)
            except Exception as e:  # handed back to the caller's thread
                box["error"] = e
            finally:
                done.set()

        with self._lock:
            self._tasks.append(task)
        self._wake.set()
        if not done.wait(timeout):
            raise TimeoutError(f"{self.name} did not get to it within {timeout} s")
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def view(self) -> PortView:
        info, radio = self._info, self._radio
        return PortView(port=self.name, state=self._state,
                        imei=info.imei if info else None, imsi=info.imsi if info else None,
                        iccid=info.iccid if info else None, operator=radio.operator,
                        signal=radio.signal, registered=radio.registered,
                        last_error=self._last_error, slots=self._slots.view())

    # --- state --------------------------------------------------------------

    def _set_state(self, new: PortState, reason: str | None = None) -> None:
        with self._lock:
            old, self._state = self._state, new
        if old is new:
            return
        flicker = {old, new} == {PortState.READY, PortState.SENDING}
        if not flicker:
            self._log.info("port_state", old=old.value, new=new.value, reason=reason,
                           iccid=self.iccid)
            if (old in UP_STATES) != (new in UP_STATES):
                self._announce(up=new in UP_STATES, reason=reason or new.value)
        self._on_change(not flicker)

    def _announce(self, up: bool, reason: str) -> None:
        """modem_up / modem_down for HQ, through the durable outbox."""
        body = {"type": "modem_up" if up else "modem_down", "at": events.rfc3339(self._clock()),
                "port": self.name, "iccid": self.iccid, "reason": reason}
        self._durably(lambda: self._store.add_event(events.TOPIC_EVENTS, body))

    # --- the worker thread ---------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.last_progress = time.monotonic()
            try:
                self._step()
            except Exception as e:  # the thread must outlive any bug: log, rest, go on
                self._log.exception("port_worker_error")
                self._last_error = repr(e)
                self._modem.close()
                self._stopping.wait(STORE_RETRY_S)
        self._release_unsent(closing=True)
        self._modem.close()
        self._set_state(PortState.ABSENT, "stopped")

    def _release_unsent(self, closing: bool = False) -> None:
        """A claimed message whose PDU was never written goes back to the queue.

        At stop (`closing`), and when the modem went away while the message waited.
        """
        with self._lock:
            job, self._job = self._job, None
            self._closed = self._closed or closing
        if job is not None:
            self._log.info("claim_released", msg_id=job.hq_id, state=self._state.value)
            self._durably(lambda: self._store.requeue(job.id, self._clock(), attempted=False))
            self._on_change(False)  # the dispatcher places it elsewhere

    def _step(self) -> None:
        if not self._modem.is_alive:
            self._release_unsent()  # it must not wait out the recovery ladder here
            self._recover()
            return
        job = self._take_job()
        if job is not None:
            self._send(job)
        elif self._slots.multi and self._state is PortState.READY:
            self._rotate()
        if job is None and time.monotonic() >= self._radio_at:
            self._poll_radio()
        self._receive()
        self._run_tasks()

    def _run_tasks(self) -> None:
        with self._lock:
            tasks, self._tasks = self._tasks, []
        for task in tasks:
            task(self._modem)

    def _recover(self) -> None:
        if self._state in UP_STATES:
            self._set_state(PortState.FAULT, self._last_error or "port closed")
        if not os.path.exists(self.path):
            self._set_state(PortState.ABSENT, "device node missing")
            self._failures = 0  # a replugged modem starts afresh
            self._stopping.wait(self._ladder.base_backoff_s)
            return
        step = self._ladder.step(self._failures)
        if step is Step.QUARANTINE:
            self._set_state(PortState.QUARANTINED, f"{self._failures} failed recoveries")
            self._stopping.wait(self._ladder.quarantine_s)
            self._failures = 0
            return
        self._set_state(PortState.OPENING, step.value)
        try:
            if step is not Step.REOPEN:
                self._log.warning("modem_reset", step=step.value, failures=self._failures)
                self._modem.reset(full=step is Step.FULL_RESET)
            info = self._modem.open()
        except ModemError as e:
            self._failures += 1
            self._last_error = str(e)
            fault = PortState.QUARANTINED if isinstance(e, SimNotReady) else PortState.FAULT
            self._set_state(fault, str(e))
            self._stopping.wait(self._ladder.backoff(self._failures))
            return
        self._failures = 0
        self._adopt(info)
        self._log.info("modem_identified", imei=info.imei, iccid=info.iccid, model=info.model)
        try:
            self._slots.discover(info)
        except ModemError as e:
            self._log.warning("slot_discovery_failed", error=str(e))
        self._poll_radio(opening=True)

    def _rotate(self) -> None:
        """Between sends only (never inside a multipart message): change card if the policy says."""
        try:
            info = self._slots.maybe_switch(
                lambda reason: self._set_state(PortState.OPENING, reason))
        except ModemError as e:
            self._last_error = str(e)
            self._modem.close()  # the recovery ladder takes it from here
            return
        if info is None:
            return
        self._adopt(info)
        self._poll_radio(opening=True)

    def _adopt(self, info: ModemInfo) -> None:
        """The card in use is `info`'s: counters, reports and replies follow its ICCID."""
        self._info = info
        self._receiver.reset(info.iccid)
        self._durably(lambda: self._store.note_sim(info.iccid, info.imsi, self.name, info.imei))

    def _poll_radio(self, opening: bool = False) -> None:
        """Read the radio; a port without registration is benched until it has one."""
        try:
            self._radio = self._modem.radio()
        except ModemError as e:
            self._last_error = str(e)
            self._log.warning("radio_poll_failed", error=str(e))
            self._radio_at = time.monotonic() + BENCHED_POLL_S
            return
        if self._radio.registered:
            self._radio_at = time.monotonic() + RADIO_POLL_S
            if self._state in (PortState.OPENING, PortState.QUARANTINED) or opening:
                self._set_state(PortState.READY, "registered")
        else:
            self._radio_at = time.monotonic() + BENCHED_POLL_S
            self._last_error = f"not registered (signal {self._radio.signal})"
            self._set_state(PortState.QUARANTINED, self._last_error)

    def _receive(self) -> None:
        try:
            self._receiver.handle_unsolicited()
            self._receiver.scan_if_due()
        except ModemError as e:
            self._last_error = str(e)
            self._log.warning("receive_failed", error=str(e))
            if port_is_suspect(e):
                self._modem.close()
        except StoreUnavailable as e:
            # Nothing was deleted from the modem: the next scan tries again.
            self._log.error("inbound_not_stored", error=str(e))

    def _take_job(self) -> Claimed | None:
        with self._lock:
            if self._job is not None:
                return self._job  # taken with the last send's commit: no wait
        due = min(self._radio_at, self._receiver.scan_at) - time.monotonic()
        self._wake.wait(min(IDLE_WAIT_MAX_S, max(0.0, due)))
        self._wake.clear()
        with self._lock:
            return self._job

    # --- sending (the send itself and its outcome: daemon/sending.py) ---------

    def _send(self, job: Claimed) -> None:
        following: Claimed | None = None  # the next message, when claimed with this one's commit
        if job.iccid and job.iccid != (self.iccid or ""):
            # Claimed for the card this port had before it switched: counters,
            # quotas and report matching belong to that card, so claim it afresh.
            self._release_unsent()
            return
        self._set_state(PortState.SENDING)
        try:
            following = self._sender.send(job, self.iccid)
        finally:
            with self._lock:
                self._job = following
            self.last_progress = time.monotonic()
            if following is None:
                if self._modem.is_alive and self._state is PortState.SENDING:
                    self._set_state(PortState.READY)
                if self._slots.multi:
                    self._wake.set()  # look at once whether this card must give way
                self._on_change(False)
            else:
                self._wake_publisher()  # the `sent` and next `sending` statuses

    def _note_error(self, error: str) -> None:
        """The Sender's report of why a send failed, for the port's state report."""
        self._last_error = error

    def _durably(self, commit: Callable[[], Any]) -> Any:
        """Run a store commit, waiting out a full disk: the fact must not be lost."""
        while True:
            try:
                done = commit()
            except StoreUnavailable as e:
                self._outage.failed(str(e))
                if self._stopping.wait(STORE_RETRY_S):
                    return None  # left for the settle rule at the next start
                continue
            self._outage.recovered()
            return done
