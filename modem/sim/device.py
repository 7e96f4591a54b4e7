"""One simulated modem's AT interpreter: bytes in, bytes out, no I/O and no sleeping."""

from __future__ import annotations

import random
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from typing import Protocol

from modem.sim.errors import InvalidPdu
from modem.sim.identity import SimIdentity, iccid_ef_hex
from modem.sim.makes import Make
from modem.sim.network import Sender, SubmitPart, decode_submit

Emit = Callable[[bytes], None]
Action = Callable[[], None]
Schedule = Callable[[float, Action], None]  # run the action once after a delay in seconds

CR, LF, BS, CTRL_Z, ESC = 0x0D, 0x0A, 0x08, 0x1A, 0x1B
CRLF = "\r\n"
MAX_COMMAND_LINE = 556  # SIM800's documented command-line limit
MAX_TPDU_OCTETS = 164
# Hex digits accepted at the "> " prompt before the modem gives up on the PDU.
MAX_PROMPT_CHARS = 2 * (12 + MAX_TPDU_OCTETS) + 8
MR_MODULO = 256

# 27.005 / 27.007 error codes the simulator uses.
CME_OPERATION_NOT_ALLOWED = 3
CME_OPERATION_NOT_SUPPORTED = 4
CMS_OPERATION_NOT_ALLOWED = 302
CMS_INVALID_PDU_PARAMETER = 304
CMS_NO_NETWORK_SERVICE = 331

CME_TEXT = {
    CME_OPERATION_NOT_ALLOWED: "operation not allowed",
    CME_OPERATION_NOT_SUPPORTED: "operation not supported",
}

# EF_ICCID as read with AT+CRSM=176 (READ BINARY) on file 12258 (0x2FE2), 10 octets.
CRSM_READ_BINARY = 176
EF_ICCID = 12258
CRSM_OK = "144,0"
CRSM_FILE_NOT_FOUND = "106,130"

CSQ_DEFAULT = 21
SMSC_BY_OPERATOR = {"CHINA MOBILE": "+8613800100500", "CHN-UNICOM": "+8613010112500"}
PLMN_BY_OPERATOR = {"CHINA MOBILE": "46000", "CHN-UNICOM": "46001"}
STORAGES = ("SM", "ME", "SR")
STORAGE_CAPACITY = 50
CHARSETS = ("IRA", "GSM", "UCS2", "HEX", "PCCP", "PCDN", "8859-1")

_EXTENDED = re.compile(r"([+^$][A-Z0-9]+)(=\?|\?|=(.*))?", re.IGNORECASE | re.DOTALL)
_BASIC = re.compile(r"(&?[A-Z])(\d*)", re.IGNORECASE)


class NetworkLink(Protocol):
    """Where the modem hands a submitted part once the network has taken it."""

    def submit(self, sender: Sender, part: SubmitPart, mr: int) -> None: ...


@dataclass
class SimCard:
    """State that lives on the SIM card and therefore survives unplug/replug of the modem."""

    identity: SimIdentity
    next_mr: int = 0

    def take_mr(self) -> int:
        """Return the next TP-MR (0..255) and advance the counter, as the modem does per submit."""
        mr = self.next_mr
        self.next_mr = (mr + 1) % MR_MODULO
        return mr


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


@dataclass
class Faults:
    """Faults injected from the control socket; owned by the port, read by its modem."""

    send_errors: deque[str] = field(default_factory=deque)

    def fail_next(self, error: str, count: int) -> None:
        """Make the next `count` sends answer `error` (a final result line) instead of +CMGS."""
        self.send_errors.extend([error] * count)

    def take_send_error(self) -> str | None:
        """Return the error line for the send starting now, or None if it should succeed."""
        return self.send_errors.popleft() if self.send_errors else None


class _Failure(Exception):
    """A command's final result is an error; kind is "plain", "cme" or "cms"."""

    def __init__(self, kind: str, code: int = 0) -> None:
        super().__init__(kind, code)
        self.kind = kind
        self.code = code


def _plain() -> _Failure:
    return _Failure("plain")


def _cme(code: int) -> _Failure:
    return _Failure("cme", code)


def _cms(code: int) -> _Failure:
    return _Failure("cms", code)


class Mode(Enum):
    """Where incoming bytes go."""

    COMMAND = "command"  # collecting an AT command line
    PROMPT = "prompt"  # collecting a PDU after "> "
    BUSY = "busy"  # a send is with the network; input waits in the modem's buffer


Info = list[str]
Handler = Callable[[str, str], "Info | None"]  # (form, args) -> info lines; None = no final yet


def _split_commands(body: str) -> list[str]:
    """Split the text after "AT" at ';' outside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in body:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p]


def _int_args(args: str) -> list[int]:
    """Parse "2,1,0,2" into ints; raise _Failure(plain) on anything else."""
    try:
        return [int(a) for a in args.split(",")] if args.strip() else []
    except ValueError:
        raise _plain() from None


def _quoted(args: str) -> list[str]:
    """Parse '"ME","ME"' into ['ME', 'ME']."""
    return [a.strip().strip('"').upper() for a in args.split(",")]


class SimModem:
    """A modem's AT interpreter. Feed it bytes; it emits replies and schedules slow ones."""

    def __init__(
        self,
        make: Make,
        imei: str,
        sim: SimCard,
        port_name: str,
        network: NetworkLink,
        emit: Emit,
        schedule: Schedule,
        latency: Latency | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.make = make
        self.imei = imei
        self.sim = sim
        self.port_name = port_name
        self.signal = CSQ_DEFAULT
        self._network = network
        self._emit = emit
        self._schedule = schedule
        self._latency = latency or Latency()
        self._faults = faults or Faults()
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
            "+CIMI": partial(self._constant, sim.identity.imsi),
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

    # ----- settings ATZ restores (the power-on profile)

    def _reset(self) -> None:
        self.echo = True
        self.settings: dict[str, int] = {
            "cmee": 0, "cmgf": 0, "clip": 0, "crc": 0, "cvhu": 1, "cmms": 0, "ddet": 0,
            "creg": 0, "cgreg": 0, "cops_format": 0, "cfun": 1,
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
                self._final_error(_plain())

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
                self._final_error(_cms(CMS_INVALID_PDU_PARAMETER))

    # ----- command level

    def _execute_line(self, line: str) -> None:
        text = line.strip()
        # Real modems ignore lines that do not start with AT (noise, stray LFs).
        if len(text) < 2 or text[:2].upper() != "AT":
            return
        try:
            for command in _split_commands(text[2:]):
                info = self._execute(command)
                if info is None:  # a prompt opened; anything after it on the line is dropped
                    return
                if info:
                    self._send(CRLF + CRLF.join(info) + CRLF)
        except _Failure as failure:
            self._final_error(failure)
            return
        self._send(CRLF + "OK" + CRLF)

    def _execute(self, command: str) -> Info | None:
        match = _EXTENDED.fullmatch(command)
        if match:
            handler = self._extended.get(match.group(1).upper())
            if handler is None:
                raise _plain()  # unknown commands: plain ERROR whatever CMEE says (SIM800)
            suffix = match.group(2) or ""
            form = {"": "exec", "=?": "test", "?": "read"}.get(suffix, "set")
            return handler(form, match.group(3) or "")
        info: Info = []
        if not command:
            return info
        if not re.fullmatch(r"(?:&?[A-Z]\d*)+", command, re.IGNORECASE):
            raise _plain()
        for name, digits in _BASIC.findall(command):
            basic = self._basic.get(name.upper())
            if basic is None:
                raise _plain()
            info += basic(digits)
        return info

    def _final_error(self, failure: _Failure) -> None:
        self._send(CRLF + self._error_text(failure) + CRLF)

    def _error_text(self, failure: _Failure) -> str:
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
            raise _plain()
        self.echo = digits == "1"
        return []

    def _at_i(self, digits: str) -> Info:
        return [self.make.manufacturer, self.make.model, self.make.revision]

    def _at_v(self, digits: str) -> Info:
        if digits != "1":  # numeric result codes would break every client we care about
            raise _plain()
        return []

    def _at_q(self, digits: str) -> Info:
        if digits not in ("", "0"):
            raise _plain()
        return []

    # ----- extended commands: generic shapes

    def _constant(self, value: str, form: str, args: str) -> Info:
        if form == "test":
            return []
        if form != "exec":
            raise _plain()
        return [value]

    def _setting(self, key: str, allowed: tuple[int, ...], form: str, args: str) -> Info:
        name = "+" + key.upper()
        if form == "read":
            return [f"{name}: {self.settings[key]}"]
        if form == "test":
            return [f"{name}: ({','.join(str(a) for a in allowed)})"]
        values = _int_args(args) if form == "set" else []
        if len(values) != 1 or values[0] not in allowed:
            raise _cme(CME_OPERATION_NOT_SUPPORTED)
        self.settings[key] = values[0]
        return []

    # ----- identity

    def _ccid(self, form: str, args: str) -> Info:
        if form == "test":
            return []
        if form not in ("exec", "read"):
            raise _plain()
        iccid = self.sim.identity.iccid
        return [f"+CCID: {iccid}" if self.make.ccid_prefixed else iccid]

    def _qccid(self, form: str, args: str) -> Info:
        if form == "test":
            return []
        if form != "exec":
            raise _plain()
        return [f"+QCCID: {self.sim.identity.iccid}"]

    def _crsm(self, form: str, args: str) -> Info:
        if form == "test":
            return []
        if form != "set":
            raise _plain()
        values = _int_args(args.split(',"')[0])
        if len(values) < 2:
            raise _cme(CME_OPERATION_NOT_SUPPORTED)
        if values[0] == CRSM_READ_BINARY and values[1] == EF_ICCID:
            return [f'+CRSM: {CRSM_OK},"{iccid_ef_hex(self.sim.identity.iccid)}"']
        return [f'+CRSM: {CRSM_FILE_NOT_FOUND},""']

    def _cnum(self, form: str, args: str) -> Info:
        if form == "test":
            return []
        if form != "exec":
            raise _plain()
        number = self.sim.identity.msisdn
        return [f'+CNUM: "","{number}",145'] if number else []

    # ----- radio

    def _csq(self, form: str, args: str) -> Info:
        if form == "test":
            return ["+CSQ: (0-31,99),(0-7,99)"]
        if form != "exec":
            raise _plain()
        return [f"+CSQ: {self.signal if self.settings['cfun'] == 1 else 99},0"]

    def _registration(self, name: str, form: str, args: str) -> Info:
        key = name[1:].lower()
        if form == "test":
            return [f"{name}: (0-2)"]
        if form == "read":
            stat = 1 if self.settings["cfun"] == 1 else 0  # 1: registered, home network
            return [f"{name}: {self.settings[key]},{stat}"]
        values = _int_args(args) if form == "set" else []
        if len(values) != 1 or values[0] not in (0, 1, 2):
            raise _cme(CME_OPERATION_NOT_SUPPORTED)
        self.settings[key] = values[0]
        return []

    def _cops(self, form: str, args: str) -> Info:
        operator = self.sim.identity.operator
        plmn = PLMN_BY_OPERATOR.get(operator, "")
        act = self.make.cops_act
        if form == "test":
            return [f'+COPS: (2,"{operator}","{operator}","{plmn}",{act}),,(0-4),(0-2)']
        if form == "read":
            if self.settings["cfun"] != 1:
                return ["+COPS: 0"]
            shown = plmn if self.settings["cops_format"] == 2 else operator
            return [f'+COPS: 0,{self.settings["cops_format"]},"{shown}",{act}']
        values = _int_args(args.split(',"')[0]) if form == "set" else []
        if not values or values[0] not in (0, 1, 2, 3, 4):
            raise _cme(CME_OPERATION_NOT_SUPPORTED)
        if values[0] == 3:  # only sets the format used by the read form
            if len(values) != 2 or values[1] not in (0, 1, 2):
                raise _cme(CME_OPERATION_NOT_SUPPORTED)
            self.settings["cops_format"] = values[1]
        return []

    def _cfun(self, form: str, args: str) -> Info:
        if form == "read":
            return [f"+CFUN: {self.settings['cfun']}"]
        if form == "test":
            return ["+CFUN: (0,1,4),(0,1)"]
        values = _int_args(args) if form == "set" else []
        if not values or values[0] not in (0, 1, 4):
            raise _cme(CME_OPERATION_NOT_SUPPORTED)
        self.settings["cfun"] = values[0]
        return []

    def _cpin(self, form: str, args: str) -> Info:
        if form == "read":
            return ["+CPIN: READY"]
        if form == "test":
            return []
        raise _cme(CME_OPERATION_NOT_ALLOWED)  # no PIN is pending

    def _clac(self, form: str, args: str) -> Info:
        if form != "exec":
            raise _plain()
        return list(self.make.clac)

    # ----- SMS settings

    def _csca(self, form: str, args: str) -> Info:
        if form == "read":
            return [f'+CSCA: "{self.smsc}",145']
        if form == "test":
            return []
        if form != "set" or not args.strip():
            raise _cms(CMS_OPERATION_NOT_ALLOWED)
        self.smsc = args.split(",")[0].strip().strip('"')
        return []

    def _csmp(self, form: str, args: str) -> Info:
        if form == "read":
            return ["+CSMP: " + ",".join(str(v) for v in self.csmp)]
        if form == "test":
            return []
        values = _int_args(args) if form == "set" else []
        if len(values) != 4 or not all(0 <= v <= 255 for v in values):
            raise _plain()
        self.csmp = (values[0], values[1], values[2], values[3])
        return []

    def _cpms(self, form: str, args: str) -> Info:
        mems = ",".join(f'"{m}"' for m in STORAGES)
        if form == "test":
            return [f'+CPMS: ({mems}),("SM","ME"),("SM","ME")']
        if form == "read":
            used = ",".join(f'"{m}",0,{STORAGE_CAPACITY}' for m in self.cpms)
            return [f"+CPMS: {used}"]
        chosen = _quoted(args) if form == "set" else []
        if not 1 <= len(chosen) <= 3 or any(m not in STORAGES for m in chosen):
            raise _cms(CMS_OPERATION_NOT_ALLOWED)
        merged = (*chosen, *self.cpms[len(chosen) :])
        self.cpms = (merged[0], merged[1], merged[2])
        return ["+CPMS: " + ",".join(f"0,{STORAGE_CAPACITY}" for _ in self.cpms)]

    def _cnmi(self, form: str, args: str) -> Info:
        if form == "read":
            return ["+CNMI: " + ",".join(str(v) for v in self.cnmi)]
        if form == "test":
            ds = ",".join(str(d) for d in range(self.make.cnmi_max_ds + 1))
            return [f"+CNMI: (0-3),(0-3),(0,2),({ds}),(0,1)"]
        values = _int_args(args) if form == "set" else []
        if not 1 <= len(values) <= 5:
            raise _plain()
        values += [0] * (5 - len(values))
        # SIM800 knows only ds=0/1 and answers a plain ERROR to ds=2, like the real one.
        if values[3] > self.make.cnmi_max_ds or values[0] > 3 or values[1] > 3:
            raise _plain()
        self.cnmi = (values[0], values[1], values[2], values[3], values[4])
        return []

    def _cscs(self, form: str, args: str) -> Info:
        if form == "test":
            return ["+CSCS: (" + ",".join(f'"{c}"' for c in CHARSETS) + ")"]
        if form == "read":
            return [f'+CSCS: "{self.cscs}"']
        chosen = _quoted(args) if form == "set" else []
        if len(chosen) != 1 or chosen[0] not in CHARSETS:
            raise _cme(CME_OPERATION_NOT_SUPPORTED)
        self.cscs = chosen[0]
        return []

    # ----- SMS storage (empty until inbound injection exists)

    def _cmgl(self, form: str, args: str) -> Info:
        if form == "test":
            return ["+CMGL: (0-4)"]
        return []

    def _cmgr(self, form: str, args: str) -> Info:
        if form != "set":
            raise _plain()
        _int_args(args)
        return []  # an empty slot answers a bare OK on SIM800

    def _cmgd(self, form: str, args: str) -> Info:
        if form == "test":
            return [f"+CMGD: (1-{STORAGE_CAPACITY}),(0-4)"]
        if form != "set" or not _int_args(args):
            raise _plain()
        return []

    # ----- sending

    def _cmgs(self, form: str, args: str) -> Info | None:
        if form == "test":
            return []
        if form != "set":
            raise _plain()
        if self.settings["cmgf"] != 0:
            raise _cms(CMS_OPERATION_NOT_ALLOWED)  # text-mode sending is not simulated
        values = _int_args(args)
        if len(values) != 1 or not 1 <= values[0] <= MAX_TPDU_OCTETS:
            raise _cms(CMS_INVALID_PDU_PARAMETER)
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
            self._final_error(_cms(CMS_INVALID_PDU_PARAMETER))
            return
        if self.settings["cfun"] != 1:
            self.mode = Mode.COMMAND
            self._final_error(_cms(CMS_NO_NETWORK_SERVICE))
            return
        # The modem stamps TP-MR itself on every submit attempt (23.040 9.2.3.6), failed or not.
        mr = self.sim.take_mr()
        error = self._faults.take_send_error()
        self.mode = Mode.BUSY
        self._schedule(self._latency.draw(), partial(self._complete_send, part, mr, error))

    def _complete_send(self, part: SubmitPart, mr: int, error: str | None) -> None:
        """Deliver the network's answer to the pending send, then resume buffered input."""
        if error is not None:
            self._send(CRLF + error + CRLF)
        else:
            sender = Sender(self.port_name, self.imei, self.sim.identity.iccid)
            self._network.submit(sender, part, mr)
            self._send(f"{CRLF}+CMGS: {mr}{CRLF}{CRLF}OK{CRLF}")
        self.mode = Mode.COMMAND
        self._run()
