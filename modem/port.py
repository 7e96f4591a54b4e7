"""One AT modem on one serial port, driven through python-gsmmodem-new.

Not thread-safe on purpose: exactly one owner thread calls its methods (the
library interleaves commands from several threads). Unsolicited lines are only
queued here; the owner drains them with `take_unsolicited()`.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import serial

from modem.errors import (
    CmeError,
    CmsError,
    CommandRejected,
    ModemError,
    ModemGone,
    SimNotReady,
)
from modem.gsm import BufferedReads, QueueingGsmModem, translated
from modem.inbound import StoredPdu, split_unsolicited
from modem.pdu import SubmitPdu

RESET_READ_S = 5.0  # AT+CFUN takes a few seconds on real modems
RESET_READ_MAX = 256
SWITCH_POLL_S = 0.5  # AT+CPIN? / AT+CREG? while a newly selected card comes up
RADIO_OFF_TIMEOUT_S = 15.0  # AT+CFUN=0/1 detach and attach take seconds on real modems
_ANSWER_PREFIX = re.compile(r"AT([+^][A-Z]+)")
_CSUS_RANGE = re.compile(r"\+CSUS:\s*\(?\s*(\d+)\s*(?:-\s*(\d+))?")
ABORT_DRAIN_S = 0.2
ABORT_DRAIN_MAX = 64
READER_JOIN_S = 2.0
PROMPT_TIMEOUT_S = 5.0  # AT+CMGS=<n> answers "> " at once on every modem we know
USSD_TIMEOUT_S = 20.0
COMMAND_TIMEOUT_S = 10.0
CTRL_Z = "\x1a"
ESC = "\x1b"
CSQ_UNKNOWN = 99
CREG_REGISTERED = {1, 5}  # home, roaming
# Ways to read the ICCID, most standard last: vendors answer their own first.
ICCID_COMMANDS = ("AT+CCID", "AT+QCCID", "AT^ICCID?", "AT+CRSM=176,12258,0,0,10")
_ICCID_RE = re.compile(r"(89[0-9]{16,18}[0-9F]?)")
_CSQ_RE = re.compile(r"\+CSQ:\s*(\d+),")
_CREG_RE = re.compile(r"\+CREG:\s*\d,(\d)")
_COPS_RE = re.compile(r'\+COPS:\s*\d,\d,"([^"]*)"')
_CMGS_RE = re.compile(r"\+CMGS:\s*(\d+)")
_CMGL_RE = re.compile(r"\+CMGL:\s*(\d+),")
_HEX_RE = re.compile(r"^[0-9A-Fa-f]{2,}$")
STORAGE_TIMEOUT_S = 30.0  # listing a full SIM over a slow link takes a while
CMS_EMPTY_SLOT = frozenset({321, 500})  # "invalid memory index"; some modems say 500


@dataclass(frozen=True)
class ModemInfo:
    """Who a port is: the modem (IMEI) and the SIM in it (ICCID, IMSI)."""

    path: str
    imei: str
    iccid: str
    imsi: str
    manufacturer: str
    model: str


@dataclass(frozen=True)
class RadioStatus:
    """What the modem says of the network now."""

    signal: int | None  # CSQ 0..31, None when unknown
    registered: bool
    operator: str | None


class SendError(ModemError):
    """A multipart send stopped; says which parts went out and whether the failing one may have."""

    def __init__(self, cause: ModemError, parts_done: list[int], maybe_sent: bool) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.parts_done = parts_done  # TP-MR of every part the network took
        self.maybe_sent = maybe_sent  # True: the failing PDU was written and not refused


class ModemPort:
    """Open, identify, send on and close one modem. Owner thread only."""

    def __init__(self, path: str, baudrate: int, cmgs_timeout_s: float,
                 on_unsolicited: Callable[[], None] = lambda: None) -> None:
        self.path = path
        self._on_unsolicited = on_unsolicited  # runs on the library's reader thread
        self._baudrate = baudrate
        self._cmgs_timeout_s = cmgs_timeout_s
        self._unsolicited: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
        self._gsm: QueueingGsmModem | None = None

    def open(self) -> ModemInfo:
        """Open the port, run the library's init sequence and read the identities."""
        self._abort_pending_input()
        self._gsm = QueueingGsmModem(self.path, self._baudrate, self._unsolicited,
                                      self._on_unsolicited)
        try:
            with translated("connect"):
                self._gsm.connect()
            self._gsm.serial = BufferedReads(self._gsm.serial)
            return self.identify()
        except ModemError:
            self.close()
            raise

    def _abort_pending_input(self) -> None:
        """Send ESC first: a modem left at its "> " prompt (we died mid-send) would
        otherwise read the whole init sequence as PDU text and never answer."""
        try:
            with serial.Serial(self.path, self._baudrate, timeout=ABORT_DRAIN_S) as raw:
                raw.write(ESC.encode() + b"\r")
                raw.read(ABORT_DRAIN_MAX)  # whatever it answers (OK, or nothing)
                raw.reset_input_buffer()  # so no stale line answers the library's ATZ
        except (serial.SerialException, OSError) as e:
            raise ModemGone(f"open {self.path}: {e}") from e

    def close(self) -> None:
        """Close the port; safe to call twice or after the device vanished."""
        gsm, self._gsm = self._gsm, None
        if gsm is None:
            return
        gsm.alive = False
        try:
            port = getattr(gsm, "serial", None)
            if port is not None:
                port.cancel_read()  # wake the reader out of its READER_TIMEOUT_S wait
            if getattr(gsm, "rxThread", None) is not None:
                gsm.rxThread.join(timeout=READER_JOIN_S)
            if getattr(gsm, "serial", None) is not None:
                gsm.serial.close()
        except (serial.SerialException, OSError):
            pass

    def reset(self, full: bool) -> None:
        """Restart the radio (AT+CFUN=0, =1) or the whole modem (AT+CFUN=1,1), best effort.

        Opens the port raw, without the library, because the modem being reset is
        usually one the library can no longer talk to.
        """
        self.close()
        commands = (b"AT+CFUN=1,1\r",) if full else (b"AT+CFUN=0\r", b"AT+CFUN=1\r")
        try:
            with serial.Serial(self.path, self._baudrate, timeout=RESET_READ_S) as raw:
                for command in commands:
                    raw.write(command)
                    raw.read_until(b"OK\r\n", size=RESET_READ_MAX)
        except (serial.SerialException, OSError) as e:
            raise ModemGone(f"reset of {self.path}: {e}") from e

    @property
    def is_alive(self) -> bool:
        """False once the port closed or the library's reader thread died (it dies silently)."""
        gsm = self._gsm
        return bool(gsm and gsm.alive and gsm.rxThread.is_alive())

    # --- several SIM slots -----------------------------------------------------

    def slots(self) -> list[int]:
        """Slots AT+CSUS=? offers (27.007 §8.66), e.g. [0, 1, 2]; [] for a single-slot modem."""
        try:
            line = " ".join(self._command("AT+CSUS=?"))
        except CommandRejected:
            return []
        match = _CSUS_RANGE.search(line)
        if match:
            first, last = int(match.group(1)), int(match.group(2) or match.group(1))
            return list(range(first, last + 1)) if last > first else []
        listed = [int(n) for n in re.findall(r"\d+", line.split(":", 1)[-1])]
        return listed if len(listed) > 1 else []

    def active_slot(self, method: str) -> int | None:
        """The slot in use now (AT+CSUS? or AT+QDSIM?), None when the modem does not say."""
        command = "AT+QDSIM?" if method == "qdsim" else "AT+CSUS?"
        try:
            line = " ".join(self._command(command))
        except CommandRejected:
            return None
        match = re.search(r":\s*(\d+)", line)
        return int(match.group(1)) if match else None

    def switch_slot(self, slot: int, method: str, ready_timeout_s: float,
                    poll_s: float = SWITCH_POLL_S) -> ModemInfo:
        """Make `slot` the active card and wait until it is ready and registered.

        `method` "csus" takes the radio down around AT+CSUS (refused while a SIM is
        active); "qdsim" uses Quectel's AT+QDSIM. Returns the new card's identity.
        """
        if method == "qdsim":
            self._command(f"AT+QDSIM={slot}")
        else:
            self._command("AT+CFUN=0", timeout=RADIO_OFF_TIMEOUT_S)
            try:
                self._command(f"AT+CSUS={slot}")
            finally:
                self._command("AT+CFUN=1", timeout=RADIO_OFF_TIMEOUT_S)
        return self.await_card(slot, ready_timeout_s, poll_s)

    def await_card(self, slot: int, ready_timeout_s: float,
                   poll_s: float = SWITCH_POLL_S) -> ModemInfo:
        """Wait until the card now selected (by a command or an external multiplexer) is
        ready and registered; returns its identity. SimNotReady after `ready_timeout_s`."""
        deadline = time.monotonic() + ready_timeout_s
        last_error: ModemError = SimNotReady(f"slot {slot} never became ready")
        while time.monotonic() < deadline:
            try:
                if "READY" in " ".join(self._command("AT+CPIN?")) and self.radio().registered:
                    return self.identify()
            except ModemError as e:
                last_error = e
                if isinstance(e, ModemGone):
                    raise
            time.sleep(poll_s)
        raise SimNotReady(f"slot {slot}: {last_error}")

    def identify(self) -> ModemInfo:
        """Read the identities again (after a SIM switch the ICCID and IMSI change)."""
        return ModemInfo(path=self.path, imei=self._line("AT+CGSN"), iccid=self._iccid(),
                         imsi=self._line("AT+CIMI"), manufacturer=self._line("AT+CGMI"),
                         model=self._line("AT+CGMM"))

    def radio(self) -> RadioStatus:
        """Signal, registration and operator, read now."""
        csq = _CSQ_RE.search(" ".join(self._command("AT+CSQ")))
        signal = int(csq.group(1)) if csq else None
        creg = _CREG_RE.search(" ".join(self._command("AT+CREG?")))
        cops = _COPS_RE.search(" ".join(self._command("AT+COPS?")))
        return RadioStatus(
            signal=None if signal in (None, CSQ_UNKNOWN) else signal,
            registered=bool(creg and int(creg.group(1)) in CREG_REGISTERED),
            operator=cops.group(1) if cops else None,
        )

    def send(self, pdus: list[SubmitPdu], on_part: Callable[[int, int], None]) -> list[int]:
        """Submit the PDUs in order; `on_part(index, mr)` runs as each is taken. Returns MRs."""
        done: list[int] = []
        for index, pdu in enumerate(pdus):
            mr = self._submit(pdu, done)
            done.append(mr)
            on_part(index, mr)
        return done

    def take_unsolicited(self) -> list[list[str]]:
        """Unsolicited line groups received since the last call."""
        out = []
        while True:
            try:
                out.append(self._unsolicited.get_nowait())
            except queue.Empty:
                return out

    def _submit(self, pdu: SubmitPdu, done: list[int]) -> int:
        gsm = self._require()
        command = f"AT+CMGS={pdu.tpdu_length}"
        try:
            with translated(command):
                self._keep_unsolicited(gsm.write(command, timeout=PROMPT_TIMEOUT_S,
                                                 expectedResponseTermSeq="> "))
        except ModemError as e:
            self._abort_prompt()
            raise SendError(e, done, maybe_sent=False) from e
        try:
            with translated("PDU"):
                lines = self._keep_unsolicited(
                    gsm.write(pdu.hex, timeout=self._cmgs_timeout_s, writeTerm=CTRL_Z))
        except (CmsError, CmeError, CommandRejected) as e:
            raise SendError(e, done, maybe_sent=False) from e
        except ModemError as e:
            # Written but unanswered: the network may have it.
            self._abort_prompt()
            raise SendError(e, done, maybe_sent=True) from e
        match = _CMGS_RE.search(" ".join(lines))
        if not match:
            raise SendError(CommandRejected(f"no +CMGS in {lines!r}"), done, maybe_sent=True)
        return int(match.group(1))

    def _keep_unsolicited(self, lines: list[str], command: str = "") -> list[str]:
        """A command's own answer; notifications filed under it go to the unsolicited queue.

        Raises ModemGone when the answer was cut short because the port was lost.
        """
        if self._gsm is None or not self._gsm.alive:
            raise ModemGone(f"{self.path} was lost while waiting for an answer")
        own = _ANSWER_PREFIX.match(command)
        answer, unsolicited = split_unsolicited(list(lines), own.group(1) + ":" if own else "")
        if unsolicited:
            self._unsolicited.put(unsolicited)
        return answer

    def _abort_prompt(self) -> None:
        """Send ESC so a modem left at its "> " prompt goes back to command mode."""
        gsm = self._gsm
        if gsm is None:
            return
        with contextlib.suppress(serial.SerialException, OSError):
            gsm.write(ESC, waitForResponse=False, writeTerm="")

    def _iccid(self) -> str:
        for command in ICCID_COMMANDS:
            try:
                lines = self._command(command)
            except CommandRejected:
                continue
            text = " ".join(lines)
            if command.startswith("AT+CRSM"):
                text = _unswap_crsm(text)
            match = _ICCID_RE.search(text)
            if match:
                return match.group(1).rstrip("F")
        raise SimNotReady("no ICCID from any of " + ", ".join(ICCID_COMMANDS))

    def _line(self, command: str) -> str:
        """First line of a command's answer, without the command's own prefix."""
        lines = [ln for ln in self._command(command) if ln not in ("OK", "")]
        if not lines:
            raise CommandRejected(f"empty answer to {command}")
        first = lines[0]
        return first.split(":", 1)[1].strip() if first.startswith("+") else first.strip()

    def _command(self, command: str, timeout: float = COMMAND_TIMEOUT_S) -> list[str]:
        gsm = self._require()
        with translated(command):
            return self._keep_unsolicited(gsm.write(command, timeout=timeout), command)

    def ussd(self, code: str, timeout: float = USSD_TIMEOUT_S) -> str:
        """Dial a USSD code (e.g. a balance query) and return the network's text."""
        gsm = self._require()
        with translated(f"AT+CUSD={code}"):
            return str(gsm.sendUssd(code, responseTimeout=timeout).message)

    # --- storage ------------------------------------------------------------

    def memories(self) -> list[str]:
        """Storages messages can be read from (first group of AT+CPMS=?), e.g. ["SM", "ME"]."""
        line = " ".join(self._command("AT+CPMS=?"))
        first = re.search(r"\(([^)]*)\)", line)
        return re.findall(r'"(\w+)"', first.group(1)) if first else []

    def list_stored(self, memory: str) -> list[StoredPdu]:
        """Every PDU in `memory`, read or not; nothing is deleted."""
        self._command(f'AT+CPMS="{memory}"')
        lines = self._command("AT+CMGL=4", timeout=STORAGE_TIMEOUT_S)
        found: list[StoredPdu] = []
        for header, pdu in itertools.pairwise(lines):
            match = _CMGL_RE.match(header.strip())
            if match and _HEX_RE.match(pdu.strip()):
                found.append(StoredPdu(memory, int(match.group(1)), pdu.strip()))
        return found

    def read_stored(self, memory: str, index: int) -> StoredPdu | None:
        """The PDU at (memory, index), or None when the slot is empty."""
        self._command(f'AT+CPMS="{memory}"')
        try:
            lines = self._command(f"AT+CMGR={index}")
        except CmsError as e:
            if e.code in CMS_EMPTY_SLOT:
                return None
            raise
        pdus = [ln.strip() for ln in lines if _HEX_RE.match(ln.strip())]
        return StoredPdu(memory, index, pdus[0]) if pdus else None

    def delete_stored(self, memory: str, index: int) -> None:
        """Free the slot; call only after what it held is committed to disk."""
        self._command(f'AT+CPMS="{memory}"')
        self._command(f"AT+CMGD={index}")

    def _require(self) -> QueueingGsmModem:
        if self._gsm is None or not self.is_alive:
            raise ModemGone(f"{self.path} is not open")
        return self._gsm


def _unswap_crsm(text: str) -> str:
    """EF_ICCID comes nibble-swapped in +CRSM: "98680031..." is ICCID 8986001..."""
    match = re.search(r'"([0-9A-Fa-f]{20})"', text)
    if not match:
        return ""
    raw = match.group(1)
    return "".join(raw[i + 1] + raw[i] for i in range(0, len(raw), 2))
