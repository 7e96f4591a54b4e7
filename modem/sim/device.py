"""One simulated modem's AT interpreter: bytes in, bytes out, no I/O and no sleeping."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from functools import partial
from typing import Protocol

from modem.sim.atcmd import (
    CME_OPERATION_NOT_SUPPORTED,
    CME_TEXT,
    CMS_INVALID_PDU_PARAMETER,
    CMS_NO_NETWORK_SERVICE,
    CMS_OPERATION_NOT_ALLOWED,
    CMS_SIM_NOT_INSERTED,
    Failure,
    Handler,
    Info,
    cme,
    cms,
    int_args,
    plain,
    split_commands,
)
from modem.sim.deliver import (
    ST_DELIVERED,
    ST_PERMANENT_INCOMPATIBLE_DEST,
    ST_TEMPORARY_STILL_TRYING,
    encode_status_report,
)
from modem.sim.errors import InvalidPdu
from modem.sim.faults import Faults
from modem.sim.info_commands import InfoCommands
from modem.sim.makes import Make
from modem.sim.network import Sender, SubmitPart, decode_submit
from modem.sim.slot_commands import SlotCommands
from modem.sim.slots import SimCard, SlotBank
from modem.sim.sms_commands import SmsCommands
from modem.sim.storage import ModemMemories

__all__ = [
    "Action", "Faults", "Latency", "Mode", "NetworkLink", "SimCard", "SimModem", "SlotBank",
]  # fmt: skip

Emit = Callable[[bytes], None]
Action = Callable[[], object]
Schedule = Callable[[float, Action], None]  # run the action once after a delay in seconds
Clock = Callable[[], datetime]

CR, LF, BS, CTRL_Z, ESC = 0x0D, 0x0A, 0x08, 0x1A, 0x1B
CRLF = "\r\n"
MAX_COMMAND_LINE = 556  # SIM800's documented command-line limit
MAX_TPDU_OCTETS = 164
# Hex digits accepted at the "> " prompt before the modem gives up on the PDU.
MAX_PROMPT_CHARS = 2 * (12 + MAX_TPDU_OCTETS) + 8

SMSC_BY_OPERATOR = {"CHINA MOBILE": "+8613800100500", "CHN-UNICOM": "+8613010112500"}
# TP-ST sequences per report outcome; each step comes one more delay after the send.
REPORT_STATUSES = {
    "none": (),
    "delivered": (ST_DELIVERED,),
    "failed": (ST_PERMANENT_INCOMPATIBLE_DEST,),
    "pending_then_delivered": (ST_TEMPORARY_STILL_TRYING, ST_DELIVERED),
}
# Recipient shown in a report for an MR this SIM never used (report_for on demand).
UNKNOWN_RECIPIENT = "+8613800000000"

_EXTENDED = re.compile(r"([+^$][A-Z0-9]+)(=\?|\?|=(.*))?", re.IGNORECASE | re.DOTALL)
_BASIC = re.compile(r"(&?[A-Z])(\d*)", re.IGNORECASE)


def _local_now() -> datetime:
    return datetime.now().astimezone()


class NetworkLink(Protocol):
    """Where the modem hands a submitted part once the network has taken it."""

    def submit(self, sender: Sender, part: SubmitPart, mr: int) -> None: ...


@dataclass
class Latency:
    """Send latency: uniform in [mean - jitter, mean + jitter], clipped at zero."""

    mean: float = 0.0
    jitter: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def draw(self) -> float:
        """Return the next delay in seconds."""
        if self.jitter <= 0:
            return max(0.0, self.mean)
        return max(0.0, self.rng.uniform(self.mean - self.jitter, self.mean + self.jitter))


class Mode(Enum):
    """Where incoming bytes go."""

    COMMAND = "command"  # collecting an AT command line
    PROMPT = "prompt"  # collecting a PDU after "> "
    BUSY = "busy"  # a send is with the network; input waits in the modem's buffer


class SimModem(InfoCommands, SmsCommands, SlotCommands):
    """A modem's AT interpreter. Feed it bytes; it emits replies and schedules slow ones.

    `sim` is the port's SlotBank, or one SimCard for a single-slot modem."""

    def __init__(
        self,
        make: Make,
        imei: str,
        sim: SimCard | SlotBank,
        port_name: str,
        network: NetworkLink,
        emit: Emit,
        schedule: Schedule,
        latency: Latency | None = None,
        faults: Faults | None = None,
        memories: ModemMemories | None = None,
        clock: Clock = _local_now,
    ) -> None:
        self.make = make
        self.imei = imei
        self._bank = sim if isinstance(sim, SlotBank) else SlotBank([sim])
        self.port_name = port_name
        self._network = network
        self._emit = emit
        self._schedule = schedule
        self._latency = latency or Latency()
        self._faults = faults or Faults()
        self._memories = memories or ModemMemories()
        self.clock = clock
        self._input = bytearray()  # bytes received, not yet interpreted
        self._line = bytearray()
        self._pdu = bytearray()
        self._pdu_length = 0
        self._out = bytearray()
        self.mode = Mode.COMMAND
        self._reset()
        self._basic: dict[str, Callable[[str], Info]] = {
            "Z": self._at_z,
            "&F": self._at_z,
            "E": self._at_e,
            "I": self._at_i,
            "V": self._at_v,
            "Q": self._at_q,
        }
        self._extended: dict[str, Handler] = {
            "+CGMI": partial(self._constant, make.manufacturer),
            "+GMI": partial(self._constant, make.manufacturer),
            "+CGMM": partial(self._constant, make.model),
            "+GMM": partial(self._constant, make.model),
            "+CGMR": partial(self._constant, make.revision),
            "+GMR": partial(self._constant, make.revision),
            "+CGSN": partial(self._constant, imei),
            "+GSN": partial(self._constant, imei),
            "+CIMI": self._cimi,
            "+CCID": self._ccid,
            "+CRSM": self._crsm,
            "+CNUM": self._cnum,
            "+CSQ": self._csq,
            "+CREG": partial(self._registration, "+CREG"),
            "+CGREG": partial(self._registration, "+CGREG"),
            "+COPS": self._cops,
            "+CFUN": self._cfun,
            "+CMEE": partial(self._setting, "cmee", (0, 1, 2)),
            "+CPIN": self._cpin,
            "+CLAC": self._clac,
            "+CUSD": self._cusd,
            "+CMGF": partial(self._setting, "cmgf", (0, 1)),
            "+CSCA": self._csca,
            "+CSMP": self._csmp,
            "+CPMS": self._cpms,
            "+CNMI": self._cnmi,
            "+CLIP": partial(self._setting, "clip", (0, 1)),
            "+CRC": partial(self._setting, "crc", (0, 1)),
            "+CVHU": partial(self._setting, "cvhu", (0, 1)),
            "+CMMS": partial(self._setting, "cmms", (0, 1, 2)),
            "+CSCS": self._cscs,
            "+CMGL": self._cmgl,
            "+CMGR": self._cmgr,
            "+CMGD": self._cmgd,
            "+CMGS": self._cmgs,
        }
        if make.has_qccid:
            self._extended["+QCCID"] = self._qccid
        if make.has_ddet:
            self._extended["+DDET"] = partial(self._setting, "ddet", (0, 1))
        if len(self._bank) > 1:  # single-slot modems answer a plain ERROR to +CSUS
            self._extended["+CSUS"] = self._csus
            if make.has_qdsim:
                self._extended["+QDSIM"] = self._qdsim

    # ----- settings ATZ restores (the power-on profile)

    def _reset(self) -> None:
        self.echo = True
        self.settings: dict[str, int] = {
            "cmee": 0, "cmgf": 0, "clip": 0, "crc": 0, "cvhu": 1, "cmms": 0, "ddet": 0,
            "creg": 0, "cgreg": 0, "cops_format": 0, "cfun": 1, "cusd": 0,
        }  # fmt: skip
        self.cscs = "GSM"
        self.csmp = (17, 167, 0, 0)
        self.cnmi = (1, 1, 0, 0, 0)
        self.cpms = ("SM", "SM", "SM")
        self.smsc = SMSC_BY_OPERATOR.get(self.sim.identity.operator, "")

    # ----- byte level

    def feed(self, data: bytes) -> None:
        """Take bytes from the serial line; replies go out through emit()."""
        self._input.extend(data)
        self._run()

    def _run(self) -> None:
        while self._input and self.mode is not Mode.BUSY:
            byte = self._input.pop(0)
            if self.mode is Mode.PROMPT:
                self._prompt_byte(byte)
            else:
                self._command_byte(byte)
        self._flush()

    def _flush(self) -> None:
        if self._out:
            out, self._out = bytes(self._out), bytearray()
            self._emit(out)

    def _send(self, text: str) -> None:
        self._out += text.encode("latin-1")

    def _command_byte(self, byte: int) -> None:
        if self.echo:
            self._out.append(byte)
        if byte == CR:
            line, self._line = self._line.decode("latin-1"), bytearray()
            self._execute_line(line)
        elif byte == BS:
            del self._line[-1:]
        elif byte != LF:  # LF after CR is the terminal's habit, not part of the command
            self._line.append(byte)
            if len(self._line) > MAX_COMMAND_LINE:
                self._line = bytearray()
                self._final_error(plain())

    def _prompt_byte(self, byte: int) -> None:
        if byte == CTRL_Z:
            self._finish_pdu()
        elif byte == ESC:
            # SIM800 and Quectel both leave the prompt on ESC; we answer OK (as SIM800 does)
            # so a client that aborts has a final result to resynchronise on.
            self._pdu = bytearray()
            self.mode = Mode.COMMAND
            self._send(CRLF + "OK" + CRLF)
        elif byte in (CR, LF):
            if self.echo:
                self._out.append(byte)
        else:
            if self.echo:
                self._out.append(byte)
            self._pdu.append(byte)
            if len(self._pdu) > MAX_PROMPT_CHARS:
                self._pdu = bytearray()
                self.mode = Mode.COMMAND
                self._final_error(cms(CMS_INVALID_PDU_PARAMETER))

    # ----- command level

    def _execute_line(self, line: str) -> None:
        text = line.strip()
        # Real modems ignore lines that do not start with AT (noise, stray LFs).
        if len(text) < 2 or text[:2].upper() != "AT":
            return
        try:
            for command in split_commands(text[2:]):
                info = self._execute(command)
                if info is None:  # a prompt opened; anything after it on the line is dropped
                    return
                if info:
                    self._send(CRLF + CRLF.join(info) + CRLF)
        except Failure as failure:
            self._final_error(failure)
            return
        self._send(CRLF + "OK" + CRLF)

    def _execute(self, command: str) -> Info | None:
        match = _EXTENDED.fullmatch(command)
        if match:
            handler = self._extended.get(match.group(1).upper())
            if handler is None:
                raise plain()  # unknown commands: plain ERROR whatever CMEE says (SIM800)
            suffix = match.group(2) or ""
            form = {"": "exec", "=?": "test", "?": "read"}.get(suffix, "set")
            return handler(form, match.group(3) or "")
        info: Info = []
        if not command:
            return info
        if not re.fullmatch(r"(?:&?[A-Z]\d*)+", command, re.IGNORECASE):
            raise plain()
        for name, digits in _BASIC.findall(command):
            basic = self._basic.get(name.upper())
            if basic is None:
                raise plain()
            info += basic(digits)
        return info

    def _final_error(self, failure: Failure) -> None:
        self._send(CRLF + self._error_text(failure) + CRLF)

    def _error_text(self, failure: Failure) -> str:
        cmee = self.settings["cmee"]
        # With CMEE=0 both CME and CMS errors collapse to ERROR (SIM800 behaviour).
        if failure.kind == "plain" or cmee == 0:
            return "ERROR"
        prefix = "+CME ERROR: " if failure.kind == "cme" else "+CMS ERROR: "
        if cmee == 2 and failure.code in CME_TEXT and failure.kind == "cme":
            return prefix + CME_TEXT[failure.code]
        return prefix + str(failure.code)

    # ----- basic commands

    def _at_z(self, digits: str) -> Info:
        self._reset()
        return []

    def _at_e(self, digits: str) -> Info:
        if digits not in ("", "0", "1"):
            raise plain()
        self.echo = digits == "1"
        return []

    def _at_i(self, digits: str) -> Info:
        return [self.make.manufacturer, self.make.model, self.make.revision]

    def _at_v(self, digits: str) -> Info:
        if digits != "1":  # numeric result codes would break every client we care about
            raise plain()
        return []

    def _at_q(self, digits: str) -> Info:
        if digits not in ("", "0"):
            raise plain()
        return []

    # ----- extended commands: generic shapes

    def _setting(self, key: str, allowed: tuple[int, ...], form: str, args: str) -> Info:
        name = "+" + key.upper()
        if form == "read":
            return [f"{name}: {self.settings[key]}"]
        if form == "test":
            return [f"{name}: ({','.join(str(a) for a in allowed)})"]
        values = int_args(args) if form == "set" else []
        if len(values) != 1 or values[0] not in allowed:
            raise cme(CME_OPERATION_NOT_SUPPORTED)
        self.settings[key] = values[0]
        return []

    # ----- sending

    def _cmgs(self, form: str, args: str) -> Info | None:
        if form == "test":
            return []
        if form != "set":
            raise plain()
        if self.settings["cmgf"] != 0:
            raise cms(CMS_OPERATION_NOT_ALLOWED)  # text-mode sending is not simulated
        values = int_args(args)
        if len(values) != 1 or not 1 <= values[0] <= MAX_TPDU_OCTETS:
            raise cms(CMS_INVALID_PDU_PARAMETER)
        self._pdu_length = values[0]
        self._pdu = bytearray()
        self.mode = Mode.PROMPT
        self._send(CRLF + "> ")
        return None

    def _finish_pdu(self) -> None:
        text, self._pdu = self._pdu.decode("latin-1"), bytearray()
        try:
            part = decode_submit(text, self._pdu_length)
        except InvalidPdu:
            self.mode = Mode.COMMAND
            self._final_error(cms(CMS_INVALID_PDU_PARAMETER))
            return
        refusal = self._send_refusal()
        if refusal is not None:
            self.mode = Mode.COMMAND
            self._final_error(refusal)
            return
        # The modem stamps TP-MR itself on every submit attempt (23.040 9.2.3.6), failed or not.
        slot = self._bank.active  # the card that sends, even if the slot changes meanwhile
        mr = self.sim.take_mr()
        error = self._faults.pop_send_error() or self.card_faults.block_error()
        self.mode = Mode.BUSY
        self._schedule(self._latency.draw(), partial(self._complete_send, part, mr, error, slot))

    def _complete_send(self, part: SubmitPart, mr: int, error: str | None, slot: int = 0) -> None:
        """Deliver the network's answer to the pending send, then resume buffered input."""
        if error is not None:
            self._send(CRLF + error + CRLF)
        else:
            card = self._bank.slot(slot).card
            sender = Sender(self.port_name, self.imei, card.identity.iccid)
            self._network.submit(sender, part, mr)
            self.faults_of(card).sends_ok += 1
            card.sends += 1
            self._send(f"{CRLF}+CMGS: {mr}{CRLF}{CRLF}OK{CRLF}")
            if part.status_report_requested:
                self._schedule_reports(slot, part.to, mr)
        self.mode = Mode.COMMAND
        self._run()

    def _send_refusal(self) -> Failure | None:
        """The error a send fails with at once: no SIM, or no network to carry it."""
        if self.sim_state != "ready":
            return cms(CMS_SIM_NOT_INSERTED)
        if not self.on_air:
            return cms(CMS_NO_NETWORK_SERVICE)
        return None

    # ----- status reports

    def _schedule_reports(self, slot: int, recipient: str, mr: int) -> None:
        card = self._bank.slot(slot).card
        card.sent[mr] = (recipient, self.clock())
        policy = self.faults_of(card).reports
        for step, status in enumerate(REPORT_STATUSES[policy.outcome], start=1):
            self._schedule(policy.delay_s * step, partial(self.report_to, slot, mr, status))

    def report_to(self, slot: int, mr: int, status: int) -> dict[str, object]:
        """Emit a report for the card in `slot` now, or hold it while that card is switched out."""
        if self.attached(slot):
            return self.report(mr, status)
        self.hold(slot, "report", lambda modem: modem.report(mr, status))
        return {"delivered_as": "held"}

    def report(self, mr: int, status: int, recipient: str | None = None) -> dict[str, object]:
        """Emit one SMS-STATUS-REPORT for TP-MR `mr` of the selected card now, by +CNMI <ds>."""
        known, submitted = self.sim.sent.get(mr, (UNKNOWN_RECIPIENT, self.clock()))
        pdu = encode_status_report(
            mr, recipient or known, submitted, self.clock(), status, self.sms_center
        )
        return self.receive_report(pdu)

    @property
    def sms_center(self) -> str:
        """The operator's SMSC, as it appears in front of PDUs the network delivers."""
        return SMSC_BY_OPERATOR.get(self.sim.identity.operator, "")
