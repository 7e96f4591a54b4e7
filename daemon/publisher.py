"""Drains the store's event outbox to MQTT in seq order, deleting each row on PUBACK.

At most WINDOW rows are handed to paho at once, so an offline broker costs a
bounded amount of memory: the rest waits on disk. paho resends what it holds
after a reconnect (persistent session), so a row is handed over only once per run.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Protocol

from daemon import logs
from store.base import StoreUnavailable
from store.events import with_envelope
from store.store import Store

WINDOW = 200  # rows in paho's hands at most
IDLE_WAIT_S = 5.0  # new rows and PUBACKs wake it; this is only a safety net
DELETE_BATCH = 500
DELETE_EVERY_S = 1.0
STORE_RETRY_S = 5.0  # a full disk: try the deletes again after this pause


class Sender(Protocol):
    """The MQTT side: publish returns paho's message id."""

    def publish_event(self, topic_suffix: str, payload: str, retain: bool) -> int: ...


class Publisher:
    """One thread; only it touches the in-flight map."""

    def __init__(self, store: Store, gateway_id: str) -> None:
        self._store = store
        self._gw = gateway_id
        self._sender: Sender | None = None
        self._acked: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._inflight: dict[int, int] = {}  # paho mid -> seq
        self._early: set[int] = set()  # PUBACKs that beat our bookkeeping
        self._last_seq = 0
        self._acked_seqs: list[int] = []
        self._deleted_at = 0.0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._log = logs.get("publisher")
        self._outage = logs.StoreOutage(self._log)  # one line per full-disk spell
        self.last_progress = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    def start(self, sender: Sender) -> None:
        self._sender = sender
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def wake(self) -> None:
        """New rows were committed."""
        self._wake.set()

    def on_puback(self, mid: int) -> None:
        """Called from paho's thread: only enqueue (paho holds its own locks here)."""
        self._acked.put(mid)
        self._wake.set()

    def drain(self, timeout: float) -> bool:
        """Wait until every committed row is acknowledged; True when the outbox is empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.wake()
            if self._store.unpublished_count() <= len(self._acked_seqs):
                return True  # the rest are acknowledged, only not yet deleted
            time.sleep(0.05)
        return False

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(IDLE_WAIT_S)
            self._wake.clear()
            self.last_progress = time.monotonic()
            try:
                self._settle_acks()
                self._hand_over()
                self._flush_deletes()
            except StoreUnavailable as e:  # disk full, I/O error: not a bug, no traceback
                self._outage.failed(str(e), acknowledged=len(self._acked_seqs))
                self._stopping.wait(STORE_RETRY_S)
                self._wake.set()  # the acknowledged rows still wait for their delete
                continue
            except Exception:
                self._log.exception("publish_failed")
                self._stopping.wait(IDLE_WAIT_S)
                continue
            self._outage.recovered()
        try:
            self._settle_acks()
            self._flush_deletes(force=True)
        except StoreUnavailable as e:  # those rows are republished at the next start
            self._log.error("store_unavailable", error=str(e), acknowledged=len(self._acked_seqs))
        except Exception:
            self._log.exception("publish_final_flush_failed")

    def _settle_acks(self) -> None:
        done: list[int] = []
        while True:
            try:
                mid = self._acked.get_nowait()
            except queue.Empty:
                break
            seq = self._inflight.pop(mid, None)
            if seq is None:
                self._early.add(mid)
            else:
                done.append(seq)
        for mid in list(self._early):
            if mid in self._inflight:
                self._early.discard(mid)
                done.append(self._inflight.pop(mid))
        self._acked_seqs += done

    def _flush_deletes(self, force: bool = False) -> None:
        """Forget acknowledged rows in groups: each delete is a commit (an fsync) that the
        port workers would queue behind. A crash before it only republishes those rows,
        which HQ drops by seq."""
        now = time.monotonic()
        if self._acked_seqs and (force or len(self._acked_seqs) >= DELETE_BATCH
                                 or now - self._deleted_at >= DELETE_EVERY_S):
            self._store.delete_events(self._acked_seqs)
            self._acked_seqs = []
            self._deleted_at = now

    def _hand_over(self) -> None:
        assert self._sender is not None
        room = WINDOW - len(self._inflight)
        if room <= 0:
            return
        rows = self._store.pending_events(self._last_seq, room)
        for row in rows:
            payload = with_envelope(row.body, self._gw, row.seq)
            mid = self._sender.publish_event(row.topic, payload, row.retain)
            self._inflight[mid] = row.seq
            self._last_seq = row.seq
        if rows:
            self._settle_acks()
            if len(rows) == room:
                self._wake.set()
