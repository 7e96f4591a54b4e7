"""Rotating SIMs inside a port, end to end: simulated ports with several card slots."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from modem.sim.control import request
from tests.support.gateway import Daemon, SimulatedPool, smsgw_command
from tests.support.hq import Hq
from tests.support.wait import wait_until

SLOTS = ("--slots", "3", "--switch-delay", "0.3")
ROTATION = ("\n[limits]\nper_hour = 0\nper_day = 10\n"
            "\n[send]\nretry_backoff_s = 0\nbench_after_failures = 1\n")
MODEMS = "switch_timeout_s = 20\n"


def _start(pool_factory: Any, daemon_factory: Any, hq: Hq,
           ports: int = 2) -> tuple[SimulatedPool, Daemon]:
    pool = pool_factory(ports, extra_args=SLOTS)
    daemon = daemon_factory(pool, extra=ROTATION, modems_extra=MODEMS)
    daemon.start()
    hq.wait_online()
    return pool, daemon


def _batch(batch_id: str, n: int, text: str = "") -> dict[str, Any]:
    return {"batch_id": batch_id, "messages": [
        {"id": f"{batch_id}-{i}", "to": f"+86138{i:08d}", "text": text or f"{batch_id} {i}"}
        for i in range(n)]}


def test_ports_rotate_cards_past_the_daily_quota_and_keep_counting_over_a_restart(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool, daemon = _start(pool_factory, daemon_factory, hq)
    batch = _batch("rot", 55)
    hq.publish("outbox", batch)
    wait_until(lambda: len(pool.network()) >= 25, 120, "25 messages out")
    assert daemon.stop() == 0
    daemon.start()
    ids = [m["id"] for m in batch["messages"]]
    hq.wait_final(ids, {"sent"}, 180)

    network = pool.network()
    assert sorted(m["text"] for m in network) == sorted(m["text"] for m in batch["messages"])
    per_card = Counter(m["iccid"] for m in network)
    assert max(per_card.values()) <= 10, per_card
    assert len(per_card) >= 6 - 1  # 55 messages need at least 6 cards of 10
    switched = [e for e in hq.on("events") if e["type"] == "sim_switched"]
    assert len(switched) >= 4
    assert all(e["reason"] and e["took_s"] >= 0 for e in switched)
    assert "sim_switched" in daemon.log()


def test_a_card_the_operator_blocks_is_switched_away_from_without_a_duplicate(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool, _ = _start(pool_factory, daemon_factory, hq, ports=1)
    assert request(pool.dir, {"cmd": "block_after", "port": 0, "sends": 3, "code": 21})["ok"]
    batch = _batch("blk", 8)
    hq.publish("outbox", batch)
    hq.wait_final([m["id"] for m in batch["messages"]], {"sent"}, 120)
    network = pool.network()
    assert sorted(m["text"] for m in network) == sorted(m["text"] for m in batch["messages"])
    assert len({m["iccid"] for m in network}) >= 2
    assert any(e["type"] == "sim_switched" for e in hq.on("events"))


def test_multipart_messages_never_straddle_a_switch(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool, _ = _start(pool_factory, daemon_factory, hq, ports=1)
    text = "Длинное напоминание о продлении подписки. " * 5  # 210 characters: 4 UCS2 parts
    batch = _batch("mp", 8, text=text)
    hq.publish("outbox", batch)
    hq.wait_final([m["id"] for m in batch["messages"]], {"sent"}, 120)
    network = pool.network()
    assert len(network) == 8
    # Every message arrived whole: the network joins parts per card, so a message
    # split over two cards would never be complete in the journal.
    assert all(m["text"] == text and m["parts"] == 4 for m in network)
    assert len({m["iccid"] for m in network}) >= 2  # and switches did happen


def test_an_empty_slot_is_skipped_and_reported(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool = pool_factory(1, extra_args=SLOTS)
    assert request(pool.dir, {"cmd": "slot", "port": 0, "slot": 1, "state": "empty"})["ok"]
    daemon = daemon_factory(pool, extra=ROTATION, modems_extra=MODEMS)
    daemon.start()
    hq.wait_online()
    batch = _batch("skip", 15)
    hq.publish("outbox", batch)
    hq.wait_final([m["id"] for m in batch["messages"]], {"sent"}, 120)
    unusable = wait_until(lambda: next((e for e in hq.on("events")
                                        if e["type"] == "sim_slot_unusable"), None), 10,
                          "the empty slot reported")
    assert unusable["slot"] == 1
    assert len({m["iccid"] for m in pool.network()}) == 2


def _smsgw(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*smsgw_command(), *args, "--config", str(daemon.config)],
                          capture_output=True, text=True, timeout=60, check=False)


MUX_LIMIT = 4  # parts per card and day: 10 messages need all three cards
MUX_LINES = "select_pins = [5, 6]\ndetect_pin = 13\nslots = 3\n"


def test_a_gpio_multiplexer_rotates_one_port_over_three_cards_within_their_limits(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool = pool_factory(1, extra_args=SLOTS)
    modems = (MODEMS + 'slot_pin_factory = "simulator"\n'
              f'slot_simulator_dir = "{pool.dir}"\n')
    mux = f'\n[[modems.slot_mux]]\nport = "{pool.dir / "ttyGSM0"}"\n' + MUX_LINES
    daemon = daemon_factory(pool, modems_extra=modems,
                            extra=f"\n[limits]\nper_hour = 0\nper_day = {MUX_LIMIT}\n" + mux)
    daemon.start()
    hq.wait_online()
    batch = _batch("mux", 10)
    hq.publish("outbox", batch)
    hq.wait_final([m["id"] for m in batch["messages"]], {"sent"}, 50)

    network = pool.network()
    # each message exactly once, whole
    assert sorted(m["text"] for m in network) == sorted(m["text"] for m in batch["messages"])
    per_card = Counter(m["iccid"] for m in network)
    cards = request(pool.dir, {"cmd": "slots", "port": 0})["slots"]
    assert set(per_card) == {c["iccid"] for c in cards}  # every card of the port was used
    assert max(per_card.values()) <= MUX_LIMIT, per_card
    switched = [e for e in hq.on("events") if e["type"] == "sim_switched"]
    assert len(switched) >= 2
    assert all(e["method"] == "gpio" and e["reason"] == "day" and e["took_s"] >= 0
               for e in switched), switched
    assert {e["iccid"] for e in switched} | {switched[0]["from_iccid"]} == set(per_card)
    log = daemon.log()
    assert "sim_switched" in log and "reason='day'" in log and "took_s=" in log
    assert "slot_pin_factory" in log and "method='gpio'" in log


def test_sims_lists_every_card_of_every_port_with_its_limits(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool = pool_factory(2, extra_args=SLOTS)
    daemon = daemon_factory(pool, modems_extra=MODEMS,
                            extra="\n[limits]\nper_hour = 0\nper_day = 2\n")
    daemon.start()
    hq.wait_online()
    batch = _batch("cards", 7)  # fills three of the six cards, the fourth holds one
    hq.publish("outbox", batch)
    hq.wait_final([m["id"] for m in batch["messages"]], {"sent"}, 50)

    result = _smsgw(daemon, "sims", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    cards = {(r["port"], r["slot"]): r for r in rows}
    assert set(cards) == {(f"ttyGSM{p}", s) for p in range(2) for s in range(3)}
    for port in range(2):
        states = [cards[f"ttyGSM{port}", s]["state"] for s in range(3)]
        assert states.count("active") == 1 and states.count("waiting") == 2, states
        # each card is listed in the slot it sits in (identities come from the cards)
        for card in request(pool.dir, {"cmd": "slots", "port": port})["slots"]:
            assert cards[f"ttyGSM{port}", card["slot"]]["iccid"] in (None, card["iccid"])
    used = Counter(m["iccid"] for m in pool.network())
    for row in rows:
        assert (row["day_limit"], row["hour_limit"]) == (2, 0)
        if row["iccid"] is not None:
            assert row["sent_today"] == used.get(row["iccid"], 0)
        if row["sent_today"] == 2:  # a full card waits, held until the day ends
            assert row["held_by"] == "day" and row["held_until"], row
    assert sum(r["sent_today"] for r in rows) == 7
    assert any(r["state"] == "waiting" and r["held_by"] == "day" for r in rows)

    text = _smsgw(daemon, "sims")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    header = lines[0]
    assert header.split()[:4] == ["PORT", "SLOT", "STATE", "ICCID"]
    assert len(lines) == 1 + 6
    at = header.index("SENT_TODAY")
    full = [ln for ln in lines[1:] if ln[at:].split()[0] == "2/2"]
    assert full and all(ln[header.index("HELD_BY"):].split()[0] == "day" for ln in full)


def test_status_lists_every_card_under_its_port_with_limits_and_local_until(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool = pool_factory(1, extra_args=SLOTS)
    daemon = daemon_factory(pool, modems_extra=MODEMS, extra=(
        '\n[limits]\ntimezone = "Asia/Shanghai"\nper_hour = 0\nper_day = 2\n'))
    daemon.start()
    hq.wait_online()
    batch = _batch("stat", 3)  # fills the first card; the second sends one
    hq.publish("outbox", batch)
    hq.wait_final([m["id"] for m in batch["messages"]], {"sent"}, 50)

    result = _smsgw(daemon, "status", "--json")
    assert result.returncode == 0, result.stderr
    (modem,) = json.loads(result.stdout)["modems"]
    cards = {c["slot"]: c for c in modem["sims"]}
    assert sorted(cards) == [0, 1, 2]
    assert sorted(c["state"] for c in cards.values()) == ["active", "waiting", "waiting"]
    assert modem["iccid"] == next(c["iccid"] for c in cards.values() if c["state"] == "active")
    full = [c for c in cards.values() if c["sent_today"] == 2]
    assert len(full) == 1 and full[0]["state"] == "waiting" and full[0]["held_by"] == "day"
    until = datetime.fromisoformat(full[0]["held_until"])
    assert until.utcoffset() == timedelta(hours=8)  # the gateway's zone, not UTC
    assert (until.hour, until.minute) == (0, 0)  # the day ends at local midnight

    text = _smsgw(daemon, "status")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    port = next(i for i, ln in enumerate(lines) if ln.startswith("ttyGSM0"))
    header = lines[port + 1]
    assert header.split() == ["SLOT", "STATE", "ICCID", "SENT_TODAY", "SENT_HOUR", "HELD_BY",
                              "UNTIL", "REASON"]
    rows = {int(ln.split()[0]): ln for ln in lines[port + 2:port + 5]}
    assert sorted(rows) == [0, 1, 2]
    slot = full[0]["slot"]
    assert rows[slot][header.index("STATE"):].split()[0] == "waiting"
    assert rows[slot][header.index("SENT_TODAY"):].split()[0] == "2/2"
    assert rows[slot][header.index("HELD_BY"):].split()[0] == "day"
    assert rows[slot][header.index("UNTIL"):].split()[0] == full[0]["held_until"]
    assert sum(rows[s][header.index("STATE"):].split()[0] == "waiting" for s in rows) == 2
