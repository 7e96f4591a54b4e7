"""The pool over real pseudo-terminals, driven by python-gsmmodem as the daemon does."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from modem.sim.pool import SimPool
from tests.sim.sim_helpers import DEST, connected, journal, wait_for

GSM7_TEXT = "Price 5€ [a] {b} ^c ~d |e \\f"
RUSSIAN_TEXT = ("Привет, мир! Это длинное сообщение для проверки. " * 9)[:400]
CHINESE_TEXT = "尊敬的林瓊，您的积分150分将于11月30日到期。回复TD退订"


def test_ports_are_symlinks_to_ptys(pool: SimPool, tmp_path: Path) -> None:
    for index in range(2):
        link = tmp_path / f"ttyGSM{index}"
        assert link.is_symlink()
        assert os.readlink(link).startswith("/dev/pts/")


def test_library_connects_and_sends_three_kinds_of_text(pool: SimPool, tmp_path: Path) -> None:
    expected = []
    for index, stats in enumerate(pool.stats()):
        with connected(tmp_path / f"ttyGSM{index}") as modem:
            assert modem.imei == stats["imei"]
            assert modem.imsi == stats["imsi"]
            assert modem.networkName == stats["operator"]
            assert modem.signalStrength == 21
            for text in (GSM7_TEXT, RUSSIAN_TEXT, CHINESE_TEXT):
                modem.sendSms(DEST, text)
                expected.append((f"ttyGSM{index}", text))
    records = journal(tmp_path)
    assert [(r["port"], r["text"]) for r in records] == expected
    assert [(r["encoding"], r["parts"]) for r in records[:3]] == [
        ("gsm7", 1), ("ucs2", 6), ("ucs2", 1),
    ]  # fmt: skip
    for record in records:
        assert record["to"] == DEST
        assert len(record["mr"]) == record["parts"]
        assert record["status_report_requested"] is True
    # the library numbers the next reference from the last +CMGS, so the MRs run on
    first = records[0]["mr"][0]
    assert [mr for r in records[:3] for mr in r["mr"]] == [(first + i) % 256 for i in range(8)]
    stats = pool.stats()
    assert [(s["pdus"], s["messages"]) for s in stats] == [(8, 3), (8, 3)]


def test_client_can_close_and_reopen_a_port(pool: SimPool, tmp_path: Path) -> None:
    path = tmp_path / "ttyGSM1"
    for _ in range(2):
        with connected(path) as modem:
            assert modem.manufacturer == "Quectel"


def test_a_slow_send_on_one_port_does_not_hold_up_another(tmp_path: Path) -> None:
    with SimPool(2, tmp_path, latency_mean=0.2) as sim:
        with connected(tmp_path / "ttyGSM0") as slow, connected(tmp_path / "ttyGSM1") as fast:
            slow.write("AT+CMGF=0")
            sender = threading.Thread(target=slow.sendSms, args=(DEST, "slow one"))
            sender.start()
            wait_for(lambda: sim.port(0).busy, what="port 0 waiting for the network")
            assert fast.write("AT", timeout=0.15) == ["OK"]
            sender.join()
        assert [r["text"] for r in journal(tmp_path)] == ["slow one"]
