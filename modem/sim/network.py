"""The simulated radio network: decodes submitted PDUs, reassembles, journals to JSON lines."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

# Deliberately the library's decoder, not the daemon's encoder: a bug in the daemon's PDU
# code must not be mirrored here where it would cancel out.
from gsmmodem.pdu import Concatenation, decodeSmsPdu

from modem.sim.deliver import gsm7_text, unpack_septets
from modem.sim.errors import InvalidPdu

JOURNAL_NAME = "network.jsonl"

TP_MTI_MASK = 0x03
TP_MTI_SUBMIT = 0x01
TP_SRR = 0x20  # status report requested
TP_UDHI = 0x40  # user data header present
TP_VPF_MASK = 0x18
VP_OCTETS = (0, 7, 1, 7)  # by TP-VPF: none, enhanced, relative, absolute
IEI_CONCAT_8BIT = 0x00
IEI_CONCAT_16BIT = 0x08
# SMSC field + TPDU of the longest SMS-SUBMIT (12-octet SMSC, 164-octet TPDU).
MAX_PDU_OCTETS = 12 + 164


@dataclass(frozen=True)
class Concat:
    """Concatenation info from the UDH: reference, total parts and this part's 1-based number."""

    reference: int
    total: int
    number: int


@dataclass(frozen=True)
class SubmitPart:
    """One decoded SMS-SUBMIT as the network received it."""

    to: str
    text: str  # as the library decoded it; may hold surrogate halves until reassembled
    encoding: str  # "gsm7" | "ucs2" | "8bit"
    status_report_requested: bool
    concat: Concat | None


@dataclass(frozen=True)
class Sender:
    """Who submitted a PDU: the port name and the modem's and SIM's identities."""

    port: str
    imei: str
    iccid: str


@dataclass
class PortCounters:
    """What the network has taken from one port since the pool started."""

    pdus: int = 0
    messages: int = 0


@dataclass
class _Pending:
    parts: dict[int, tuple[SubmitPart, int]] = field(default_factory=dict)


def _encoding_of(dcs: int) -> str:
    """Name the alphabet of a TP-DCS octet the way the library's decoder interprets it."""
    if dcs & 0xC0 == 0:  # general data coding group
        return {0: "gsm7", 1: "8bit", 2: "ucs2"}.get((dcs & 0x0C) >> 2, "gsm7")
    if dcs & 0xF0 == 0xF0:  # data coding / message class group
        return "8bit" if dcs & 0x04 else "gsm7"
    return "gsm7"


def _dcs_and_user_data(tpdu: bytes) -> tuple[int, int, int]:
    """Walk an SMS-SUBMIT TPDU header; return (TP-DCS, TP-UDL, octets of user data present)."""
    da_digits = tpdu[2]
    dcs_at = 3 + 1 + (da_digits + 1) // 2 + 1  # first octet, MR, DA length, TOA, DA, PID
    vp_octets = VP_OCTETS[(tpdu[0] & TP_VPF_MASK) >> 3]
    udl_at = dcs_at + 1 + vp_octets
    return tpdu[dcs_at], tpdu[udl_at], len(tpdu) - udl_at - 1


def _submit_gsm7_text(tpdu: bytes) -> str:
    """The GSM-7 text of an SMS-SUBMIT, unpacked here: the library's decoder drops a
    final "@" and the first character of parts with a 7-octet (16-bit) header."""
    da_digits = tpdu[2]
    udl_at = 3 + 1 + (da_digits + 1) // 2 + 1 + 1 + VP_OCTETS[(tpdu[0] & TP_VPF_MASK) >> 3]
    udl, ud = tpdu[udl_at], tpdu[udl_at + 1 :]
    header = ud[0] + 1 if tpdu[0] & TP_UDHI else 0
    fill = (7 - header * 8 % 7) % 7 if header else 0
    header_septets = (header * 8 + fill) // 7
    return gsm7_text(unpack_septets(ud[header:], udl - header_septets, fill))


def _user_data_octets(encoding: str, udl: int) -> int:
    """Octets TP-UDL announces: septets packed for GSM-7, octets otherwise."""
    return (udl * 7 + 7) // 8 if encoding == "gsm7" else udl


def decode_submit(pdu_hex: str, declared_length: int) -> SubmitPart:
    """Decode a PDU-mode AT+CMGS body; raise InvalidPdu unless it is a valid SMS-SUBMIT."""
    try:
        octets = bytes.fromhex(pdu_hex)
    except ValueError as e:
        raise InvalidPdu(f"not hex: {e}") from None
    if not octets or len(octets) > MAX_PDU_OCTETS:
        raise InvalidPdu(f"PDU of {len(octets)} octets")
    smsc_length = octets[0]
    tpdu = octets[1 + smsc_length :]
    if len(tpdu) != declared_length:
        raise InvalidPdu(f"TPDU is {len(tpdu)} octets, AT+CMGS declared {declared_length}")
    if not tpdu or tpdu[0] & TP_MTI_MASK != TP_MTI_SUBMIT:
        raise InvalidPdu("not an SMS-SUBMIT")
    try:
        dcs, udl, present = _dcs_and_user_data(tpdu)
        decoded = decodeSmsPdu(pdu_hex)
    except Exception as e:  # the library raises whatever its byte iterator runs into
        raise InvalidPdu(f"undecodable: {e!r}") from None
    encoding = _encoding_of(dcs)
    # The library's decoder quietly returns a short text for truncated user data; a modem
    # would not send it, so check TP-UDL against what actually arrived.
    if _user_data_octets(encoding, udl) != present:
        raise InvalidPdu(f"TP-UDL {udl} does not match {present} octets of user data")
    concat = None
    for ie in decoded.get("udh") or ():
        if isinstance(ie, Concatenation) and ie.id in (IEI_CONCAT_8BIT, IEI_CONCAT_16BIT):
            concat = Concat(reference=ie.reference, total=ie.parts, number=ie.number)
    number = decoded.get("number")
    if not number:
        raise InvalidPdu("no destination address")
    text = decoded.get("text", "")
    if encoding == "gsm7":
        text = _submit_gsm7_text(tpdu)
    return SubmitPart(
        to=number,
        text=text,
        encoding=encoding,
        status_report_requested=bool(tpdu[0] & TP_SRR),
        concat=concat,
    )


def fix_surrogates(text: str) -> str:
    """Join the lone UTF-16 surrogate halves the library's UCS2 decoder leaves for non-BMP text."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Network:
    """Takes parts from every port, reassembles messages and appends each to the journal."""

    def __init__(self, directory: Path, clock: Callable[[], str] = _now) -> None:
        self.journal_path = directory / JOURNAL_NAME
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str, int, int], _Pending] = {}
        self._counters: dict[str, PortCounters] = {}
        self._journal = open(self.journal_path, "a", encoding="utf-8")  # noqa: SIM115 (held open)

    def submit(self, sender: Sender, part: SubmitPart, mr: int) -> None:
        """Accept one part sent by `sender` with TP-MR `mr`; journal the message once complete."""
        with self._lock:
            counters = self._counters.setdefault(sender.port, PortCounters())
            counters.pdus += 1
            if part.concat is None or part.concat.total <= 1:
                self._complete(sender, [(part, mr)])
                return
            # Keyed on the SIM, not the port: the reference is the sending SIM's, and a card
            # moved to another port mid-message still belongs to the same message.
            key = (sender.iccid, part.to, part.concat.reference, part.concat.total)
            pending = self._pending.setdefault(key, _Pending())
            # A resent part (same number) replaces the earlier copy, as an SMSC would dedupe it.
            pending.parts[part.concat.number] = (part, mr)
            if len(pending.parts) == part.concat.total:
                del self._pending[key]
                self._complete(sender, [pending.parts[n] for n in sorted(pending.parts)])

    def _complete(self, sender: Sender, parts: list[tuple[SubmitPart, int]]) -> None:
        first = parts[0][0]
        record = {
            "port": sender.port,
            "imei": sender.imei,
            "iccid": sender.iccid,
            "to": first.to,
            # Join before fixing: a surrogate pair may be split across two parts.
            "text": fix_surrogates("".join(p.text for p, _ in parts)),
            "encoding": first.encoding,
            "parts": len(parts),
            "mr": [mr for _, mr in parts],
            "status_report_requested": first.status_report_requested,
            "at": self._clock(),
        }
        self._journal.write(json.dumps(record, ensure_ascii=False) + "\n")
        # Flushed, not fsynced: readers see it at once and it survives the process being
        # killed; an fsync here would put disk stalls into the modem's answer time (a busy CI
        # disk made +CMGS take over 2 s), which no real network does.
        self._journal.flush()
        self._counters[sender.port].messages += 1

    def counters(self, port: str) -> PortCounters:
        """Return a copy of what the network has taken from `port`."""
        with self._lock:
            c = self._counters.get(port, PortCounters())
            return PortCounters(pdus=c.pdus, messages=c.messages)

    def close(self) -> None:
        """Close the journal; later submissions raise ValueError."""
        with self._lock:
            self._journal.close()
