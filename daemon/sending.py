"""The sending duties of one port, run on that port's own thread.

One claimed message at a time: encode its parts, write them to the modem, record
every part the network took, and settle the message — `sent`, back to the queue
for a retry, or failed. A SIM that keeps failing is benched so its work moves on.
The port worker (daemon/ports.py) decides when to send and owns the port's state.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

from daemon.batch import mask
from daemon.failures import Verdict, judge_send_failure, port_is_suspect
from daemon.port_types import PortConfig
from daemon.slots import SlotKeeper
from modem.errors import ModemError
from modem.pdu import MAX_REFERENCE, encode_submit, plan_text
from modem.port import ModemPort, SendError
from store.models import State
from store.store import Claimed, Store

Durably = Callable[[Callable[[], Any]], Any]
# Commits a `sent` (the callable given) and claims the port's next message in the
# same commit (Dispatcher.settle_and_take, bound to the port).
TakeNext = Callable[[Callable[[], None]], Claimed | None]


class Sender:
    """Owned by one PortWorker; every method runs on the port's thread."""

    def __init__(self, modem: ModemPort, port: str, config: PortConfig, store: Store,
                 clock: Callable[[], float], log: Any, slots: SlotKeeper, durably: Durably,
                 on_error: Callable[[str], None], stopping: threading.Event,
                 take_next: TakeNext | None) -> None:
        self._modem = modem
        self._port = port
        self._config = config
        self._store = store
        self._clock = clock
        self._log = log
        self._slots = slots
        self._durably = durably  # the worker's: waits out a full disk until it stops
        self._on_error = on_error  # the port's last error, for its state report
        self._stopping = stopping  # the port is stopping: it takes no next message
        self._take_next = take_next  # None: every message goes through the dispatcher
        self._sim_failures = 0  # consecutive send failures blamed on the SIM
        self._concat_ref = random.randrange(MAX_REFERENCE + 1)

    def send(self, job: Claimed, iccid: str | None) -> Claimed | None:
        """Send `job` on the card `iccid` and settle it; the next message if claimed with it."""
        following: Claimed | None = None
        card = iccid or ""
        plan = plan_text(job.text)
        pdus = encode_submit(job.to, plan, self._next_reference(), job.delivery_report)

        def on_part(index: int, mr: int) -> None:
            if index + 1 < len(pdus):  # the last part is committed with `sent`, below
                self._durably(lambda: self._store.record_part(job.id, index + 1, card, mr,
                                                              self._clock()))

        try:
            mrs = self._modem.send(pdus, on_part)
        except SendError as e:
            self._settle_failure(job, iccid, e)
        except Exception as e:  # a bug below us: the PDU may be out, so never send it again
            self._log.exception("send_crashed", msg_id=job.hq_id)
            self._settle_failure(job, iccid, SendError(ModemError(repr(e)), [], maybe_sent=True))
            self._modem.close()
        else:
            now = self._clock()
            self._sim_failures = 0
            self._slots.note_sent()
            last = (len(mrs), card, mrs[-1])

            def settle() -> None:
                self._store.mark_sent(job.id, now, self._config.quota.keys(now), last_part=last)

            following = self._durably(lambda: self._settle_sent(settle))
            self._log.info("sent", msg_id=job.hq_id, batch_id=job.batch_id, iccid=card,
                           to=mask(job.to), parts=plan.count, encoding=plan.encoding.value)
        return following

    def _settle_sent(self, settle: Callable[[], None]) -> Claimed | None:
        """Commit the send; claim the next message in the same commit when this port may."""
        # A multi-card port may have to switch cards between sends; a stopping or
        # failing one takes nothing new. Those go back through the dispatcher.
        if self._take_next is None or self._slots.multi or self._stopping.is_set() \
                or not self._modem.is_alive:
            settle()
            return None
        return self._take_next(settle)

    def _settle_failure(self, job: Claimed, iccid: str | None, e: SendError) -> None:
        self._on_error(str(e.cause))
        c = self._config
        outcome = judge_send_failure(e.cause, len(e.parts_done), job.parts, e.maybe_sent,
                                     job.attempts, c.max_attempts, c.retry_backoff_s)
        now = self._clock()
        if outcome.verdict is Verdict.REQUEUE:
            self._durably(lambda: self._store.requeue(
                job.id, now, retry_at=now + outcome.retry_in_s, avoid_iccid=iccid))
        else:
            state = State.UNCERTAIN if outcome.verdict is Verdict.UNCERTAIN else State.FAILED
            self._durably(lambda: self._store.mark_failed(job.id, outcome.code, outcome.reason,
                                                          now, state=state))
        self._log.warning("send_failed", msg_id=job.hq_id, batch_id=job.batch_id,
                          error=str(e.cause), verdict=outcome.verdict.value,
                          parts_done=len(e.parts_done))
        if outcome.sim_fault:
            self._count_sim_failure(iccid, str(e.cause), now)
        if port_is_suspect(e.cause):
            # A hung or vanished modem: reopen it (the ladder) before it sends again.
            self._modem.close()

    def _count_sim_failure(self, iccid: str | None, reason: str, now: float) -> None:
        """Bench a SIM that keeps failing, so its work moves to the others."""
        self._sim_failures += 1
        if iccid and self._sim_failures >= self._config.bench_after_failures:
            until = now + self._config.bench_s
            self._log.warning("sim_benched", iccid=iccid, failures=self._sim_failures,
                              reason=reason)
            self._durably(lambda: self._store.bench_sim(iccid, until, reason, self._port, now))
            self._sim_failures = 0

    def _next_reference(self) -> int:
        self._concat_ref = (self._concat_ref + 1) % (MAX_REFERENCE + 1)
        return self._concat_ref
