"""A per-port timer thread: runs delayed actions in order without blocking other ports."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

Action = Callable[[], object]


class TimerThread:
    """Runs scheduled actions on one owned thread; cancel_all() drops those not yet run."""

    def __init__(self, name: str, run: Callable[[Action], None]) -> None:
        # `run` wraps each action (the port takes its lock there), so actions never race input.
        self._run = run
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Action]] = []
        self._order = itertools.count()  # ties keep scheduling order
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def schedule(self, delay: float, action: Action) -> None:
        """Run `action` once, `delay` seconds from now."""
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), action))
            self._cond.notify()

    def cancel_all(self) -> None:
        """Forget every action not yet started."""
        with self._cond:
            self._heap.clear()

    def stop(self) -> None:
        """Drop pending actions and join the thread."""
        with self._cond:
            self._stopping = True
            self._heap.clear()
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                if self._stopping:
                    return
                _, _, action = heapq.heappop(self._heap)
            self._run(action)
