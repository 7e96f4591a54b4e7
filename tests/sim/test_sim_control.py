"""The control socket: ping, stats, injected send failures, hang, unplug and replug."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import serial
from gsmmodem.exceptions import CmsError, TimeoutException
from gsmmodem.modem import GsmModem

from modem.sim.control import request
from modem.sim.errors import ControlError
from modem.sim.pool import SimPool, serve
from tests.sim.sim_helpers import DEST, connected, journal, library_pdus, wait_for


def test_ping_and_stats(pool: SimPool, tmp_path: Path) -> None:
    assert request(tmp_path, {"cmd": "ping"}) == {"ok": True, "pong": True}
    reply = request(tmp_path, {"cmd": "stats"})
    assert reply["ok"] is True
    ports = reply["ports"]
    assert [(p["port"], p["make"], p["plugged"]) for p in ports] == [
        ("ttyGSM0", "sim800", True), ("ttyGSM1", "quectel", True),
    ]  # fmt: skip
    for port in ports:
        assert {"iccid", "imei", "pdus", "messages"} <= port.keys()
        assert (port["pdus"], port["messages"]) == (0, 0)


@pytest.mark.parametrize(
    "payload",
    [{"cmd": "nope"}, {"cmd": "unplug", "port": 9}, {"cmd": "unplug"}, {"cmd": ["x"]},
     {"cmd": "fail_next", "port": 0, "error": "boom"}, {"cmd": "hang", "port": 0, "on": "yes"}],
)  # fmt: skip
def test_bad_requests_get_an_error_reply(pool: SimPool, tmp_path: Path, payload: dict) -> None:
    reply = request(tmp_path, payload)
    assert reply["ok"] is False and reply["error"]
    assert request(tmp_path, {"cmd": "ping"})["ok"] is True  # the server lives on


def test_request_without_a_pool_raises(tmp_path: Path) -> None:
    with pytest.raises(ControlError):
        request(tmp_path, {"cmd": "ping"}, timeout=1.0)


def test_fail_next_makes_the_next_send_raise_cms_error(pool: SimPool, tmp_path: Path) -> None:
    fail = {"cmd": "fail_next", "port": 1, "error": "+CMS ERROR: 38", "count": 1}
    reply = request(tmp_path, fail)
    assert reply == {"ok": True, "port": 1, "pending_failures": 1}
    with connected(tmp_path / "ttyGSM1") as modem:
        with pytest.raises(CmsError) as failure:
            modem.sendSms(DEST, "first")
        assert failure.value.code == 38
        modem.sendSms(DEST, "second")
    assert [r["text"] for r in journal(tmp_path)] == ["second"]
    stats = request(tmp_path, {"cmd": "stats"})["ports"][1]
    assert (stats["pdus"], stats["messages"]) == (1, 1)


def test_hung_port_answers_nothing_until_released(pool: SimPool, tmp_path: Path) -> None:
    with connected(tmp_path / "ttyGSM0") as modem:
        assert request(tmp_path, {"cmd": "hang", "port": 0, "on": True})["hung"] is True
        with pytest.raises(TimeoutException):
            modem.write("AT", timeout=0.3)
        request(tmp_path, {"cmd": "hang", "port": 0, "on": False})
        assert modem.write("AT") == ["OK"]


def test_unplugged_port_vanishes_and_replug_brings_the_same_identity(
    pool: SimPool, tmp_path: Path
) -> None:
    link = tmp_path / "ttyGSM0"
    fatal = threading.Event()
    modem = GsmModem(str(link), 115200)
    modem.fatalErrorCallback = lambda error: fatal.set()
    modem.connect()
    imei, iccid = modem.imei, modem.write("AT+CCID")[0]
    modem.sendSms(DEST, "before")
    try:
        reply = request(tmp_path, {"cmd": "unplug", "port": 0})
        assert reply == {"ok": True, "port": 0, "plugged": False}
        assert not os.path.lexists(link)
        wait_for(fatal.is_set, what="the library's fatal error callback")
        assert modem.alive is False
        assert request(tmp_path, {"cmd": "stats"})["ports"][0]["plugged"] is False
    finally:
        modem.close()
    assert request(tmp_path, {"cmd": "replug", "port": 0})["plugged"] is True
    assert link.is_symlink()
    with connected(link) as again:
        assert (again.imei, again.write("AT+CCID")[0]) == (imei, iccid)
        again.sendSms(DEST, "after")
    records = journal(tmp_path)
    assert [r["text"] for r in records] == ["before", "after"]
    # The TP-MR counter lives on the SIM, so it carries on across the replug.
    assert records[1]["mr"] == [(records[0]["mr"][0] + 1) % 256]


def test_serve_runs_until_stopped_and_cleans_up(tmp_path: Path) -> None:
    stop = threading.Event()
    runner = threading.Thread(target=serve, args=(3, tmp_path), kwargs={"stop": stop})
    runner.start()
    try:
        wait_for(lambda: (tmp_path / "control.sock").exists(), what="control socket")
        assert request(tmp_path, {"cmd": "ping"})["ok"] is True
        assert all((tmp_path / f"ttyGSM{i}").is_symlink() for i in range(3))
    finally:
        stop.set()
        runner.join(timeout=10)
    assert not runner.is_alive()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["network.jsonl"]


def test_unplugged_port_mid_send_loses_the_part(tmp_path: Path) -> None:
    (pdu, length), *_ = library_pdus("in the air")
    with SimPool(1, tmp_path, latency_mean=30.0) as sim:
        port = serial.Serial(str(tmp_path / "ttyGSM0"), 115200, timeout=1)
        try:
            port.write(b"ATE0\r")
            assert port.read_until(b"OK\r\n").endswith(b"OK\r\n")
            port.write(f"AT+CMGS={length}\r".encode())
            assert port.read_until(b"> ") == b"\r\n> "
            port.write(pdu.encode() + b"\x1a")
            wait_for(lambda: sim.port(0).busy, what="send waiting for the network")
            request(tmp_path, {"cmd": "unplug", "port": 0})
            with pytest.raises(serial.SerialException):
                port.read(1)
        finally:
            port.close()
        assert request(tmp_path, {"cmd": "stats"})["ports"][0]["pdus"] == 0
    assert journal(tmp_path) == []


def test_serve_from_the_command_line_stops_on_sigterm(tmp_path: Path) -> None:
    code = "import sys; from modem.sim.pool import serve; serve(2, sys.argv[1])"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env)
    try:
        wait_for(lambda: (tmp_path / "control.sock").exists(), timeout=20, what="control socket")
        assert request(tmp_path, {"cmd": "ping"})["ok"] is True
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["network.jsonl"]
