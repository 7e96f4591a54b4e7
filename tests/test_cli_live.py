"""The technician's commands against a real running daemon, over its control socket only."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from daemon.batch import mask
from modem.sim import control as sim_control
from tests.support.gateway import Daemon, SimulatedPool, smsgw_command
from tests.support.hq import Hq
from tests.support.wait import wait_until

NUMBER = "13800138000"
E164 = "+8613800138000"
MASKED = mask(E164)


def smsgw(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*smsgw_command(), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def ask(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return smsgw(*args, "--config", str(daemon.config))


def ask_json(daemon: Daemon, *args: str) -> Any:
    result = ask(daemon, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def ready_ports(daemon: Daemon) -> int:
    result = ask(daemon, "status", "--json")
    if result.returncode != 0:
        return 0
    return sum(1 for m in json.loads(result.stdout)["modems"] if m["state"] == "ready")


@pytest.fixture
def running(pool_factory: Any, daemon_factory: Any) -> tuple[SimulatedPool, Daemon]:
    pool = pool_factory(2)
    daemon = daemon_factory(pool)
    daemon.start()
    wait_until(lambda: ready_ports(daemon) == 2, 30, "both ports ready")
    return pool, daemon


def test_status_shows_ports_identities_queue_broker_and_no_fault(
        running: tuple[SimulatedPool, Daemon]) -> None:
    _pool, daemon = running
    wait_until(lambda: ask_json(daemon, "status")["broker"]["connected"], 20, "the broker link")
    status = ask_json(daemon, "status")
    assert status["health"] == {"pool": "all_ready", "ready": 2, "total": 2, "faults": []}
    for modem in status["modems"]:
        assert modem["imei"] and modem["iccid"] and modem["operator"]
        assert modem["registered"] is True
    text = ask(daemon, "status").stdout
    lines = text.splitlines()
    assert lines[1].startswith("broker       connected")
    assert "faults       none" in text
    assert "pool         all_ready: 2 of 2 ports ready" in text
    header = next(line for line in lines if line.startswith("PORT"))
    assert header.split() == ["PORT", "STATE", "IMEI", "ICCID", "OPERATOR", "SIGNAL", "REG",
                              "SENT_TODAY", "LAST_ERROR"]
    rows = lines[lines.index(header) + 1:]
    assert sorted(r.split()[0] for r in rows) == ["ttyGSM0", "ttyGSM1"]
    # every column starts where its header starts
    for row in rows:
        assert row[header.index("ICCID"):].split()[0] == next(
            m["iccid"] for m in status["modems"] if m["port"] == row.split()[0])


def test_a_local_send_is_queued_like_a_batch_then_sent(
        running: tuple[SimulatedPool, Daemon], hq: Hq) -> None:
    pool, daemon = running
    wait_until(lambda: ask_json(daemon, "status")["broker"]["connected"], 20, "the broker link")
    hq.publish("cmd", {"cmd_id": "p1", "cmd": "pause"})
    wait_until(lambda: any(r.get("cmd_id") == "p1" for r in hq.on("reply")), 20, "paused")
    sent = ask(daemon, "send", "--to", NUMBER, "--text", "technician test")
    assert sent.returncode == 0, sent.stderr
    msg_id = sent.stdout.strip()
    assert msg_id.startswith("local-")

    queue = ask(daemon, "queue").stdout
    assert msg_id in queue and MASKED in queue and E164 not in queue
    assert "queued 1" in queue
    revealed = ask_json(daemon, "queue", "--reveal")
    assert revealed["next"][0]["to"] == E164

    hq.publish("cmd", {"cmd_id": "r1", "cmd": "resume"})
    wait_until(lambda: any(m["to"] == E164 and m["text"] == "technician test"
                           for m in pool.network()), 30, "the local message on the network")
    hq.wait_final([msg_id], {"sent", "delivered"}, 30)


def test_a_local_send_gets_hqs_validation(running: tuple[SimulatedPool, Daemon]) -> None:
    _pool, daemon = running
    result = ask(daemon, "send", "--to", "12", "--text", "x")
    assert result.returncode == 1
    assert "invalid_number" in result.stderr


def test_stoplist_add_list_remove(running: tuple[SimulatedPool, Daemon]) -> None:
    _pool, daemon = running
    added = ask(daemon, "stoplist", "add", NUMBER)
    assert added.returncode == 0, added.stderr
    assert "added 1 number(s)" in added.stdout
    listed = ask(daemon, "stoplist", "list").stdout
    assert MASKED in listed and "hq" in listed
    assert ask_json(daemon, "stoplist", "list", "--reveal")[0]["number"] == E164
    # A stop-listed number gets nothing, local sends included.
    refused = ask(daemon, "send", "--to", NUMBER, "--text", "x")
    assert refused.returncode == 1 and "opted_out" in refused.stderr
    removed = ask(daemon, "stoplist", "remove", NUMBER)
    assert "removed 1 number(s)" in removed.stdout
    assert "the stop-list is empty" in ask(daemon, "stoplist", "list").stdout


def test_inbox_masks_numbers_and_texts_unless_revealed(
        running: tuple[SimulatedPool, Daemon]) -> None:
    pool, daemon = running
    reply = sim_control.request(pool.dir, {"cmd": "inject_sms", "port": 1, "from": E164,
                                           "text": "hello gateway"})
    assert reply["ok"], reply
    wait_until(lambda: ask_json(daemon, "inbox"), 30, "the SMS in the inbox")
    text = ask(daemon, "inbox").stdout
    assert MASKED in text and "hello gateway" not in text and "ttyGSM1" in text
    revealed = ask_json(daemon, "inbox", "--reveal")[0]
    assert (revealed["from"], revealed["text"]) == (E164, "hello gateway")


def test_sims_lists_every_sim_with_its_port(running: tuple[SimulatedPool, Daemon]) -> None:
    _pool, daemon = running
    status = ask_json(daemon, "status")
    rows = ask_json(daemon, "sims")
    assert {r["iccid"]: r["port"] for r in rows} == {
        m["iccid"]: m["port"] for m in status["modems"]}
    text = ask(daemon, "sims").stdout
    assert text.splitlines()[0].split()[:4] == ["PORT", "SLOT", "STATE", "ICCID"]


def test_probe_refuses_a_port_the_daemon_holds_and_reads_a_free_one(
        running: tuple[SimulatedPool, Daemon], pool_factory: Any) -> None:
    pool, daemon = running
    held = ask(daemon, "probe", str(pool.dir / "ttyGSM0"))
    assert held.returncode == 4
    assert "held by the running daemon" in held.stderr
    spare = pool_factory(1)  # not in the daemon's glob
    free = ask(daemon, "probe", str(spare.dir / "ttyGSM0"), "--json")
    assert free.returncode == 0, free.stderr
    info = json.loads(free.stdout)
    assert info["imei"] and info["iccid"].startswith("89") and info["imsi"]
    assert info["registered"] is True and info["operator"]
    text = ask(daemon, "probe", str(spare.dir / "ttyGSM0")).stdout
    assert any(line.startswith("iccid") and info["iccid"] in line for line in text.splitlines())


def test_balance_dials_on_the_ports_own_thread_and_prints_the_operators_answer(
        running: tuple[SimulatedPool, Daemon]) -> None:
    pool, daemon = running
    result = ask(daemon, "balance", "ttyGSM0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ttyGSM0 *100#: Balance: 12.34 CNY"
    assert sim_control.request(pool.dir, {"cmd": "ussd", "port": 1,
                                          "text": "Yue 0.50 yuan, valid until 2027-01-31"})["ok"]
    other = ask(daemon, "balance", "ttyGSM1", "--code", "*101#", "--json")
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout)["answer"] == "Yue 0.50 yuan, valid until 2027-01-31"
    unknown = ask(daemon, "balance", "ttyGSM9")
    assert unknown.returncode == 1 and "no port 'ttyGSM9'" in unknown.stderr
    assert ready_ports(daemon) == 2


@pytest.mark.parametrize("args", [
    ("status",), ("sims",), ("queue",), ("inbox",), ("send", "--to", NUMBER, "--text", "x"),
    ("stoplist", "list"), ("balance", "ttyGSM0"), ("leds",)])
def test_every_command_says_the_daemon_is_not_running(tmp_path: Path, args: tuple[str]) -> None:
    config = tmp_path / "smsgw.toml"
    config.write_text(f'[gateway]\nid = "gw-1"\ndata_dir = "{tmp_path / "data"}"\n')
    result = smsgw(*args, "--config", str(config))
    assert result.returncode == 3
    assert "not running" in result.stderr
    assert str(tmp_path / "data" / "control.sock") in result.stderr
