"""The dispatcher thread: places queued messages on idle, eligible ports.

Each round it looks at the next few queued messages in dispatch order (urgent,
priority, fair rank), defers those that must wait (quiet hours, frequency cap),
and gives each of the rest to the best idle port: a preferred route first, then
the least-used SIM, not the SIM it just failed on. Claiming commits `sending`
before any PDU is written. Policy lives in plain functions (daemon/quota.py,
daemon/schedule.py, `choose_port` below).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from daemon import logs
from daemon.quota import QuotaPolicy, blocked
from daemon.schedule import QuietHours, Route, cap_until, quiet_until, route_for
from store.base import StoreUnavailable
from store.sims import SimCounters
from store.store import Candidate, Claimed, Store

HOUSEKEEPING_S = 2.0  # how often scheduled messages are promoted and overdue ones expired
MAX_WAIT_S = 2.0
PEEK_PER_PORT = 4  # candidates looked at per idle port each round: bounds the work
MIN_HOLD_S = 30.0


class Port(Protocol):
    """What the dispatcher needs of a port worker."""

    name: str

    @property
    def iccid(self) -> str | None: ...

    @property
    def operator(self) -> str | None: ...

    def dispatch_view(self) -> tuple[bool, bool, str | None]: ...

    def assign(self, job: Claimed) -> bool: ...


@dataclass(frozen=True)
class SendPolicy:
    """Everything the dispatcher decides with."""

    quota: QuotaPolicy
    quiet: QuietHours | None
    per_recipient_24h: int
    routes: tuple[Route, ...]


def choose_port(candidate: Candidate, ports: Sequence[Port],
                routes: tuple[Route, ...]) -> Port | None:
    """The port for this message among idle eligible `ports` (least-used first), or None."""
    pool = list(ports)
    route = route_for(candidate.to, routes)
    if route is not None:
        preferred = [p for p in pool if route.prefers(p.iccid, p.operator)]
        if preferred:
            pool = preferred
        elif not route.fallback:
            return None  # wait for a preferred SIM
    if not pool:
        return None
    others = [p for p in pool if p.iccid != candidate.avoid_iccid]
    return (others or pool)[0]


class Dispatcher:
    """Hands messages to ports whenever something changes, and at least every second."""

    def __init__(self, store: Store, ports: Callable[[], Sequence[Port]],
                 clock: Callable[[], float], policy: SendPolicy) -> None:
        self._store = store
        self._ports = ports
        self._clock = clock
        self._policy = policy
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._paused = threading.Event()
        self._log = logs.get("dispatcher")
        self._housekeeping_at = 0.0
        self.last_progress = time.monotonic()
        self._held: dict[str, tuple[str, float]] = {}  # iccid -> (why, until), last round
        self._all_held_until: float | None = None
        self._announced: dict[str, str] = {}  # iccid -> quota period already announced
        self._unannounced: dict[str, str] = {}  # written in the open transaction, not committed
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

    @property
    def quota_blocked(self) -> dict[str, str]:
        """SIMs held by a limit now, iccid -> why (for the state and the LEDs).

        Read against the clock: rounds stop when the queue empties, and a SIM whose
        hour has passed must not stay "over quota" until the next message comes.
        """
        now = self._clock()
        return {iccid: why for iccid, (why, until) in list(self._held.items()) if until > now}

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
        if abs(now - self._housekeeping_at) < HOUSEKEEPING_S:
            return
        self._housekeeping_at = now
        self._store.expire_overdue(now)
        self._store.promote_due(now)

    def _eligible_ports(self, now: float, finishing: Port | None = None) -> list[Port]:
        keys = self._policy.quota.keys(now)
        day_key = keys["day"]
        eligible = []
        blocked_now: dict[str, tuple[str, float]] = {}
        resumes: list[float] = []
        busy = False
        free: list[tuple[Port, str]] = []
        for port in self._ports():
            idle, occupied, iccid = port.dispatch_view()
            # A port that can change cards is not held for long: it rotates by itself.
            busy = busy or occupied
            if (idle or port is finishing) and iccid:
                free.append((port, iccid))
        # Only the free ports' SIMs: a round on a busy pool reads one row, not 64.
        counters = self._store.sim_counters([iccid for _port, iccid in free])
        for port, iccid in free:
            block = blocked(self._policy.quota, counters.get(iccid), iccid, now, keys)
            if block is not None:
                blocked_now[iccid] = (block.period, block.until)
                resumes.append(block.until)
                if block.is_quota and \
                        self._announced.get(iccid) != block.key and \
                        self._unannounced.get(iccid) != block.key:
                    # Once per SIM and period; the store also guards it across restarts.
                    self._store.note_quota(iccid, block.key, port.name, block.period,
                                           block.limit, block.until, now)
                    self._unannounced[iccid] = block.key  # remembered once committed
                continue
            eligible.append(port)
        self._held = blocked_now
        self._all_held_until = min(resumes) if resumes and not eligible and not busy else None
        return sorted(eligible, key=lambda p: (_day_count(counters, p.iccid, day_key), p.name))

    def settle_and_take(self, finishing: Port, settle: Callable[[], None]) -> Claimed | None:
        """On a worker's thread: commit `settle` and the port's next claim in one transaction.

        The port that just sent takes its next message without a hand-off to this
        thread and without a second fsync; the gap between two sends is one commit.
        A bug in the policy never costs the settle: it rolls back to a savepoint.
        """
        placed: list[tuple[Port, Claimed]] = []
        # The store's lock spans the commit and the hand-overs: until a claimed port
        # has its job it still looks idle, and no other round may claim for it.
        with self._store.lock:
            with self._store.transaction():
                settle()
                if not self._paused.is_set() and not self._stopping.is_set():
                    try:
                        with self._store.savepoint():
                            placed = self._round(self._clock(), finishing)
                    except StoreUnavailable:
                        self._unannounced.clear()
                        raise
                    except Exception:
                        self._log.exception("dispatch_failed")
                        self._unannounced.clear()
                        placed = []
            return self._deliver(placed, finishing)

    def _hand_out(self) -> None:
        with self._store.lock:
            try:
                with self._store.transaction():
                    placed = self._round(self._clock())
            except BaseException:
                self._unannounced.clear()
                raise
            self._deliver(placed, None)

    def _deliver(self, placed: list[tuple[Port, Claimed]], finishing: Port | None
                 ) -> Claimed | None:
        """After the commit (a claim that rolled back is no job): give each port its job.

        A port that cannot take it (it is stopping) gives it straight back to the queue.
        """
        self._announced.update(self._unannounced)
        self._unannounced.clear()
        mine = None
        for port, job in placed:
            if port is finishing:
                mine = job
            elif not port.assign(job):
                self._store.requeue(job.id, self._clock(), attempted=False)
        return mine

    def _round(self, now: float, finishing: Port | None = None) -> list[tuple[Port, Claimed]]:
        """Choose and claim messages for idle ports (and `finishing`), inside the caller's tx."""
        if not self._store.peek_queued(1):
            return []  # nothing to place: skip the per-port eligibility work
        ports = self._eligible_ports(now, finishing)
        if not ports:
            self._hold_queue(now)
            return []
        picks: list[tuple[Candidate, Port]] = []
        for candidate in self._store.peek_queued(len(ports) * PEEK_PER_PORT):
            if not ports:
                break
            if self._defer_if_needed(candidate, now):
                continue
            port = choose_port(candidate, ports, self._policy.routes)
            if port is None:
                continue
            picks.append((candidate, port))
            ports.remove(port)
        if not picks:
            return []
        jobs = self._store.claim_many(
            [(c.id, p.name, p.iccid or "") for c, p in picks], now)
        return [(port, job) for (_candidate, port), job in zip(picks, jobs, strict=True)
                if job is not None]

    def _hold_queue(self, now: float) -> None:
        """Every ready SIM is at a limit: what waits is `scheduled`, as HQ should see it."""
        until = self._all_held_until
        # Gaps of a few seconds are not worth a status per message.
        if until is None or until - now < MIN_HOLD_S:
            return
        held = self._store.defer_all_queued(until, "sim_limits", now)
        if held:
            self._log.info("queue_held", messages=held, until=until)

    def _defer_if_needed(self, candidate: Candidate, now: float) -> bool:
        """Schedule a message that may not go now; True when it was deferred."""
        if not candidate.urgent:
            until = quiet_until(candidate.to, now, self._policy.quiet)
            if until is not None:
                self._store.defer(candidate.id, until, "quiet_hours", now)
                return True
        cap = self._policy.per_recipient_24h
        if cap:
            until = cap_until(self._store.sent_to_since(candidate.to, now - 86400), now, cap)
            if until is not None:
                self._store.defer(candidate.id, until, "frequency_cap", now)
                return True
        return False


def _day_count(counters: dict[str, SimCounters], iccid: str | None, day_key: str) -> int:
    sim = counters.get(iccid or "")
    return sim.count("day", day_key) if sim else 0
