"""A real full disk: a small tmpfs under the test's directory, and a file that fills it."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

TMPFS_SIZE = "4m"
FILL_CHUNKS = (65536, 4096, 1)  # big writes first, then down to the last free byte


@contextlib.contextmanager
def small_filesystem(path: Path, size: str = TMPFS_SIZE) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (we are root in the test sandbox)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; returns it (delete it to free the space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for chunk in FILL_CHUNKS:
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    return filler
