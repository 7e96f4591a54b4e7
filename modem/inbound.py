"""What a modem hands up: unsolicited lines, stored SMS-DELIVER parts and status reports.

Decoding uses python-gsmmodem-new's PDU decoder; its results are turned into
our own dataclasses here so nothing above modem/ sees the library's types.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gsmmodem.pdu import Concatenation, decodeSmsPdu

from modem.errors import ModemError
from modem.pdu import gsm7_decode, gsm7_unpack

# Lines a modem may print at any moment; they are pulled out of command answers too,
# because python-gsmmodem files a notification that arrives mid-command under that command.
UNSOLICITED_PREFIXES = ("+CMTI:", "+CDSI:", "+CDS:", "^RSSI:", "^MODE:", "^BOOT:", "+QIND:",
                        "RING", "+CLIP:", "+CRING:", "^SRVST:", "^SIMST:", "+CUSD:",
                        "^HCSQ:", "+CPIN:", "+CFUN:", "Call Ready", "SMS Ready", "RDY")
_CMTI = re.compile(r'\+CMTI:\s*"(\w+)",\s*(\d+)')
_CDSI = re.compile(r'\+CDSI:\s*"(\w+)",\s*(\d+)')
_CDS = re.compile(r"\+CDS:\s*(\d+)")
_HEX = re.compile(r"^[0-9A-Fa-f]+$")
TP_ST_DELIVERED_MAX = 0x1F  # 0x00-0x1F: the SC delivered (or replaced) it
TP_ST_TEMPORARY_MAX = 0x3F  # 0x20-0x3F: still trying; 0x40 and above: gave up


class UndecodablePdu(ModemError, ValueError):
    """A stored PDU that is not a message we can read."""


@dataclass(frozen=True)
class NewMessageNotice:
    """+CMTI: a message was stored at (memory, index)."""

    memory: str
    index: int


@dataclass(frozen=True)
class StoredReportNotice:
    """+CDSI: a status report was stored at (memory, index)."""

    memory: str
    index: int


@dataclass(frozen=True)
class InlineReport:
    """+CDS: a status report handed over directly, as PDU hex."""

    pdu: str


Notice = NewMessageNotice | StoredReportNotice | InlineReport


@dataclass(frozen=True)
class StoredPdu:
    """One PDU in modem storage."""

    memory: str
    index: int
    pdu: str


@dataclass(frozen=True)
class ReceivedPart:
    """One SMS-DELIVER: a whole message, or one part of a concatenated one."""

    sender: str
    text: str
    encoding: str
    sent_at: datetime | None  # the SC timestamp
    reference: int | None  # concatenation reference (8- or 16-bit), None when single
    total: int
    number: int
    fingerprint: str  # stable hash of the PDU: the same stored message reads the same


@dataclass(frozen=True)
class StatusReport:
    """An SMS-STATUS-REPORT: what became of the submission with reference `mr`."""

    mr: int
    recipient: str
    status: int  # TP-ST

    @property
    def delivered(self) -> bool:
        return self.status <= TP_ST_DELIVERED_MAX

    @property
    def pending(self) -> bool:
        return TP_ST_DELIVERED_MAX < self.status <= TP_ST_TEMPORARY_MAX


def parse_notices(lines: list[str]) -> tuple[list[Notice], list[str]]:
    """Split a group of unsolicited lines into notices we act on and the rest (noise)."""
    notices: list[Notice] = []
    other: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if m := _CMTI.match(line):
            notices.append(NewMessageNotice(m.group(1), int(m.group(2))))
        elif m := _CDSI.match(line):
            notices.append(StoredReportNotice(m.group(1), int(m.group(2))))
        elif _CDS.match(line) and i + 1 < len(lines) and _HEX.match(lines[i + 1].strip()):
            notices.append(InlineReport(lines[i + 1].strip()))
            i += 1
        elif line:
            other.append(line)
        i += 1
    return notices, other


def split_unsolicited(lines: list[str], own: str = "") -> tuple[list[str], list[str]]:
    """Separate unsolicited lines (and a +CDS PDU line) from a command's own answer.

    `own` is the answer prefix of the command that was sent ("+CPIN:" for AT+CPIN?):
    such lines are the answer even where the same prefix can also come unasked.
    """
    answer: list[str] = []
    unsolicited: list[str] = []
    take_pdu = False
    for line in lines:
        stripped = line.strip()
        if take_pdu and _HEX.match(stripped):
            unsolicited.append(stripped)
            take_pdu = False
        elif own and stripped.startswith(own):
            answer.append(line)
            take_pdu = False
        elif stripped.startswith(UNSOLICITED_PREFIXES):
            unsolicited.append(stripped)
            take_pdu = stripped.startswith("+CDS:")
        else:
            answer.append(line)
            take_pdu = False
    return answer, unsolicited


def decode_deliver(pdu: str) -> ReceivedPart:
    """Decode a stored SMS-DELIVER; raises UndecodablePdu for anything else."""
    data = _decode(pdu)
    if data.get("type") != "SMS-DELIVER":
        raise UndecodablePdu(f"stored PDU is {data.get('type')}, not SMS-DELIVER")
    reference, total, number = None, 1, 1
    for ie in data.get("udh") or ():
        if isinstance(ie, Concatenation) and ie.parts:
            reference, total, number = ie.reference, ie.parts, ie.number
    encoding = _encoding(pdu)
    text = _deliver_gsm7_text(pdu) if encoding == "gsm7" else _fix_text(str(data.get("text", "")))
    return ReceivedPart(
        sender=str(data.get("number") or ""), text=text, encoding=encoding,
        sent_at=data.get("time"), reference=reference, total=total, number=number,
        fingerprint=hashlib.sha1(pdu.upper().encode()).hexdigest())


def decode_report(pdu: str) -> StatusReport:
    """Decode an SMS-STATUS-REPORT; raises UndecodablePdu for anything else."""
    data = _decode(pdu)
    if data.get("type") != "SMS-STATUS-REPORT":
        raise UndecodablePdu(f"PDU is {data.get('type')}, not a status report")
    return StatusReport(mr=int(data["reference"]), recipient=str(data.get("number") or ""),
                        status=int(data["status"]))


def _decode(pdu: str) -> dict[str, Any]:
    try:
        return dict(decodeSmsPdu(pdu))
    except Exception as e:  # the library raises whatever its byte iterator meets
        raise UndecodablePdu(f"cannot decode PDU: {e!r}") from e


def _fix_text(text: str) -> str:
    # The library's UCS2 decoder leaves lone surrogates for characters outside the BMP.
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _deliver_gsm7_text(pdu: str) -> str:
    """GSM-7 text of an SMS-DELIVER, unpacked here: the library's decoder drops a final
    "@" and the first character of each part with a 16-bit concatenation header."""
    octets = bytes.fromhex(pdu)
    pos = 1 + octets[0]  # SMSC
    udhi = bool(octets[pos] & 0x40)
    pos += 1
    pos += 2 + (octets[pos] + 1) // 2  # OA: length in digits, type, digits
    pos += 1 + 1 + 7  # PID, DCS, SCTS
    udl, ud = octets[pos], octets[pos + 1 :]
    header = ud[0] + 1 if udhi else 0
    fill = (7 - header * 8 % 7) % 7 if header else 0
    return gsm7_decode(gsm7_unpack(ud[header:], udl - (header * 8 + fill) // 7, fill))


def _encoding(pdu: str) -> str:
    """gsm7 or ucs2 from TP-DCS, read straight from the PDU (the library does not say)."""
    try:
        octets = bytes.fromhex(pdu)
        pos = 1 + octets[0]  # SMSC
        pos += 1  # first octet
        oa_digits = octets[pos]
        pos += 2 + (oa_digits + 1) // 2  # OA length, TON, digits
        pos += 1  # PID
        dcs = octets[pos]
    except (ValueError, IndexError):
        return "unknown"
    alphabet = (dcs >> 2) & 0x03 if dcs & 0xC0 == 0 else 0
    return {0: "gsm7", 1: "8bit", 2: "ucs2"}.get(alphabet, "unknown")
