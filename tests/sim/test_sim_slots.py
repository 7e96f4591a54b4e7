"""SIM slots on the pure SimModem: +CSUS/+QDSIM/+CFUN interplay, the switch delay, per-card
state, and reports held while their card is switched out. Time is a manual timeline."""

from __future__ import annotations

import heapq
import itertools
from datetime import datetime, timedelta, timezone

import pytest
from gsmmodem.pdu import decodeSmsPdu

from modem.sim.device import Action, Faults, Latency, SimCard, SimModem, SlotBank
from modem.sim.faults import CardFaults
from modem.sim.identity import SimIdentity
from modem.sim.makes import QUECTEL, SIM800, Make
from modem.sim.slots import SLOT_BROKEN, SLOT_EMPTY, SLOT_READY
from tests.sim.sim_helpers import library_pdus
from tests.sim.test_sim_device import ERROR, IMEI, OK, FakeNetwork, _info, _send

CARD_A = SimIdentity("8986001111111111116", "460001111111111", "CHINA MOBILE", None)
CARD_B = SimIdentity("8986012222222222227", "460012222222222", "CHN-UNICOM", "+8618600000001")
DELAY_S = 3.0
HOLD_S = 60.0
START = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=8)))
GOOD_PDU, GOOD_LENGTH = library_pdus("hello")[0]
CME_10 = "\r\n+CME ERROR: 10\r\n"


class Timeline:
    """A manual clock and scheduler: advance() runs due actions in time order."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Action]] = []
        self._order = itertools.count()

    def schedule(self, delay: float, action: Action) -> None:
        heapq.heappush(self._heap, (self.now + delay, next(self._order), action))

    def clock(self) -> datetime:
        return START + timedelta(seconds=self.now)

    def advance(self, seconds: float) -> None:
        target = self.now + seconds
        while self._heap and self._heap[0][0] <= target:
            self.now, _, action = heapq.heappop(self._heap)
            action()
        self.now = target


class SlotHarness:
    """A SimModem with a bank of cards, wired to a buffer, a fake network and a timeline."""

    def __init__(self, make: Make = SIM800, cards: int = 2) -> None:
        self.out = bytearray()
        self.time = Timeline()
        self.network = FakeNetwork()
        self.faults = Faults()
        identities = [CARD_A, CARD_B][:cards]
        self.cards = [
            SimCard(identity, next_mr=10 * (n + 1), faults=CardFaults() if cards > 1 else None)
            for n, identity in enumerate(identities)
        ]
        self.bank = SlotBank(self.cards, switch_delay_s=DELAY_S, hold_s=HOLD_S)
        self.modem = SimModem(
            make, IMEI, self.bank, "ttyGSM0", self.network, emit=self.out.extend,
            schedule=self.time.schedule, latency=Latency(1.0, 0.0), faults=self.faults,
            clock=self.time.clock,
        )  # fmt: skip
        assert self.at("ATE0").endswith(OK)
        assert self.at("AT+CMEE=1") == OK

    def at(self, line: str) -> str:
        self.out.clear()
        self.modem.feed(line.encode("latin-1") + b"\r")
        return self.out.decode("latin-1")

    def advance(self, seconds: float) -> str:
        self.out.clear()
        self.time.advance(seconds)
        return self.out.decode("latin-1")

    def send(self) -> str:
        """One AT+CMGS, answered after the 1 s latency; returns the network's answer."""
        immediate = _send(self, GOOD_PDU, GOOD_LENGTH)  # type: ignore[arg-type]
        return immediate or self.advance(1.0)

    def feed(self, data: bytes) -> str:  # what _send needs besides at()
        self.out.clear()
        self.modem.feed(data)
        return self.out.decode("latin-1")


def test_single_slot_modems_answer_error_to_csus_and_qdsim() -> None:
    for make in (SIM800, QUECTEL):
        h = SlotHarness(make, cards=1)
        for command in ("AT+CSUS=?", "AT+CSUS?", "AT+CSUS=0", "AT+QDSIM?", "AT+QDSIM=0"):
            assert h.at(command) == ERROR, (make.key, command)
        assert "AT+CSUS" not in h.at("AT+CLAC")


def test_csus_lists_reads_and_is_refused_while_the_radio_is_on() -> None:
    h = SlotHarness()
    assert h.at("AT+CSUS=?") == _info("+CSUS: (0-1)")
    assert h.at("AT+CSUS?") == _info("+CSUS: 0")
    assert h.at("AT+CSUS=1") == "\r\n+CME ERROR: 3\r\n"  # operation not allowed: radio on
    assert h.at("AT+CSUS=2") == "\r\n+CME ERROR: 4\r\n"
    assert h.at("AT+CSUS?") == _info("+CSUS: 0")
    assert h.at("AT+QDSIM=1") == ERROR  # Quectel's vendor command only
    clac = h.at("AT+CLAC")
    assert "AT+CSUS" in clac and "AT+QDSIM" not in clac


@pytest.mark.parametrize("radio_off", ["AT+CFUN=0", "AT+CFUN=4"])
def test_switch_with_cfun_shows_no_sim_for_the_delay_then_the_new_card(radio_off: str) -> None:
    h = SlotHarness()
    assert h.at("AT+CCID") == _info(CARD_A.iccid)
    assert h.at(radio_off) == OK
    assert h.at("AT+CSUS=1") == OK
    assert h.at("AT+CSUS?") == _info("+CSUS: 1")
    assert h.at("AT+CFUN=1") == OK
    for command in ("AT+CPIN?", "AT+CCID", "AT+CIMI", "AT+CNUM"):
        assert h.at(command) == CME_10, command
    assert h.at("AT+CREG?") == _info("+CREG: 0,2")  # searching
    assert h.at("AT+COPS?") == _info("+COPS: 0")
    assert h.send() == "\r\n+CMS ERROR: 310\r\n"
    h.advance(DELAY_S - 0.5)
    assert h.at("AT+CPIN?") == CME_10
    h.advance(0.5)
    assert h.at("AT+CPIN?") == _info("+CPIN: READY")
    assert h.at("AT+CCID") == _info(CARD_B.iccid)
    assert h.at("AT+CIMI") == _info(CARD_B.imsi)
    assert h.at("AT+CNUM") == _info(f'+CNUM: "","{CARD_B.msisdn}",145')
    assert h.at("AT+CREG?") == _info("+CREG: 0,1")
    assert h.at("AT+COPS?") == _info('+COPS: 0,0,"CHN-UNICOM",0')
    assert h.at("AT+CSCA?") == _info('+CSCA: "+8613010112500",145')  # the new card's SMSC


def test_radio_off_during_the_delay_reports_not_registered() -> None:
    h = SlotHarness()
    h.at("AT+CFUN=0")
    h.at("AT+CSUS=1")
    assert h.at("AT+CREG?") == _info("+CREG: 0,0")
    assert h.at("AT+CSUS=1") == OK  # already selected: no new switch
    h.advance(DELAY_S)
    h.at("AT+CFUN=1")
    assert h.send() == "\r\n+CMGS: 20\r\n" + OK


def test_qdsim_switches_with_the_radio_on_after_the_delay() -> None:
    h = SlotHarness(QUECTEL)
    assert h.at("AT+QDSIM=?") == _info("+QDSIM: (0-1)")
    assert h.at("AT+QDSIM?") == _info("+QDSIM: 0")
    assert h.at("AT+QCCID") == _info(f"+QCCID: {CARD_A.iccid}")
    assert h.at("AT+QDSIM=1") == OK
    assert h.at("AT+QDSIM?") == _info("+QDSIM: 1")
    assert h.at("AT+CSUS?") == _info("+CSUS: 1")  # one selection, two ways to see it
    assert h.at("AT+QCCID") == CME_10
    assert h.at("AT+CREG?") == _info("+CREG: 0,2")
    h.advance(DELAY_S)
    assert h.at("AT+QCCID") == _info(f"+QCCID: {CARD_B.iccid}")
    assert h.at("AT+CREG?") == _info("+CREG: 0,1")
    clac = h.at("AT+CLAC")
    assert "AT+CSUS" in clac and "AT+QDSIM" in clac


def test_a_second_switch_restarts_the_delay() -> None:
    h = SlotHarness(QUECTEL)
    h.at("AT+QDSIM=1")
    h.advance(DELAY_S - 1)
    h.at("AT+QDSIM=0")
    h.advance(1)  # the first switch's timer fires, but it is stale
    assert h.at("AT+CPIN?") == CME_10
    h.advance(DELAY_S - 1)
    assert h.at("AT+CCID") == _info(f"+CCID: {CARD_A.iccid}")


def test_each_card_has_its_own_mr_counter_block_and_sender_identity() -> None:
    h = SlotHarness(QUECTEL)
    h.cards[0].faults.block(1, 21)  # type: ignore[union-attr]
    assert h.send() == "\r\n+CMGS: 10\r\n" + OK
    assert h.send() == "\r\n+CMS ERROR: 21\r\n"  # card A is blocked now
    h.at("AT+QDSIM=1")
    h.advance(DELAY_S)
    assert h.send() == "\r\n+CMGS: 20\r\n" + OK  # card B: its own counter, not blocked
    h.at("AT+QDSIM=0")
    h.advance(DELAY_S)
    assert h.send() == "\r\n+CMS ERROR: 21\r\n"
    assert [(s.iccid, mr) for s, _, mr in h.network.parts] == [
        (CARD_A.iccid, 10), (CARD_B.iccid, 20),
    ]  # fmt: skip
    assert [c.sends for c in h.cards] == [1, 1]
    assert (h.cards[0].next_mr, h.cards[1].next_mr) == (13, 21)  # failed tries used MRs too


def test_sm_storage_is_on_the_card() -> None:
    h = SlotHarness(QUECTEL)
    h.cards[1].sm.store("00", 1)
    assert h.at('AT+CPMS="SM"').startswith("\r\n+CPMS: 0,30")
    h.at("AT+QDSIM=1")
    assert h.at('AT+CPMS="SM"') == "\r\n+CMS ERROR: 310\r\n"
    h.advance(DELAY_S)
    assert h.at('AT+CPMS="SM"').startswith("\r\n+CPMS: 1,30")


def _report_setup(h: SlotHarness) -> None:
    assert h.at("AT+CNMI=2,1,0,1,0") == OK
    faults = h.cards[0].faults
    assert faults is not None
    faults.reports.outcome, faults.reports.delay_s = "delivered", 5.0
    assert h.send().startswith("\r\n+CMGS: 10")


def test_report_for_a_switched_out_card_is_held_until_it_is_back() -> None:
    h = SlotHarness(QUECTEL)
    _report_setup(h)
    h.at("AT+QDSIM=1")
    assert h.advance(10.0) == ""  # the report came due while card A was out: held
    assert len(h.cards[0].held) == 1
    h.at("AT+QDSIM=0")
    out = h.advance(DELAY_S).split("\r\n")
    assert out[1].startswith("+CDS: ")
    report = decodeSmsPdu(out[2])
    assert (report["reference"], report["status"]) == (10, 0)
    assert h.cards[0].held == [] and h.cards[0].faults.reports_sent == 1  # type: ignore[union-attr]
    assert h.cards[1].faults.reports_sent == 0  # type: ignore[union-attr]


def test_held_report_waits_for_the_radio_after_a_csus_switch() -> None:
    h = SlotHarness()
    _report_setup(h)
    h.at("AT+CFUN=0")
    h.at("AT+CSUS=1")
    h.advance(10.0)
    h.at("AT+CSUS=0")
    assert h.advance(DELAY_S) == ""  # card A is read, but the radio is still off
    assert h.at("AT+CFUN=1") == OK  # the report follows the command's OK, never inside it
    assert h.advance(0.0).startswith("\r\n+CDS: ")


def test_held_report_is_dropped_after_the_hold_time() -> None:
    h = SlotHarness(QUECTEL)
    _report_setup(h)
    h.at("AT+QDSIM=1")
    h.advance(5.0 + HOLD_S)
    assert h.cards[0].held == [] and h.cards[0].held_dropped == 1
    h.at("AT+QDSIM=0")
    assert h.advance(DELAY_S) == ""


@pytest.mark.parametrize(
    ("state", "error"), [(SLOT_EMPTY, CME_10), (SLOT_BROKEN, "\r\n+CME ERROR: 13\r\n")]
)
def test_empty_and_broken_slots_never_become_ready(state: str, error: str) -> None:
    h = SlotHarness(QUECTEL)
    h.bank.slots[1].state = state
    h.at("AT+QDSIM=1")
    h.advance(DELAY_S * 10)
    assert h.at("AT+CPIN?") == error
    assert h.at("AT+QCCID") == error
    assert h.at("AT+CREG?") == _info("+CREG: 0,0")
    assert h.send() == "\r\n+CMS ERROR: 310\r\n"
    h.bank.slots[1].state = SLOT_READY
    h.modem.card_inserted()  # what the control socket does when a card goes in
    assert h.at("AT+CPIN?") == CME_10
    h.advance(DELAY_S)
    assert h.at("AT+CPIN?") == _info("+CPIN: READY")
