"""Control-socket scenarios over real ptys, driven by python-gsmmodem as the daemon does."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from gsmmodem.exceptions import CmsError
from gsmmodem.modem import GsmModem
from gsmmodem.pdu import decodeSmsPdu

from modem.sim.control import COMMANDS, request
from modem.sim.pool import SimPool
from tests.sim.sim_helpers import DEST, connected, wait_for

RUSSIAN = ("Здравствуйте! Ваш код подтверждения 4711. Никому его не сообщайте. " * 3)[:190]


def _fix(text: str) -> str:
    return text.encode("utf-16", "surrogatepass").decode("utf-16")


def test_every_command_is_documented_in_the_control_docstring() -> None:
    import modem.sim.control as control

    for name in COMMANDS:
        assert f"| {name} " in (control.__doc__ or ""), name


def test_injected_multipart_is_listed_by_the_library(pool: SimPool, tmp_path: Path) -> None:
    for index in range(2):
        with connected(tmp_path / f"ttyGSM{index}") as modem:
            reply = request(tmp_path, {
                "cmd": "inject_sms", "port": index, "from": "+79161234567", "text": RUSSIAN,
                "order": [3, 1, 2], "reference": 42, "notify": False,
            })  # fmt: skip
            assert reply == {
                "ok": True, "port": index, "parts": 3, "indexes": [1, 2, 3], "refused": 0,
                "reference": 42, "memory": "ME",
            }  # fmt: skip
            messages = modem.listStoredSms(delete=False)
            assert len(messages) == 3
            by_number = {m.udh[0].number: m for m in messages}
            assert {m.udh[0].reference for m in messages} == {42}
            assert _fix("".join(by_number[n].text for n in (1, 2, 3))) == RUSSIAN
            assert {m.number for m in messages} == {"+79161234567"}
            stats = request(tmp_path, {"cmd": "stats"})["ports"][index]
            assert stats["inbox_used"] == {"SM": 0, "ME": 3, "SR": 0}


def test_cmti_for_a_multipart_reaches_the_library(tmp_path: Path) -> None:
    # Three +CMTI lines arrive back to back; the library handles the first of a burst, reads it,
    # runs the callback and deletes it. Whatever it misses stays stored for the daemon's poll.
    received: list[object] = []
    with SimPool(1, tmp_path):
        modem = GsmModem(str(tmp_path / "ttyGSM0"), 115200, smsReceivedCallbackFunc=received.append)
        modem.connect()
        try:
            inject = {"cmd": "inject_sms", "port": 0, "from": "+79161234567", "text": RUSSIAN}
            assert request(tmp_path, inject)["indexes"] == [1, 2, 3]
            wait_for(lambda: received, what="smsReceivedCallback")

            def settled() -> bool:
                used = request(tmp_path, {"cmd": "stats"})["ports"][0]["inbox_used"]["ME"]
                return used + len(received) == 3

            wait_for(settled, what="the library to delete what it handled")
            left = modem.listStoredSms(delete=False)
            parts = {m.udh[0].number: m.text for m in [*received, *left]}  # type: ignore[attr-defined]
            assert _fix("".join(parts[n] for n in (1, 2, 3))) == RUSSIAN
        finally:
            modem.close()


def test_raw_cmgl_and_sim_memory_with_16_bit_reference(pool: SimPool, tmp_path: Path) -> None:
    with connected(tmp_path / "ttyGSM1") as modem:
        modem.write('AT+CPMS="SM","SM","SM"')
        reply = request(tmp_path, {
            "cmd": "inject_sms", "port": 1, "from": "89161234567", "text": "Ж" * 100,
            "ref_bits": 16, "reference": 4000, "drop": [1], "repeat": [2], "notify": False,
        })  # fmt: skip
        assert (reply["parts"], reply["indexes"], reply["memory"]) == (2, [1, 2], "SM")
        lines = modem.write("AT+CMGL=4")
        assert lines[0].startswith("+CMGL: 1,0,,") and lines[2].startswith("+CMGL: 2,0,,")
        decoded = [decodeSmsPdu(lines[i]) for i in (1, 3)]
        assert [(d["udh"][0].reference, d["udh"][0].number) for d in decoded] == [(4000, 2)] * 2
        assert decoded[0]["number"] == "89161234567"
        assert modem.write("AT+CMGR=1")[0].startswith("+CMGR: 1,,")  # CMGL marked it read
        modem.write("AT+CMGD=1")
        assert modem.write("AT+CPMS?")[0] == '+CPMS: "SM",1,30,"SM",1,30,"SM",1,30'


@pytest.mark.parametrize(("index", "signal"), [(0, "+CDS"), (1, "+CDSI")])
def test_status_report_arrives_with_the_send_mr(
    pool: SimPool, tmp_path: Path, index: int, signal: str
) -> None:
    reports: list[object] = []
    modem = GsmModem(
        str(tmp_path / f"ttyGSM{index}"), 115200, smsStatusReportCallback=reports.append
    )
    modem.connect()
    try:
        assert modem.write("AT+CNMI?")[0] == (
            "+CNMI: 2,1,0,1,0" if index == 0 else "+CNMI: 2,1,0,2,0"
        )
        reply = request(
            tmp_path, {"cmd": "reports", "port": index, "outcome": "failed", "delay_s": 0.1}
        )
        assert reply == {"ok": True, "ports": [index], "outcome": "failed", "delay_s": 0.1}
        sms = modem.sendSms(DEST, "report me")
        wait_for(lambda: reports, what=f"a status report via {signal}")
        report = reports[0]
        assert report.reference == sms.reference  # type: ignore[attr-defined]
        assert (report.number, report.deliveryStatus) == (DEST, 0x41)  # type: ignore[attr-defined]
        stats = request(tmp_path, {"cmd": "stats"})["ports"][index]
        assert stats["reports_sent"] == 1
        on_demand = request(
            tmp_path, {"cmd": "report_for", "port": index, "mr": sms.reference, "status": 0}
        )
        assert on_demand["delivered_as"] == ("cds" if index == 0 else "cdsi")
        wait_for(lambda: len(reports) == 2, what="the on-demand report")
    finally:
        modem.close()


def test_block_after_then_unblock(pool: SimPool, tmp_path: Path) -> None:
    with connected(tmp_path / "ttyGSM0") as modem:
        reply = request(tmp_path, {"cmd": "block_after", "port": 0, "sends": 1, "code": 21})
        assert reply == {"ok": True, "port": 0, "sends": 1, "code": 21, "blocked": False}
        modem.sendSms(DEST, "allowed")
        with pytest.raises(CmsError) as failure:
            modem.sendSms(DEST, "blocked")
        assert failure.value.code == 21
        assert request(tmp_path, {"cmd": "stats"})["ports"][0]["blocked"] is True
        assert request(tmp_path, {"cmd": "unblock", "port": 0}) == {
            "ok": True,
            "port": 0,
            "blocked": False,
        }
        modem.sendSms(DEST, "again")


def test_radio_and_sim_faults_over_the_socket(pool: SimPool, tmp_path: Path) -> None:
    with connected(tmp_path / "ttyGSM1") as modem:
        reply = request(tmp_path, {"cmd": "radio", "port": 1, "csq": 99, "creg": 2})
        assert reply == {"ok": True, "port": 1, "csq": 99, "creg": 2, "registered": False}
        assert modem.write("AT+CREG?")[0] == "+CREG: 0,2"
        with pytest.raises(CmsError) as failure:
            modem.sendSms(DEST, "no network")
        assert failure.value.code == 331
        inject = {"cmd": "inject_sms", "port": 1, "from": "+1", "text": "x"}
        assert request(tmp_path, inject)["ok"] is False  # nobody to deliver to
        request(tmp_path, {"cmd": "radio", "port": 1, "csq": 18, "creg": 1})
        assert request(tmp_path, {"cmd": "sim", "port": 1, "state": "absent"}) == {
            "ok": True, "port": 1, "state": "absent",
        }  # fmt: skip
        with pytest.raises(CmsError) as failure:
            modem.sendSms(DEST, "no sim")
        assert failure.value.code == 310
        request(tmp_path, {"cmd": "sim", "port": 1, "state": "ready"})
        modem.sendSms(DEST, "fine")


# The library's reader thread dies of UnicodeDecodeError on purpose here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_noise_mid_send_and_garbage_kills_the_library_reader(tmp_path: Path) -> None:
    with SimPool(1, tmp_path, latency_mean=0.3) as sim, connected(tmp_path / "ttyGSM0") as modem:
        sender = threading.Thread(target=modem.sendSms, args=(DEST, "through the noise"))
        sender.start()
        wait_for(lambda: sim.port(0).busy, what="send waiting for the network")
        reply = request(
            tmp_path, {"cmd": "noise", "port": 0, "lines": ["^RSSI: 12", '+QIND: "csq",20,99']}
        )
        assert reply == {"ok": True, "port": 0, "lines": 2}
        sender.join(timeout=10)
        assert not sender.is_alive()
        assert request(tmp_path, {"cmd": "stats"})["ports"][0]["messages"] == 1
        assert request(tmp_path, {"cmd": "garbage", "port": 0, "hex": "ff fe 80"})["octets"] == 3
        reader = modem.rxThread
        wait_for(lambda: not reader.is_alive(), what="the library's reader thread to die")
        assert modem.alive  # the library does not notice: the daemon must


@pytest.mark.parametrize(
    "payload",
    [
        {"cmd": "inject_sms", "port": 0, "from": "+1", "text": ""},
        {"cmd": "inject_sms", "port": 0, "from": "+1", "text": "x", "ref_bits": 12},
        {"cmd": "inject_sms", "port": 0, "from": "+1", "text": "Ж", "encoding": "gsm7"},
        {"cmd": "inject_sms", "port": 0, "from": "+1", "text": "x", "order": [2]},
        {"cmd": "inject_sms", "port": 0, "from": "+1", "text": "x", "memory": "SR"},
        {"cmd": "reports", "outcome": "maybe"},
        {"cmd": "report_for", "port": 0, "mr": 300, "status": 0},
        {"cmd": "block_after", "port": 0},
        {"cmd": "radio", "port": 0, "csq": 50},
        {"cmd": "sim", "port": 0, "state": "gone"},
        {"cmd": "noise", "port": 0, "lines": []},
        {"cmd": "garbage", "port": 0, "hex": "zz"},
    ],
)
def test_bad_scenario_requests_are_refused(pool: SimPool, tmp_path: Path, payload: dict) -> None:
    reply = request(tmp_path, payload)
    assert reply["ok"] is False and reply["error"]


def test_reports_without_port_apply_to_all_and_unplugged_inject_fails(
    pool: SimPool, tmp_path: Path
) -> None:
    assert request(tmp_path, {"cmd": "reports", "outcome": "delivered"})["ports"] == [0, 1]
    assert all(p.faults.reports.outcome == "delivered" for p in pool.ports)
    request(tmp_path, {"cmd": "unplug", "port": 0})
    reply = request(tmp_path, {"cmd": "inject_sms", "port": 0, "from": "+1", "text": "x"})
    assert reply == {"ok": False, "error": "port 0 is unplugged"}
