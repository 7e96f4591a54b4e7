"""systemd integration: READY only once store and broker are up, WATCHDOG while healthy."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from tests.support.broker import Broker
from tests.support.gateway import smsgw_command
from tests.support.wait import wait_until

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "smsgw.service"


def _datagrams(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_ready_waits_for_the_broker_and_the_watchdog_is_fed(
        tmp_path: Path, pool_factory: Any, daemon_factory: Any, broker: Broker) -> None:
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.setblocking(False)
    try:
        pool = pool_factory(1)
        daemon = daemon_factory(pool)
        broker.stop()
        daemon.start({"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "1000000"})
        wait_until(lambda: "event='started'" in daemon.log(), 20, "the daemon to start")
        assert not any("READY=1" in d for d in _datagrams(sock)), "READY before the broker"
        broker.start()
        got: list[str] = []
        wait_until(lambda: got.extend(_datagrams(sock)) or "READY=1" in got, 30, "READY=1")
        wait_until(lambda: got.extend(_datagrams(sock)) or got.count("WATCHDOG=1") >= 2, 10,
                   "two watchdog pings")
        assert daemon.stop() == 0
        assert "STOPPING=1" in got + _datagrams(sock)
    finally:
        sock.close()


def test_the_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this checkout's smsgw.
    unit = tmp_path / "smsgw.service"
    unit.write_text(UNIT.read_text().replace("/opt/smsgw/venv/bin/smsgw", smsgw_command()[0]))
    result = subprocess.run([_systemd_analyze(), "verify", str(unit)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    assert Path(found).exists(), "systemd-analyze missing: scripts/ensure-system-packages"
    return found
