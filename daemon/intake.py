"""The intake thread: validates each batch, commits it, and only then acks it to the broker.

It pulls: while the queue of unsent messages is at `high_water` it waits before
taking the next batch, which stays unacked at the broker meanwhile.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from daemon import logs
from daemon.batch import BadBatch, BatchLimits, decode, parse
from daemon.config import Settings
from daemon.limits import InputLimits, check_count, check_size, check_texts
from daemon.mqtt import Incoming
from daemon.signing import BatchRefused, ReplayGuard, Verified, Verifier, read_key
from daemon.validator import Validator, ValidatorFailed
from store import events
from store.base import StoreUnavailable
from store.store import Store

GATE_POLL_S = 1.0
STORE_RETRY_S = 5.0
T = TypeVar("T")


class Intake:
    """Owns the batch queue between paho's thread and the store."""

    def __init__(self, store: Store, limits: BatchLimits, high_water: int,
                 clock: Callable[[], float], ack: Callable[[Incoming], None],
                 on_committed: Callable[[], None], input_limits: InputLimits | None = None,
                 verifier: Verifier | None = None, validator: Validator | None = None) -> None:
        self._store = store
        self.validator = validator
        self._input_limits = input_limits
        self._verifier = verifier
        self._signed: tuple[Verified, float] | None = None  # the batch in hand, and its now
        self._limits = limits
        self._high_water = high_water
        self._clock = clock
        self._ack = ack
        self._on_committed = on_committed
        self._queue: queue.Queue[Incoming] = queue.Queue()
        self._stopping = threading.Event()
        self._log = logs.get("intake")
        self.gate_closed = False
        self.store_error: str | None = None
        self.last_progress = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="intake", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop taking batches; one not yet committed stays unacked at the broker."""
        self._stopping.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def submit(self, item: Incoming) -> None:
        """Called from paho's thread."""
        self._queue.put(item)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.last_progress = time.monotonic()
            try:
                item = self._queue.get(timeout=GATE_POLL_S)
            except queue.Empty:
                continue
            if not self._wait_for_room():
                return
            self._take(item)

    def _wait_for_room(self) -> bool:
        while self._store.unsent_count() >= self._high_water:
            if not self.gate_closed:
                self._log.warning("queue_full", high_water=self._high_water)
                self.gate_closed = True
            if self._stopping.wait(GATE_POLL_S):
                return False
            self.last_progress = time.monotonic()
        if self.gate_closed:
            self._log.info("queue_has_room")
            self.gate_closed = False
        return True

    def _take(self, item: Incoming) -> None:
        while not self._stopping.is_set():
            try:
                self._commit(item)
            except StoreUnavailable as e:  # disk full, I/O error: keep it at the broker
                self.store_error = str(e)
                self._log.error("batch_not_stored", error=str(e))
                self._stopping.wait(STORE_RETRY_S)
                continue
            except Exception as e:  # a bug must not wedge the intake: answer, then go on
                self._log.exception("batch_failed")
                self._answer_bad(BadBatch(f"the gateway could not store it: {e!r}"))
            if self.store_error:
                self._log.info("store_writable_again")
                self.store_error = None
            self._ack(item)
            self._on_committed()
            return

    @contextmanager
    def _answering(self) -> Iterator[None]:
        """One commit for a batch's answer and, when it is signed, its signature.

        Whatever the answer (accepted, bad_batch, a limit), a copy of a signed batch
        is then `replayed_batch`; a batch whose answer did not commit is taken again.
        """
        with self._store.transaction():
            yield
            if self._signed is not None and self._verifier is not None:
                self._verifier.remember(*self._signed)

    def _answer_bad(self, bad: BadBatch) -> None:
        with self._answering():
            self._store.add_event(events.TOPIC_ACK, {
                "batch_id": bad.batch_id, "error": {"code": bad.code, "reason": bad.reason}})

    def _refuse(self, item: Incoming, refused: BatchRefused, batch_id: str | None = None,
                read_id: bool = True) -> None:
        """A batch refused unread (size, signature, count): its batch_id when cheap to read."""
        if read_id and refused.code != "payload_too_large":
            try:
                found = decode(item.payload).get("batch_id")
                batch_id = found if isinstance(found, str) else None
            except BadBatch:
                pass
        with self._answering():
            self._store.add_event(events.TOPIC_ACK, {
                "batch_id": batch_id, "error": {"code": refused.code, "reason": refused.reason}})
        self._log.warning("batch_refused", batch_id=batch_id, code=refused.code,
                          reason=refused.reason, bytes=len(item.payload))

    def _commit(self, item: Incoming) -> None:
        now = self._clock()
        try:
            if self._input_limits is not None:
                check_size(item.payload, self._input_limits)
            if self._verifier is not None:
                self._signed = (self._verifier.verify(item.payload, item.properties, now), now)
        except BatchRefused as e:
            self._refuse(item, e)
            return
        try:
            v = self.validator
            if not (v is not None and v.wanted(item.payload) and self._in_child(v, item, now)):
                self._in_process(item, now)
        finally:
            self._signed = None  # answered, or not stored: then nothing was remembered

    def _in_child(self, validator: Validator, item: Incoming, now: float) -> bool:
        """Validate in a child while committing here; False when the child failed."""
        started = time.monotonic()
        waits = _Waits()
        try:
            with validator.validate(item.payload, self._limits, self._input_limits,
                                    now) as (verdict, chunks):
                if verdict.refused is not None:
                    self._refuse(item, verdict.refused, verdict.batch_id, read_id=False)
                    return True
                if verdict.bad is not None:
                    self._bad_batch(item, verdict.bad)
                    return True
                assert verdict.batch_id is not None
                with self._answering():  # a failing child rolls the signature back too
                    outcome = self._store.accept_batch_chunks(verdict.batch_id,
                                                              waits.of(chunks), now)
        except ValidatorFailed as e:
            self._log.warning("validator_failed", error=str(e))
            return False
        self._log.info("batch_accepted", batch_id=verdict.batch_id, accepted=outcome.accepted,
                       duplicates=outcome.duplicates, rejected=outcome.rejected,
                       took_s=round(time.monotonic() - started, 3), validated_by="child",
                       queued_s=round(started - item.received_at, 3),
                       waited_for_child_s=round(waits.total, 3))
        return True

    def _in_process(self, item: Incoming, now: float) -> None:
        decoded = None  # a big payload decoded for the count check is not decoded again
        try:
            if self._input_limits is not None:
                decoded = check_count(item.payload, self._input_limits)
        except BatchRefused as e:
            self._refuse(item, e)
            return
        except BadBatch:
            pass  # not JSON: the parser answers bad_batch
        self._handle(item, now, decoded)

    def _bad_batch(self, item: Incoming, bad: BadBatch) -> None:
        self._answer_bad(bad)
        self._log.warning("bad_batch", batch_id=bad.batch_id, reason=bad.reason,
                          bytes=len(item.payload))

    def _handle(self, item: Incoming, now: float, decoded: dict[str, Any] | None = None) -> None:
        started = time.monotonic()
        try:
            parsed = parse(item.payload, self._limits, now, decoded)
            if self._input_limits is not None:
                parsed = check_texts(parsed, self._input_limits)
        except Exception as e:  # bad input of any shape must never stall the intake
            bad = e if isinstance(e, BadBatch) else BadBatch(f"unreadable batch: {e!r}")
            if not isinstance(e, BadBatch):
                self._log.exception("batch_parser_failed")
            self._bad_batch(item, bad)
            return
        validated = time.monotonic()
        with self._answering():
            outcome = self._store.accept_batch(parsed.batch_id, parsed.messages,
                                               parsed.rejected, now)
        # Where a big batch's time went: the figures BENCHMARKS.md reports.
        self._log.info("batch_accepted", batch_id=parsed.batch_id, accepted=outcome.accepted,
                       duplicates=outcome.duplicates, rejected=outcome.rejected,
                       took_s=round(time.monotonic() - started, 3), validated_by="intake",
                       validate_s=round(validated - started, 3),
                       queued_s=round(started - item.received_at, 3))


class _Waits:
    """How long the intake waited for the validator's chunks (the log's figure)."""

    def __init__(self) -> None:
        self.total = 0.0

    def of(self, chunks: Iterator[T]) -> Iterator[T]:
        while True:
            asked = time.monotonic()
            chunk = next(chunks, None)
            self.total += time.monotonic() - asked
            if chunk is None:
                return
            yield chunk


def input_limits(settings: Settings) -> InputLimits:
    """The [security] size limits."""
    sec = settings.security
    return InputLimits(sec.max_payload_bytes, sec.max_messages_per_batch, sec.max_text_chars)


def batch_verifier(settings: Settings, store: Store, now: float) -> Verifier | None:
    """A Verifier when [security] batch_hmac_key_file is set, else None (unsigned is fine).

    Its seen signatures live in `store`; an older version's file of them is imported.
    """
    sec = settings.security
    if not sec.batch_hmac_key_file:
        return None
    key = read_key(sec.batch_hmac_key_file)
    window = sec.max_batch_age_s + sec.max_clock_skew_s
    return Verifier(key, sec.max_batch_age_s, sec.max_clock_skew_s,
                    ReplayGuard(store, settings.data_dir, now, window))
