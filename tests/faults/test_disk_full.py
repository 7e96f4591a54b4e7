"""The data_dir's filesystem fills up: intake stops without corrupting anything."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.faults.helpers import batch, expected_pairs, final_states, log_tail
from tests.support.hq import Hq
from tests.support.wait import wait_until

TMPFS_SIZE = "4m"


@contextlib.contextmanager
def small_filesystem(path: Path) -> Iterator[Path]:
    """A tmpfs of TMPFS_SIZE mounted at `path` (we are root in the test sandbox)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; returns it (delete it to free the space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for chunk in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    return filler


def test_disk_full_stops_intake_without_corruption(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool = pool_factory(2)
    daemon = daemon_factory(pool)
    data = daemon.dir / "data"
    with small_filesystem(data):
        try:
            _run(pool, daemon, data, hq)
        finally:
            if daemon.alive:
                daemon.stop()


def _run(pool: Any, daemon: Any, data: Path, hq: Hq) -> None:
    daemon.start()
    hq.wait_online()
    filler = _fill(data)
    b = batch("on-full-disk", "f", 20)
    hq.publish("outbox", b)
    wait_until(lambda: "batch_not_stored" in daemon.log(), 30,
               "the daemon to notice it cannot store the batch")
    # It keeps retrying; while it does, HQ hears no BatchAck and the daemon stays alive.
    wait_until(lambda: daemon.log().count("batch_not_stored") >= 2, 30, "a second attempt")
    assert daemon.alive, log_tail(daemon)
    assert [a for a in hq.on("ack") if a.get("batch_id") == "on-full-disk"] == []
    assert pool.network() == []

    filler.unlink()
    ack = hq.wait_ack("on-full-disk", timeout=30)
    assert ack["accepted"] == 20, ack
    ids = set(expected_pairs(b))
    wait_until(lambda: {i for i, s in final_states(hq, ids).items() if s["state"] == "sent"}
               == ids, 60, "the batch to be sent once there is room")
    assert len(pool.network()) == 20
    assert len([a for a in hq.on("ack") if a.get("batch_id") == "on-full-disk"]) == 1
    assert daemon.stop() == 0
    check = subprocess.run(["sqlite3", str(data / "gateway.sqlite3"), "PRAGMA integrity_check"],
                           capture_output=True, text=True, check=False)
    assert check.stdout.strip() == "ok", check.stdout + check.stderr
