"""The gateway's clock: wall time, optionally shifted so tests and demos can move time."""

from __future__ import annotations

import os
import time
from pathlib import Path


class Clock:
    """Callable returning epoch seconds; with `offset_file`, plus the seconds written in it.

    The file is re-read when it changes (one stat per call), so a test can jump to
    23:00 in Beijing and back without restarting the daemon.
    """

    def __init__(self, offset_file: str = "") -> None:
        self._path = Path(offset_file) if offset_file else None
        self._mtime: float | None = None
        self._offset = 0.0

    def __call__(self) -> float:
        if self._path is not None:
            self._refresh(self._path)
        return time.time() + self._offset

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
