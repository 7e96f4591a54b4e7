"""Table-driven tests of the SimModem AT interpreter, with no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from modem.sim.device import Action, Faults, Latency, Mode, SimCard, SimModem
from modem.sim.identity import SimIdentity, iccid_ef_hex
from modem.sim.makes import QUECTEL, SIM800, Make
from modem.sim.network import Sender, SubmitPart
from tests.sim.sim_helpers import library_pdus

IMEI = "867695031910978"
ICCID = "8986001234567890128"
IDENTITY = SimIdentity(iccid=ICCID, imsi="460001234567890", operator="CHINA MOBILE", msisdn=None)
OK = "\r\nOK\r\n"
ERROR = "\r\nERROR\r\n"


@dataclass
class FakeNetwork:
    parts: list[tuple[Sender, SubmitPart, int]] = field(default_factory=list)

    def submit(self, sender: Sender, part: SubmitPart, mr: int) -> None:
        self.parts.append((sender, part, mr))


class Harness:
    """A SimModem wired to an output buffer, a fake network and a manual scheduler."""

    def __init__(self, make: Make = SIM800, latency: float = 0.0) -> None:
        self.out = bytearray()
        self.scheduled: list[tuple[float, Action]] = []
        self.network = FakeNetwork()
        self.faults = Faults()
        self.card = SimCard(IDENTITY, next_mr=254)
        self.modem = SimModem(
            make, IMEI, self.card, "ttyGSM0", self.network,
            emit=self.out.extend, schedule=lambda d, a: self.scheduled.append((d, a)),
            latency=Latency(latency, 0.0), faults=self.faults,
        )  # fmt: skip

    def feed(self, data: bytes) -> str:
        self.out.clear()
        self.modem.feed(data)
        return self.out.decode("latin-1")

    def at(self, line: str) -> str:
        return self.feed(line.encode("latin-1") + b"\r")

    def quiet(self, *lines: str) -> None:
        """Echo off, then run lines expecting OK for each."""
        assert self.at("ATE0").endswith(OK)
        for line in lines:
            assert self.at(line).endswith(OK), line

    def run_scheduled(self) -> str:
        self.out.clear()
        while self.scheduled:
            _, action = self.scheduled.pop(0)
            action()
        return self.out.decode("latin-1")


def test_echo_is_on_until_ate0_and_back_after_atz() -> None:
    h = Harness()
    assert h.at("AT") == "AT\r" + OK
    assert h.at("ATE0") == "ATE0\r" + OK  # the command that turns echo off is still echoed
    assert h.at("AT") == OK
    assert h.at("ATE1") == OK
    assert h.at("AT") == "AT\r" + OK
    h.at("ATE0")
    assert h.at("ATZ") == OK
    assert h.at("AT") == "AT\r" + OK


def test_byte_at_a_time_gives_the_same_output() -> None:
    whole, split = Harness(), Harness()
    script = b"ATE0\rAT+CGMI\r\nAT+CSQ\rAT+FOO\r"
    expected = whole.feed(script)
    got = "".join(split.feed(bytes([b])) for b in script)
    assert got == expected


def test_lines_not_starting_with_at_are_ignored() -> None:
    h = Harness()
    h.quiet()
    assert h.at("hello") == ""
    assert h.at("") == ""


def _info(*lines: str) -> str:
    return "\r\n" + "\r\n".join(lines) + "\r\n" + OK


ICCID_EF = iccid_ef_hex(ICCID)

IDENTITY_TABLE = [
    (SIM800, "AT+CGMI", _info("SIMCOM_Ltd")),
    (QUECTEL, "AT+CGMI", _info("Quectel")),
    (SIM800, "AT+CGMM", _info("SIMCOM_SIM800C")),
    (QUECTEL, "AT+CGMM", _info("EC25")),
    (SIM800, "AT+CGSN", _info(IMEI)),
    (QUECTEL, "AT+CGSN", _info(IMEI)),
    (SIM800, "AT+CIMI", _info("460001234567890")),
    (QUECTEL, "AT+CIMI", _info("460001234567890")),
    (SIM800, "AT+CCID", _info(ICCID)),
    (QUECTEL, "AT+CCID", _info(f"+CCID: {ICCID}")),
    (SIM800, "AT+QCCID", ERROR),
    (QUECTEL, "AT+QCCID", _info(f"+QCCID: {ICCID}")),
    (SIM800, "AT+CRSM=176,12258,0,0,10", _info(f'+CRSM: 144,0,"{ICCID_EF}"')),
    (QUECTEL, "AT+CRSM=176,12258,0,0,10", _info(f'+CRSM: 144,0,"{ICCID_EF}"')),
    (SIM800, "AT+COPS?", _info('+COPS: 0,0,"CHINA MOBILE",0')),
    (QUECTEL, "AT+COPS?", _info('+COPS: 0,0,"CHINA MOBILE",7')),
    (SIM800, "AT+CSQ", _info("+CSQ: 21,0")),
    (SIM800, "AT+CREG?", _info("+CREG: 0,1")),
    (SIM800, "AT+CPIN?", _info("+CPIN: READY")),
    (SIM800, "AT+CFUN?", _info("+CFUN: 1")),
    (SIM800, "AT+CNUM", OK),  # this card carries no own number
    (SIM800, "AT+CNMI=2,1,0,2", ERROR),  # SIM800 has no ds=2
    (QUECTEL, "AT+CNMI=2,1,0,2", OK),
    (SIM800, "AT+CNMI=2,1,0,1,0", OK),
    (SIM800, "AT+DDET=1", OK),
    (QUECTEL, "AT+DDET=1", ERROR),
    (SIM800, "AT+ZPAS?", ERROR),
    (SIM800, "AT+WIND?", ERROR),
    (SIM800, "AT+CMMS=2", OK),
    (SIM800, "AT+CSCS=?", _info('+CSCS: ("IRA","GSM","UCS2","HEX","PCCP","PCDN","8859-1")')),
    (SIM800, "AT+CPMS=?", _info('+CPMS: ("SM","ME","SR"),("SM","ME"),("SM","ME")')),
    (SIM800, 'AT+CPMS="ME","ME","ME"', _info("+CPMS: 0,100,0,100,0,100")),
    (SIM800, "AT+CSCA?", _info('+CSCA: "+8613800100500",145')),
    (SIM800, "AT+CGMI;+CGMM", "\r\nSIMCOM_Ltd\r\n\r\nSIMCOM_SIM800C\r\n" + OK),
]


@pytest.mark.parametrize(("make", "command", "expected"), IDENTITY_TABLE)
def test_command_answers(make: Make, command: str, expected: str) -> None:
    h = Harness(make)
    h.quiet("AT+CMEE=1")
    assert h.at(command) == expected


def test_settings_are_read_back() -> None:
    h = Harness()
    h.quiet("AT+CMMS=2", 'AT+CSCS="UCS2"', "AT+COPS=3,2", "AT+CMEE=1")
    assert h.at("AT+CMMS?") == _info("+CMMS: 2")
    assert h.at("AT+CSCS?") == _info('+CSCS: "UCS2"')
    assert h.at("AT+COPS?") == _info('+COPS: 0,2,"46000",0')


def test_clac_lists_cscs_which_the_library_needs_for_ucs2() -> None:
    h = Harness()
    h.quiet()
    lines = h.at("AT+CLAC").split("\r\n")
    assert "AT+CSCS" in lines
    assert lines[-2:] == ["OK", ""]


ERROR_TABLE = [
    # (command, before AT+CMEE=1, after AT+CMEE=1)
    ('AT+CSCS="KOI8"', ERROR, "\r\n+CME ERROR: 4\r\n"),
    ('AT+CPIN="1234"', ERROR, "\r\n+CME ERROR: 3\r\n"),
    ("AT+CMGS=0", ERROR, "\r\n+CMS ERROR: 304\r\n"),
    ('AT+CPMS="XX"', ERROR, "\r\n+CMS ERROR: 302\r\n"),
    ("AT+FOO", ERROR, ERROR),  # unknown commands stay a plain ERROR
    ("ATX9", ERROR, ERROR),
]


@pytest.mark.parametrize(("command", "before", "after"), ERROR_TABLE)
def test_error_forms_before_and_after_cmee(command: str, before: str, after: str) -> None:
    h = Harness()
    h.quiet()
    assert h.at(command) == before
    h.quiet("AT+CMEE=1")
    assert h.at(command) == after


def test_cmee_2_gives_verbose_cme_errors() -> None:
    h = Harness()
    h.quiet("AT+CMEE=2")
    assert h.at('AT+CSCS="KOI8"') == "\r\n+CME ERROR: operation not supported\r\n"


def _send(h: Harness, pdu: str, length: int) -> str:
    assert h.at(f"AT+CMGS={length}") == "\r\n> "
    assert h.modem.mode is Mode.PROMPT
    return h.feed(pdu.encode() + b"\x1a")


def test_cmgs_answers_after_the_latency_with_the_sims_own_mr() -> None:
    h = Harness(latency=2.5)
    h.quiet("AT+CMEE=1")
    (pdu, length), *_ = library_pdus("hello", reference=77)
    assert _send(h, pdu, length) == ""  # nothing until the network answers
    assert [d for d, _ in h.scheduled] == [2.5]
    assert h.modem.mode is Mode.BUSY
    assert h.run_scheduled() == "\r\n+CMGS: 254\r\n" + OK  # the SIM's counter, not the PDU's 77
    sender, part, mr = h.network.parts[0]
    assert (sender.port, sender.imei, sender.iccid) == ("ttyGSM0", IMEI, ICCID)
    assert (part.to, part.text, part.encoding, mr) == ("+8613800138000", "hello", "gsm7", 254)
    assert part.status_report_requested
    _send(h, pdu, length)
    assert h.run_scheduled() == "\r\n+CMGS: 255\r\n" + OK
    _send(h, pdu, length)
    assert h.run_scheduled() == "\r\n+CMGS: 0\r\n" + OK  # wraps at 256


def test_input_during_a_send_waits_until_the_answer() -> None:
    h = Harness()
    h.quiet()
    (pdu, length), *_ = library_pdus("hello")
    _send(h, pdu, length)
    assert h.at("AT+CSQ") == ""
    assert h.run_scheduled() == "\r\n+CMGS: 254\r\n" + OK + _info("+CSQ: 21,0")


def test_echo_covers_the_pdu_at_the_prompt() -> None:
    h = Harness()
    (pdu, length), *_ = library_pdus("hi")
    assert h.at(f"AT+CMGS={length}") == f"AT+CMGS={length}\r\r\n> "
    assert h.feed(pdu.encode()) == pdu


def test_esc_at_the_prompt_aborts_with_ok_and_sends_nothing() -> None:
    h = Harness()
    h.quiet()
    (pdu, length), *_ = library_pdus("hello")
    h.at(f"AT+CMGS={length}")
    assert h.feed(pdu[:10].encode() + b"\x1b") == OK
    assert h.modem.mode is Mode.COMMAND
    assert not h.scheduled and not h.network.parts
    assert h.at("AT") == OK


GOOD_PDU, GOOD_LENGTH = library_pdus("hello")[0]
BAD_PDU_TABLE = [
    ("wrong declared length", GOOD_PDU, GOOD_LENGTH + 1),
    ("not hex", GOOD_PDU[:-2] + "ZZ", GOOD_LENGTH),
    ("odd number of digits", GOOD_PDU + "0", GOOD_LENGTH),
    ("truncated user data", GOOD_PDU[:-4], GOOD_LENGTH - 2),
    ("SMS-DELIVER, not SUBMIT", "00" + "00" + GOOD_PDU[4:], GOOD_LENGTH),
    ("empty", "", 1),
]


@pytest.mark.parametrize(("why", "pdu", "length"), BAD_PDU_TABLE, ids=[r[0] for r in BAD_PDU_TABLE])
def test_bad_pdu_is_cms_304_at_once(why: str, pdu: str, length: int) -> None:
    h = Harness()
    h.quiet("AT+CMEE=1")
    assert _send(h, pdu, length) == "\r\n+CMS ERROR: 304\r\n"
    assert not h.scheduled and not h.network.parts
    assert h.modem.mode is Mode.COMMAND
    assert h.card.next_mr == 254  # nothing went out


def test_fail_next_answers_the_error_after_the_latency() -> None:
    h = Harness(latency=1.0)
    h.quiet("AT+CMEE=1")
    h.faults.fail_next("+CMS ERROR: 38", 1)
    _send(h, GOOD_PDU, GOOD_LENGTH)
    assert [d for d, _ in h.scheduled] == [1.0]
    assert h.run_scheduled() == "\r\n+CMS ERROR: 38\r\n"
    assert not h.network.parts
    _send(h, GOOD_PDU, GOOD_LENGTH)
    assert h.run_scheduled() == "\r\n+CMGS: 255\r\n" + OK  # the failed attempt used MR 254


def test_radio_off_refuses_to_send() -> None:
    h = Harness()
    h.quiet("AT+CMEE=1", "AT+CFUN=0")
    assert _send(h, GOOD_PDU, GOOD_LENGTH) == "\r\n+CMS ERROR: 331\r\n"
    assert h.at("AT+CSQ") == _info("+CSQ: 99,0")


def test_text_mode_sending_is_refused() -> None:
    h = Harness()
    h.quiet("AT+CMEE=1", "AT+CMGF=1")
    assert h.at('AT+CMGS="+8613800138000"') == "\r\n+CMS ERROR: 302\r\n"


def test_latency_is_uniform_within_jitter_and_never_negative() -> None:
    import random

    latency = Latency(1.0, 2.0, random.Random(3))
    draws = [latency.draw() for _ in range(500)]
    assert min(draws) == 0.0 and max(draws) <= 3.0
    assert any(d > 1.5 for d in draws)


def test_a_ussd_code_is_answered_after_ok_as_an_unsolicited_cusd() -> None:
    h = Harness(latency=1.5)
    h.quiet("AT+CMEE=1")
    assert h.at('AT+CUSD=1,"*100#",15') == OK
    assert [d for d, _ in h.scheduled] == [1.5]
    assert h.run_scheduled() == '\r\n+CUSD: 0,"Balance: 12.34 CNY",15\r\n'
    assert h.at("AT+CUSD?") == _info("+CUSD: 1")
    h.faults.ussd_answer = "Your balance is 0.50 CNY"
    assert h.at('AT+CUSD=1,"*100#"') == OK
    assert h.run_scheduled() == '\r\n+CUSD: 0,"Your balance is 0.50 CNY",15\r\n'


@pytest.mark.parametrize(("setup", "line", "reply"), [
    ((), 'AT+CUSD=0,"*100#",15', OK),  # sent, but the result code is off: nothing follows
    ((), "AT+CUSD=2", OK),  # cancel the session
    ((), "AT+CUSD=?", _info("+CUSD: (0-2)")),
    ((), 'AT+CUSD=3,"*100#",15', "\r\n+CME ERROR: 4\r\n"),
    (("creg", 3), 'AT+CUSD=1,"*100#",15', "\r\n+CME ERROR: 30\r\n"),  # registration denied
    (("sim_state", "absent"), 'AT+CUSD=1,"*100#",15', "\r\n+CME ERROR: 10\r\n"),
])
def test_ussd_needs_a_valid_request_a_sim_and_the_network(
        setup: tuple[str, object], line: str, reply: str) -> None:
    h = Harness()
    h.quiet("AT+CMEE=1")
    if setup:
        setattr(h.faults, *setup)
    assert h.at(line) == reply
    assert h.run_scheduled() == ""
