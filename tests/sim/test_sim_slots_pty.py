"""SIM slots over real ptys and the control socket, driven by python-gsmmodem."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gsmmodem.exceptions import CmeError, CmsError
from gsmmodem.modem import GsmModem

from daemon.cli import _parser
from modem.sim.control import request
from modem.sim.pool import SimPool
from tests.sim.sim_helpers import DEST, connected, journal, wait_for

SWITCH_DELAY_S = 0.3


@pytest.fixture
def slotted(tmp_path: Path) -> Iterator[SimPool]:
    """Two ports (SIM800, Quectel) with two SIM slots each and a short switch delay."""
    with SimPool(2, tmp_path, seed=7, slots=2, switch_delay_s=SWITCH_DELAY_S) as sim:
        yield sim


def _sim_ready(modem: GsmModem) -> bool:
    try:
        return modem.write("AT+CPIN?")[0] == "+CPIN: READY"
    except CmeError as e:
        assert e.code == 10  # no SIM while the switch settles
        return False


def _iccids(directory: Path, port: int) -> list[str]:
    reply = request(directory, {"cmd": "slots", "port": port})
    return [row["iccid"] for row in reply["slots"]]


def test_csus_dance_sends_from_the_second_card_and_blocks_stay_per_card(
    slotted: SimPool, tmp_path: Path
) -> None:
    first, second = _iccids(tmp_path, 0)
    assert first != second
    blocked = request(tmp_path, {"cmd": "block_after", "port": 0, "slot": 0, "sends": 0})
    assert blocked == {"ok": True, "port": 0, "slot": 0, "sends": 0, "code": 21, "blocked": True}
    with connected(tmp_path / "ttyGSM0") as modem:
        assert modem.write("AT+CCID")[0] == first
        assert modem.write("AT+CSUS=?")[0] == "+CSUS: (0-1)"
        with pytest.raises(CmeError) as refused:
            modem.write("AT+CSUS=1")
        assert refused.value.code == 3
        modem.write("AT+CFUN=0")
        modem.write("AT+CSUS=1")
        modem.write("AT+CFUN=1")
        wait_for(lambda: _sim_ready(modem), what="the second card to be read")
        assert modem.write("AT+CCID")[0] == second
        modem.sendSms(DEST, "from the second card")
        row = request(tmp_path, {"cmd": "stats"})["ports"][0]
        assert (row["slots"], row["active_slot"], row["iccid"], row["blocked"]) == (
            2, 1, second, False,
        )  # fmt: skip
        # Back to slot 0 through the GPIO multiplexer: its block is still there.
        assert request(tmp_path, {"cmd": "mux_select", "port": 0, "slot": 0})["switched"] is True
        wait_for(lambda: _sim_ready(modem), what="the first card to be read")
        with pytest.raises(CmsError) as failure:
            modem.sendSms(DEST, "from the blocked card")
        assert failure.value.code == 21
    (record,) = journal(tmp_path)
    assert (record["iccid"], record["text"]) == (second, "from the second card")
    rows = request(tmp_path, {"cmd": "slots", "port": 0})["slots"]
    assert [(r["sends"], r["blocked"], r["active"]) for r in rows] == [
        (0, True, True), (1, False, False),
    ]  # fmt: skip


def test_qdsim_and_a_reply_held_for_the_card_that_is_out(slotted: SimPool, tmp_path: Path) -> None:
    first, second = _iccids(tmp_path, 1)
    with connected(tmp_path / "ttyGSM1") as modem:
        assert modem.write("AT+QCCID")[0] == f"+QCCID: {first}"
        modem.write("AT+QDSIM=1")  # radio stays on
        wait_for(lambda: _sim_ready(modem), what="the second card to be read")
        assert modem.write("AT+QCCID")[0] == f"+QCCID: {second}"
        inject = {"cmd": "inject_sms", "port": 1, "slot": 0, "from": "+1", "text": "for A",
                  "notify": False}  # fmt: skip
        reply = request(tmp_path, inject)
        assert (reply["held"], reply["slot"], reply["indexes"]) == (True, 0, [])
        assert modem.listStoredSms(delete=False) == []
        modem.write("AT+QDSIM=0")
        wait_for(lambda: _sim_ready(modem), what="the first card to be read")
        texts = wait_for(
            lambda: [m.text for m in modem.listStoredSms(delete=False)], what="the held SMS"
        )
        assert texts == ["for A"]
    row = request(tmp_path, {"cmd": "slots", "port": 1})["slots"][0]
    assert (row["held"], row["held_dropped"]) == (0, 0)


def test_hold_time_zero_drops_what_the_card_misses(slotted: SimPool, tmp_path: Path) -> None:
    timing = request(tmp_path, {"cmd": "slot_timing", "port": 1, "hold_s": 0})
    assert timing["ports"] == [{"port": 1, "switch_delay_s": SWITCH_DELAY_S, "hold_s": 0.0}]
    request(tmp_path, {"cmd": "mux_select", "port": 1, "slot": 1})
    reply = request(tmp_path, {"cmd": "report_for", "port": 1, "slot": 0, "mr": 5, "status": 0})
    assert reply["delivered_as"] == "held"

    def dropped() -> bool:
        row = request(tmp_path, {"cmd": "slots", "port": 1})["slots"][0]
        return bool(row["held_dropped"] == 1 and row["held"] == 0)

    wait_for(dropped, what="the held report to be dropped")


def test_slot_states_over_the_socket(slotted: SimPool, tmp_path: Path) -> None:
    with connected(tmp_path / "ttyGSM0") as modem:
        assert request(tmp_path, {"cmd": "slot", "port": 0, "slot": 0, "state": "broken"}) == {
            "ok": True, "port": 0, "slot": 0, "state": "broken",
        }  # fmt: skip
        with pytest.raises(CmeError) as failure:
            modem.write("AT+CPIN?")
        assert failure.value.code == 13
        request(tmp_path, {"cmd": "slot", "port": 0, "slot": 0, "state": "empty"})
        assert not _sim_ready(modem)
        request(tmp_path, {"cmd": "slot", "port": 0, "slot": 0, "state": "ready"})
        assert request(tmp_path, {"cmd": "slots", "port": 0})["switching"] is True
        wait_for(lambda: _sim_ready(modem), what="the re-inserted card")


@pytest.mark.parametrize(
    "payload",
    [
        {"cmd": "mux_select", "port": 0},
        {"cmd": "mux_select", "port": 0, "slot": 2},
        {"cmd": "slot", "port": 0, "slot": 0, "state": "melted"},
        {"cmd": "slot_timing", "hold_s": -1},
        {"cmd": "block_after", "port": 0, "slot": "1", "sends": 1},
        {"cmd": "reports", "slot": 5},
    ],
)
def test_bad_slot_requests_are_refused(slotted: SimPool, tmp_path: Path, payload: dict) -> None:
    reply = request(tmp_path, payload)
    assert reply["ok"] is False and reply["error"]


def test_single_slot_pool_keeps_its_replies_and_answers_error_to_csus(
    pool: SimPool, tmp_path: Path
) -> None:
    row = request(tmp_path, {"cmd": "stats"})["ports"][0]
    assert (row["slots"], row["active_slot"]) == (1, 0)
    assert request(tmp_path, {"cmd": "slots", "port": 0})["slots"][0]["iccid"] == row["iccid"]
    with connected(tmp_path / "ttyGSM1") as modem:
        assert modem.write("AT+CSUS=?", parseError=False)[-1] == "ERROR"
        assert modem.write("AT+QDSIM?", parseError=False)[-1] == "ERROR"


def test_cli_passes_slots_and_switch_delay() -> None:
    args = _parser().parse_args(
        ["simulate", "--ports", "2", "--dir", "/tmp/x", "--slots", "4", "--switch-delay", "0.5"]
    )
    assert (args.slots, args.switch_delay) == (4, 0.5)
    defaults = _parser().parse_args(["simulate", "--ports", "2", "--dir", "/tmp/x"])
    assert (defaults.slots, defaults.switch_delay) == (1, 3.0)


def test_slot_identities_follow_seed_port_and_slot(slotted: SimPool, tmp_path: Path) -> None:
    from modem.sim.identity import sim_identity

    for port in range(2):
        rows = request(tmp_path, {"cmd": "slots", "port": port})["slots"]
        assert [(r["iccid"], r["imsi"], r["operator"]) for r in rows] == [
            (i.iccid, i.imsi, i.operator) for i in (sim_identity(7, port, s) for s in range(2))
        ]
