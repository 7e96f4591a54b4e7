"""Start the real `smsgw simulate` and `smsgw run` processes the way a user does."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.wait import wait_until


def smsgw_command() -> list[str]:
    beside = Path(sys.executable).parent / "smsgw"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("smsgw")
    return [found] if found else [sys.executable, "-m", "daemon"]


class SimulatedPool:
    """`smsgw simulate` in its own process."""

    def __init__(self, directory: Path, ports: int, latency: tuple[float, float] = (0.05, 0.02),
                 make: str = "mixed", extra_args: tuple[str, ...] = ()) -> None:
        self.dir = directory
        self.ports = ports
        self.dir.mkdir(parents=True, exist_ok=True)
        log = open(self.dir.parent / "simulate.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*smsgw_command(), "simulate", "--ports", str(ports), "--dir", str(directory),
             "--latency", str(latency[0]), str(latency[1]), "--make", make, *extra_args],
            stdout=log, stderr=log)
        wait_until(lambda: all((self.dir / f"ttyGSM{i}").exists() for i in range(ports))
                   and (self.dir / "control.sock").exists(), 15,
                   "the simulated ports and control socket to appear")

    def network(self) -> list[dict[str, Any]]:
        """Every message the simulated network received, in order."""
        path = self.dir / "network.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Daemon:
    """`smsgw run --config FILE` in its own process."""

    def __init__(self, workdir: Path, broker_port: int, ports_glob: str, gw: str = "gw-test",
                 extra: str = "", modems_extra: str = "") -> None:
        self.dir = workdir
        self.gw = gw
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "smsgw.toml"
        self.config.write_text(
            f'[gateway]\nid = "{gw}"\ndata_dir = "{self.dir / "data"}"\n'
            'default_region = "CN"\n'
            f'clock_offset_file = "{self.dir / "clock-offset"}"\n\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\nreconnect_max_s = 2\n\n'
            f'[modems]\nports = ["{ports_glob}"]\nrescan_s = 1\nreopen_backoff_s = 0.5\n'
            + modems_extra + extra, encoding="utf-8")
        self.log_path = self.dir / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env_extra: dict[str, str] | None = None) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
        self.proc = subprocess.Popen([*smsgw_command(), "run", "--config", str(self.config)],
                                     stdout=log, stderr=log, env=env)

    def set_clock(self, epoch: float) -> None:
        """Make the daemon's clock read `epoch` from now on (the injectable clock)."""
        (self.dir / "clock-offset").write_text(f"{epoch - time.time():.3f}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the daemon did not stop within "
                                 f"{timeout} s of SIGTERM") from None

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
