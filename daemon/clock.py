"""The gateway's clock: wall time, optionally shifted so tests and demos can move time."""

from __future__ import annotations

import os
import time
from pathlib import Path

RECHECK_S = 0.2


class Clock:
    """Callable returning epoch seconds; with `offset_file`, plus the seconds written in it.

    The file is looked at again at most every RECHECK_S when it changed, so a test can
    jump to 23:00 in Beijing and back without restarting the daemon.
    """

    def __init__(self, offset_file: str = "") -> None:
        self._path = Path(offset_file) if offset_file else None
        self._mtime: float | None = None
        self._offset = 0.0
        self._checked_at = 0.0

    def __call__(self) -> float:
        now = time.time()
        if self._path is not None and abs(now - self._checked_at) >= RECHECK_S:
            self._checked_at = now
            self._refresh(self._path)
        return now + self._offset

    def _refresh(self, path: Path) -> None:
        try:
            mtime = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            self._offset = 0.0
            return
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                self._offset = float(path.read_text().strip() or 0)
            except ValueError:
                self._offset = 0.0
