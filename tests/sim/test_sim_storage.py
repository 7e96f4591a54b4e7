"""Storage, inbound SMS, status reports and SIM/radio/operator faults on the pure SimModem."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from gsmmodem.pdu import decodeSmsPdu

from modem.sim.deliver import deliver_parts
from modem.sim.makes import QUECTEL
from modem.sim.storage import SM_CAPACITY
from tests.sim.sim_helpers import DEST, library_pdus
from tests.sim.test_sim_device import OK, Harness, _info, _send

WHEN = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=8)))
GOOD_PDU, GOOD_LENGTH = library_pdus("hello")[0]


def _inject(h: Harness, text: str, memory: str | None = None, notify: bool = True) -> list[int]:
    h.out.clear()
    parts = deliver_parts("+79161234567", text, WHEN, reference=5)
    indexes = [h.modem.receive_sms(p, memory, notify) for p in parts]
    return [i for i in indexes if i is not None]


def test_cpms_reports_usage_per_memory_and_switches() -> None:
    h = Harness()
    h.quiet("AT+CMEE=1")
    assert h.at("AT+CPMS?") == _info('+CPMS: "SM",0,30,"SM",0,30,"SM",0,30')
    assert _inject(h, "one") == [1]
    assert h.out.decode() == '\r\n+CMTI: "SM",1\r\n'
    assert h.at('AT+CPMS="ME","ME","ME"') == _info("+CPMS: 0,100,0,100,0,100")
    assert _inject(h, "two") == [1]
    assert h.out.decode() == '\r\n+CMTI: "ME",1\r\n'
    assert h.at('AT+CPMS="SM"') == _info("+CPMS: 1,30,1,100,1,100")
    assert h.at("AT+CPMS?") == _info('+CPMS: "SM",1,30,"ME",1,100,"ME",1,100')
    assert h.at('AT+CPMS="SR","SR"') == "\r\n+CMS ERROR: 302\r\n"  # SR is read-only


def test_cmgl_lists_pdus_and_marks_them_read() -> None:
    h = Harness()
    h.quiet("AT+CMEE=1")
    _inject(h, "first")
    _inject(h, "second")
    lines = h.at("AT+CMGL=4").split("\r\n")
    assert lines[1].startswith("+CMGL: 1,0,,") and lines[3].startswith("+CMGL: 2,0,,")
    assert decodeSmsPdu(lines[2])["text"] == "first"
    assert int(lines[1].rsplit(",", 1)[1]) == len(bytes.fromhex(lines[2])) - 1  # TPDU length
    assert lines[-3:] == ["", "OK", ""]
    assert h.at("AT+CMGL=0") == OK  # nothing unread any more
    assert h.at("AT+CMGL=1").count("+CMGL: ") == 2


def test_cmgr_reads_marks_read_and_321_for_an_empty_index() -> None:
    h = Harness()
    h.quiet("AT+CMEE=1")
    _inject(h, "read me")
    first = h.at("AT+CMGR=1").split("\r\n")
    assert first[1].startswith("+CMGR: 0,,") and decodeSmsPdu(first[2])["text"] == "read me"
    assert h.at("AT+CMGR=1").split("\r\n")[1].startswith("+CMGR: 1,,")
    assert h.at("AT+CMGR=2") == "\r\n+CMS ERROR: 321\r\n"
    assert h.at("AT+CMGD=1,0") == OK
    assert h.at("AT+CMGR=1") == "\r\n+CMS ERROR: 321\r\n"
    assert h.at("AT+CMGD=99") == "\r\n+CMS ERROR: 321\r\n"


def test_cmgd_delflags() -> None:
    h = Harness()
    h.quiet()
    for text in ("a", "b", "c"):
        _inject(h, text)
    h.at("AT+CMGR=2")  # 2 is now read
    assert h.at("AT+CMGD=?") == _info("+CMGD: (1,2,3),(0-4)")
    h.quiet("AT+CMGD=1,1")
    assert h.at("AT+CMGD=?") == _info("+CMGD: (1,3),(0-4)")
    h.quiet("AT+CMGD=1,4")
    assert h.modem.memory("SM").used == 0


def test_full_sim_refuses_and_counts() -> None:
    h = Harness()
    h.quiet()
    assert len(_inject(h, "x" * 153 * SM_CAPACITY)) == SM_CAPACITY
    assert _inject(h, "one more") == []
    assert h.out == b""  # nothing announced for a refused message
    assert h.faults.refused_full == 1
    assert _inject(h, "to flash", memory="ME") == [1]


def test_silent_store_and_notification_while_a_send_is_pending() -> None:
    h = Harness()
    h.quiet()
    assert _inject(h, "quiet", notify=False) == [1] and h.out == b""
    _send(h, GOOD_PDU, GOOD_LENGTH)
    _inject(h, "loud")  # the modem is waiting for the network: +CMTI goes out regardless
    assert h.out.decode() == '\r\n+CMTI: "SM",2\r\n'
    assert h.run_scheduled().startswith("\r\n+CMGS: ")


def test_report_inline_as_cds_on_sim800() -> None:
    h = Harness()
    h.quiet("AT+CNMI=2,1,0,1,0")
    h.faults.reports.outcome, h.faults.reports.delay_s = "failed", 4.0
    _send(h, GOOD_PDU, GOOD_LENGTH)
    h.scheduled.pop(0)[1]()  # the network's answer to the send
    assert [d for d, _ in h.scheduled] == [4.0]
    out = h.run_scheduled().split("\r\n")
    assert out[1] == "+CDS: 26" and out[3] == ""
    report = decodeSmsPdu(out[2])
    assert (report["type"], report["reference"], report["number"], report["status"]) == (
        "SMS-STATUS-REPORT", 254, DEST, 0x41,
    )  # fmt: skip
    assert h.faults.reports_sent == 1


def test_report_stored_in_sr_as_cdsi_on_quectel() -> None:
    h = Harness(QUECTEL)
    h.quiet("AT+CMEE=1", "AT+CNMI=2,1,0,2")
    h.faults.reports.outcome, h.faults.reports.delay_s = "pending_then_delivered", 1.5
    _send(h, GOOD_PDU, GOOD_LENGTH)
    h.scheduled.pop(0)[1]()
    assert [d for d, _ in h.scheduled] == [1.5, 3.0]
    assert h.run_scheduled() == '\r\n+CDSI: "SR",1\r\n\r\n+CDSI: "SR",2\r\n'
    h.quiet('AT+CPMS="SR"')
    listing = h.at("AT+CMGL=4").split("\r\n")
    statuses = [decodeSmsPdu(listing[i])["status"] for i in (2, 4)]
    assert statuses == [0x20, 0x00]
    assert decodeSmsPdu(h.at("AT+CMGR=2").split("\r\n")[2])["reference"] == 254


def test_report_policy_none_and_no_srr_send_nothing() -> None:
    h = Harness()
    h.quiet("AT+CNMI=2,1,0,1,0")
    _send(h, GOOD_PDU, GOOD_LENGTH)
    h.run_scheduled()
    assert not h.scheduled and h.faults.reports_sent == 0


def test_report_on_demand_and_ds_0_drops_it() -> None:
    h = Harness()
    h.quiet()
    assert h.modem.report(9, 0) == {"delivered_as": "none"}
    h.quiet("AT+CNMI=2,1,0,1,0")
    h.out.clear()
    assert h.modem.report(9, 0x41) == {"delivered_as": "cds"}
    assert decodeSmsPdu(h.out.decode().split("\r\n")[2])["reference"] == 9


def test_operator_block_after_n_sends_and_unblock() -> None:
    h = Harness(latency=1.0)
    h.quiet("AT+CMEE=1")
    h.faults.block(1, 21)
    _send(h, GOOD_PDU, GOOD_LENGTH)
    assert h.run_scheduled().startswith("\r\n+CMGS: ")
    assert h.faults.blocked
    for _ in range(2):
        assert _send(h, GOOD_PDU, GOOD_LENGTH) == ""  # refused only after the latency
        assert h.run_scheduled() == "\r\n+CMS ERROR: 21\r\n"
    h.faults.unblock()
    _send(h, GOOD_PDU, GOOD_LENGTH)
    assert h.run_scheduled().startswith("\r\n+CMGS: ")
    assert len(h.network.parts) == 2


def test_no_network_fails_sends_with_331_and_shows_in_creg_csq() -> None:
    h = Harness()
    h.quiet("AT+CMEE=1")
    h.faults.csq, h.faults.creg = 99, 2
    assert h.at("AT+CSQ") == _info("+CSQ: 99,0")
    assert h.at("AT+CREG?") == _info("+CREG: 0,2")
    assert h.at("AT+COPS?") == _info("+COPS: 0")
    assert _send(h, GOOD_PDU, GOOD_LENGTH) == "\r\n+CMS ERROR: 331\r\n"
    h.faults.csq, h.faults.creg = 5, 3
    assert _send(h, GOOD_PDU, GOOD_LENGTH) == "\r\n+CMS ERROR: 331\r\n"  # registration denied
    h.faults.creg = 5
    assert _send(h, GOOD_PDU, GOOD_LENGTH) == ""  # roaming is fine


def test_sim_absent_and_pin_states() -> None:
    h = Harness()
    h.quiet("AT+CMEE=1")
    h.faults.sim_state = "absent"
    assert h.at("AT+CPIN?") == "\r\n+CME ERROR: 10\r\n"
    for command in ("AT+CIMI", "AT+CCID", "AT+CRSM=176,12258,0,0,10"):
        assert h.at(command) == "\r\n+CME ERROR: 10\r\n", command
    assert h.at("AT+CREG?") == _info("+CREG: 0,0")
    assert h.at('AT+CPMS="SM"') == "\r\n+CMS ERROR: 310\r\n"
    assert _send(h, GOOD_PDU, GOOD_LENGTH) == "\r\n+CMS ERROR: 310\r\n"
    h.faults.sim_state = "pin"
    assert h.at("AT+CPIN?") == _info("+CPIN: SIM PIN")
    assert h.at("AT+CIMI") == "\r\n+CME ERROR: 11\r\n"
    assert _send(h, GOOD_PDU, GOOD_LENGTH) == "\r\n+CMS ERROR: 310\r\n"
    h.faults.sim_state = "ready"
    assert h.at("AT+CIMI") == _info("460001234567890")
