"""What a technician sees for each fault: the fault LED's code, `smsgw status` and the journal.

Every fault the simulator can cause today is caused for real (a stopped broker, a
hung modem, a missing SIM, a refused registration) on a daemon whose LEDs run on
gpiozero's mock pins; the LED state is read through the control socket (`smsgw leds`).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.health import Fault
from modem.sim import control as sim_control
from tests.support.broker import Broker
from tests.support.disk import fill, small_filesystem
from tests.support.gateway import Daemon, SimulatedPool, smsgw_command
from tests.support.hq import Hq
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parent.parent
# Lines appended to the test config: the first land in [modems].
FAST_FAULTS = ('cmgs_timeout_s = 3\nquarantine_s = 30\n\n'
               '[leds]\nenabled = true\npin_factory = "mock"\n')


def journal_has(daemon: Daemon, event: str, fault: Fault) -> bool:
    """A key=value line of the daemon's stdout (journald's input) with this event and fault."""
    return any(f"event='{event}'" in line and f"fault='{fault.label}'" in line
               and f"code={fault.value}" in line for line in daemon.log().splitlines())


def smsgw(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*smsgw_command(), *args, "--config", str(daemon.config)],
                          capture_output=True, text=True, timeout=60, check=False)


def leds(daemon: Daemon) -> dict[str, Any] | None:
    result = smsgw(daemon, "leds", "--json")
    return json.loads(result.stdout) if result.returncode == 0 else None


def wait_leds(daemon: Daemon, ok: Any, what: str, timeout: float = 10) -> dict[str, Any]:
    """Poll the LED state: the panel follows the daemon's main loop, a tick behind status."""
    return wait_until(lambda: (s := leds(daemon)) and ok(s) and s, timeout, what)


def assert_technician_sees(daemon: Daemon, fault: Fault, port: str | None = None,
                           timeout: float = 60) -> None:
    """The fault LED blinks the fault's code, status names it, the journal logged it."""

    def led_shows() -> bool:
        state = leds(daemon)
        return bool(state and state["leds"]["fault"]["code"] == fault.value)

    wait_until(led_shows, timeout, f"the fault LED to blink code {fault.value} ({fault.label})")
    state = leds(daemon)
    assert state is not None
    assert state["leds"]["fault"]["fault"] == fault.label
    assert state["leds"]["fault"]["pattern"] == f"code_{fault.value}"
    text = smsgw(daemon, "leds").stdout
    assert f"fault code {fault.value}: {fault.label}" in text

    status = smsgw(daemon, "status")
    assert status.returncode == 0, status.stderr
    line = next(ln for ln in status.stdout.splitlines() if f"{fault.label} (LED code" in ln)
    if port:
        assert port in line
    names = [f["fault"] for f in json.loads(smsgw(daemon, "status", "--json").stdout)
             ["health"]["faults"]]
    assert fault.label in names

    wait_until(lambda: journal_has(daemon, "fault_raised", fault), 20,
               f"fault_raised {fault.label} in the journal")


def start(pool: SimulatedPool, daemon_factory: Any) -> Daemon:
    daemon = daemon_factory(pool, extra=FAST_FAULTS)
    daemon.start()
    return daemon


@contextlib.contextmanager
def on_small_disk(daemon: Daemon) -> Iterator[Daemon]:
    """The daemon's data_dir on its own small tmpfs, unmounted once the daemon has stopped."""
    with small_filesystem(daemon.dir / "data"):
        try:
            yield daemon
        finally:
            if daemon.alive:
                daemon.stop()


def wait_ready(daemon: Daemon, ports: int) -> None:
    def ready() -> bool:
        result = smsgw(daemon, "status", "--json")
        if result.returncode != 0:
            return False
        status = json.loads(result.stdout)
        return (status["broker"]["connected"]
                and sum(m["state"] == "ready" for m in status["modems"]) == ports)
    wait_until(ready, 30, f"{ports} ports ready and the broker connected")


def test_no_broker_blinks_code_2_and_clears_when_it_returns(
        pool_factory: Any, daemon_factory: Any, broker: Broker) -> None:
    pool = pool_factory(1)
    daemon = start(pool, daemon_factory)
    wait_ready(daemon, 1)
    state = wait_leds(daemon, lambda s: s["leds"]["broker"]["pattern"] == "on"
                      and s["leds"]["pool"]["pattern"] == "on", "broker and pool LEDs on")
    assert state["leds"]["fault"]["code"] == 0 and state["factory"] == "mock"
    broker.stop()
    assert_technician_sees(daemon, Fault.NO_BROKER)
    wait_leds(daemon, lambda s: s["leds"]["broker"]["pattern"] == "fast_blink",
              "the broker LED to show fast_blink")
    assert "DISCONNECTED, reconnecting" in smsgw(daemon, "status").stdout
    broker.start()
    wait_until(lambda: (leds(daemon) or {}).get("leds", {}).get("fault", {}).get("code") == 0,
               30, "the fault LED to go dark")
    wait_until(lambda: journal_has(daemon, "fault_cleared", Fault.NO_BROKER), 10,
               "fault_cleared")


def test_hung_modem_blinks_code_4(pool_factory: Any, daemon_factory: Any) -> None:
    pool = pool_factory(1)
    daemon = start(pool, daemon_factory)
    wait_ready(daemon, 1)
    assert sim_control.request(pool.dir, {"cmd": "hang", "port": 0})["ok"]
    sent = smsgw(daemon, "send", "--to", "13800138000", "--text", "into the void")
    assert sent.returncode == 0, sent.stderr
    assert_technician_sees(daemon, Fault.HUNG_MODEM, port="ttyGSM0")
    wait_leds(daemon, lambda s: s["leds"]["pool"]["pattern"] == "off",
              "the pool LED to show off")


def test_dead_sim_blinks_code_5(pool_factory: Any, daemon_factory: Any) -> None:
    pool = pool_factory(2)
    assert sim_control.request(pool.dir, {"cmd": "sim", "port": 1, "state": "absent"})["ok"]
    daemon = start(pool, daemon_factory)
    assert_technician_sees(daemon, Fault.DEAD_SIM, port="ttyGSM1")
    wait_leds(daemon, lambda s: s["leds"]["pool"]["pattern"] == "slow_blink",
              "the pool LED to show slow_blink")


def test_no_signal_blinks_code_6(pool_factory: Any, daemon_factory: Any) -> None:
    pool = pool_factory(2)
    assert sim_control.request(pool.dir, {"cmd": "radio", "port": 0, "creg": 3})["ok"]
    daemon = start(pool, daemon_factory)
    assert_technician_sees(daemon, Fault.NO_SIGNAL, port="ttyGSM0")
    wait_leds(daemon, lambda s: s["leds"]["pool"]["pattern"] == "slow_blink",
              "the pool LED to show slow_blink")


def test_unplugged_modem_blinks_code_3(pool_factory: Any, daemon_factory: Any) -> None:
    pool = pool_factory(2)
    daemon = start(pool, daemon_factory)
    wait_ready(daemon, 2)
    assert sim_control.request(pool.dir, {"cmd": "unplug", "port": 1})["ok"]
    assert_technician_sees(daemon, Fault.MODEM_FAULT, port="ttyGSM1")


def test_sim_over_quota_blinks_code_7_and_sims_names_the_limit(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool = pool_factory(1)
    daemon = daemon_factory(pool, extra=FAST_FAULTS + "\n[limits]\nper_hour = 2\nper_day = 0\n")
    daemon.start()
    wait_ready(daemon, 1)
    hq.publish("outbox", {"batch_id": "cap", "messages": [
        {"id": f"cap-{i}", "to": f"+86138{i:08d}", "text": f"cap {i}"} for i in range(4)]})
    assert_technician_sees(daemon, Fault.SIM_OVER_QUOTA, port="ttyGSM0")
    assert len(pool.network()) == 2
    line = next(ln for ln in smsgw(daemon, "status").stdout.splitlines()
                if "sim_over_quota (LED code 7)" in ln)
    assert "hour limit" in line, line
    sims = smsgw(daemon, "sims")
    assert sims.returncode == 0, sims.stderr
    header, row = sims.stdout.splitlines()[:2]
    held_by = row[header.index("HELD_BY"):].split()[0]
    assert held_by == "hour", sims.stdout
    wait_leds(daemon, lambda s: s["leds"]["pool"]["pattern"] == "off",
              "the pool LED to show off (the only SIM rests)")

    daemon.set_clock((time.time() // 3600 + 1) * 3600 + 5)  # the next hour: the cap lifts
    wait_until(lambda: len(pool.network()) == 4, 30, "the held messages sent in the new hour")
    wait_leds(daemon, lambda s: s["leds"]["fault"]["code"] == 0, "the fault LED to go dark")
    wait_until(lambda: journal_has(daemon, "fault_cleared", Fault.SIM_OVER_QUOTA), 10,
               "fault_cleared")


def test_full_disk_blinks_code_1_and_clears_when_space_is_freed(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool = pool_factory(1, latency=(0.3, 0.0))  # the disk fills while the port is sending
    with on_small_disk(daemon_factory(pool, extra=FAST_FAULTS)) as daemon:
        daemon.start()
        wait_ready(daemon, 1)
        hq.publish("outbox", {"batch_id": "before", "messages": [
            {"id": f"before-{i}", "to": f"+86138{i:08d}", "text": f"before {i}"}
            for i in range(10)]})
        wait_until(lambda: len(pool.network()) >= 2, 20, "the port to be sending")
        filler = fill(daemon.dir / "data")
        # The port cannot record its sends: the fault shows with no new batch arriving.
        assert_technician_sees(daemon, Fault.DISK_FULL)
        line = next(ln for ln in smsgw(daemon, "status").stdout.splitlines()
                    if "disk_full (LED code 1)" in ln)
        assert "database or disk is full" in line, line
        hq.publish("outbox", {"batch_id": "full", "messages": [
            {"id": "full-0", "to": "+8613900139000", "text": "no room for me"}]})
        wait_until(lambda: "batch_not_stored" in daemon.log(), 20, "batch_not_stored")
        wait_leds(daemon, lambda s: s["leds"]["heartbeat"]["pattern"] == "heartbeat",
                  "the heartbeat: the main loop outlives a full disk")

        filler.unlink()
        wait_leds(daemon, lambda s: s["leds"]["fault"]["code"] == 0, "the fault LED to go dark",
                  timeout=30)
        wait_until(lambda: journal_has(daemon, "fault_cleared", Fault.DISK_FULL), 10,
                   "fault_cleared")
        assert hq.wait_ack("full", timeout=30)["accepted"] == 1
        wait_until(lambda: len(pool.network()) == 11, 30, "every message sent once")
        # The port waited out the outage with one line at each end, not one per retry.
        port_lines = [ln for ln in daemon.log().splitlines()
                      if "component='port'" in ln and "store_" in ln]
        assert [("store_unavailable" in ln, "store_writable_again" in ln)
                for ln in port_lines] == [(True, False), (False, True)], port_lines


# --- installing -----------------------------------------------------------------------


def test_install_dry_run_says_what_it_would_do_and_changes_nothing(tmp_path: Path) -> None:
    env = dict(os.environ, SMSGW_PREFIX=str(tmp_path / "opt"), SMSGW_ETC=str(tmp_path / "etc"),
               SMSGW_UNIT_DIR=str(tmp_path / "unit"), SMSGW_UDEV_DIR=str(tmp_path / "udev"))
    result = subprocess.run(["sh", str(ROOT / "scripts" / "install.sh"), "--dry-run"],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in (
            "usermod --append --groups dialout,gpio smsgw",
            f"-m venv {tmp_path}/opt/venv",
            f"{tmp_path}/opt/venv/bin/pip install --quiet --upgrade {ROOT}",
            f"smsgw.example.toml {tmp_path}/etc/smsgw.toml",
            f"smsgw.service {tmp_path}/unit/smsgw.service",
            f"99-smsgw-modems.rules {tmp_path}/udev/99-smsgw-modems.rules",
            "systemctl enable smsgw.service"):
        assert expected in out, f"{expected!r} not in:\n{out}"
    assert all(line.startswith(("would run: ", "== ")) or not line.startswith("+ ")
               for line in out.splitlines())
    assert not any(p.exists() for p in (tmp_path / "opt", tmp_path / "etc", tmp_path / "unit"))

    # Run again with a config in place: it is kept, not overwritten.
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "smsgw.toml").write_text("# mine\n")
    again = subprocess.run(["sh", str(ROOT / "scripts" / "install.sh"), "--dry-run"],
                           capture_output=True, text=True, env=env, timeout=60, check=False)
    assert again.returncode == 0
    assert f"keeping the existing {tmp_path}/etc/smsgw.toml" in again.stdout
    assert "smsgw.example.toml" not in again.stdout
    assert (tmp_path / "etc" / "smsgw.toml").read_text() == "# mine\n"


@pytest.mark.parametrize("bad", ["--force", "extra"])
def test_install_refuses_unknown_arguments(bad: str) -> None:
    result = subprocess.run(["sh", str(ROOT / "scripts" / "install.sh"), bad],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2 and "usage" in result.stderr
