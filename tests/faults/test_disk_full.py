"""The data_dir's filesystem fills up: intake stops without corrupting anything."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.faults.helpers import batch, expected_pairs, final_states, log_tail
from tests.support.disk import fill, small_filesystem
from tests.support.hq import Hq
from tests.support.wait import wait_until


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
    filler = fill(data)
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


def test_a_stop_on_a_full_disk_exits_cleanly(pool_factory: Any, daemon_factory: Any,
                                            hq: Hq) -> None:
    pool = pool_factory(1)
    daemon = daemon_factory(pool)
    data = daemon.dir / "data"
    with small_filesystem(data):
        daemon.start()
        hq.wait_online()
        fill(data)
        hq.publish("outbox", batch("stop-full", "s", 1))
        wait_until(lambda: "batch_not_stored" in daemon.log(), 30,
                   "the daemon to notice it cannot store the batch")
        assert daemon.stop() == 0, log_tail(daemon)
    assert "event='stopped'" in daemon.log().splitlines()[-1], log_tail(daemon)
