"""The dispatcher thread: hands queued messages to idle ports, one message per port at a time.

Policy lives in `order_idle_ports` (a plain function); the loop only wakes,
claims and hands over. Claiming commits `sending` before any PDU is written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from daemon import logs
from store.store import Claimed, Store

HOUSEKEEPING_S = 1.0  # how often scheduled messages are promoted and overdue ones expired
MAX_WAIT_S = 1.0


class Port(Protocol):
    """What the dispatcher needs of a port worker."""

    name: str

    @property
    def idle(self) -> bool: ...

    @property
    def iccid(self) -> str | None: ...

    def assign(self, job: Claimed) -> None: ...


def order_idle_ports(ports: Sequence[Port], sent_by_iccid: dict[str, int]) -> list[Port]:
    """Idle ports, least-used SIM first, so load spreads evenly over the SIMs."""
    idle = [p for p in ports if p.idle and p.iccid]
    return sorted(idle, key=lambda p: (sent_by_iccid.get(p.iccid or "", 0), p.name))


class Dispatcher:
    """Claims the next message for each idle port whenever something changes."""

    def __init__(self, store: Store, ports: Callable[[], Sequence[Port]],
                 clock: Callable[[], float]) -> None:
        self._store = store
        self._ports = ports
        self._clock = clock
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._paused = threading.Event()
        self._log = logs.get("dispatcher")
        self._housekeeping_at = 0.0
        self.last_progress = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop handing out work; messages already handed over finish on their ports."""
        self._stopping.set()
        self._wake.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def wake(self) -> None:
        """Something changed (a port went idle, a batch arrived): look again now."""
        self._wake.set()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()
        self.wake()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(MAX_WAIT_S)
            self._wake.clear()
            self.last_progress = time.monotonic()
            if self._stopping.is_set():
                break
            try:
                self._housekeeping()
                if not self._paused.is_set():
                    self._hand_out()
            except Exception:  # never let one bad row stop sending altogether
                self._log.exception("dispatch_failed")
                self._stopping.wait(MAX_WAIT_S)

    def _housekeeping(self) -> None:
        now = self._clock()
        if now - self._housekeeping_at < HOUSEKEEPING_S:
            return
        self._housekeeping_at = now
        self._store.expire_overdue(now)
        self._store.promote_due(now)

    def _hand_out(self) -> None:
        ports = order_idle_ports(self._ports(), self._store.sim_counts())
        for port in ports:
            job = self._store.claim_next(port.name, port.iccid or "", self._clock())
            if job is None:
                return
            port.assign(job)
