"""SMS-SUBMIT encoding (3GPP 23.040 / 23.038): alphabet choice, splitting, PDU bytes.

Written here rather than taken from python-gsmmodem-new because its encoder
raises on characters outside the BMP, splits UTF-16 surrogate pairs and always
asks for a status report; the simulator decodes with the library's decoder,
so a bug in this encoder cannot hide in both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# GSM 03.38 basic table, index = septet value.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: reached with ESC (0x1B) and costs two septets.
GSM7_EXTENSION = {
    "\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F,
    "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65,
}
ESC = 0x1B
_BASIC_INDEX = {ch: i for i, ch in enumerate(GSM7_BASIC) if i != ESC}
_EXTENSION_CHAR = {code: ch for ch, code in GSM7_EXTENSION.items()}
_GSM7_ONLY = re.compile("[" + re.escape("".join(_BASIC_INDEX) + "".join(GSM7_EXTENSION)) + "]*")
_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")

SINGLE_SEPTETS = 160
PART_SEPTETS = 153  # 160 minus the 7 septets a 6-octet concatenation header takes
SINGLE_UCS2_UNITS = 70
PART_UCS2_UNITS = 67  # 70 minus 3 UTF-16 units for the header
MAX_REFERENCE = 255

# TP-DCS values
DCS_GSM7 = 0x00
DCS_UCS2 = 0x08

# First octet of an SMS-SUBMIT
MTI_SUBMIT = 0x01
TP_SRR = 0x20  # status report request
TP_UDHI = 0x40  # user data header present
TP_VPF_RELATIVE = 0x10
VALIDITY_ONE_DAY = 0xA7  # relative TP-VP: (0xA7 - 143) * 30 min + 12 h = 24 h

TON_INTERNATIONAL = 0x91
TON_UNKNOWN = 0x81


class Encoding(StrEnum):
    """The alphabet a message is sent in, as reported to HQ."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"


@dataclass(frozen=True)
class TextPlan:
    """How a text will travel: its alphabet and the text of each part."""

    encoding: Encoding
    parts: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.parts)


@dataclass(frozen=True)
class SubmitPdu:
    """One SMS-SUBMIT ready for AT+CMGS: hex text and the TPDU length the command wants."""

    hex: str
    tpdu_length: int


def plan_text(text: str) -> TextPlan:
    """Choose the alphabet and split `text` into parts, never inside a character."""
    # Regexes and str.count run in C: a short text is planned without a Python loop.
    if _GSM7_ONLY.fullmatch(text):
        septets = len(text) + sum(text.count(ch) for ch in GSM7_EXTENSION)
        if septets <= SINGLE_SEPTETS:
            return TextPlan(Encoding.GSM7, (text,))
        units = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        return TextPlan(Encoding.GSM7, _split(text, units, PART_SEPTETS))
    # UTF-16 code units: a character outside the BMP (emoji) is a surrogate pair
    # that must stay in one part.
    if len(text) + len(_ASTRAL.findall(text)) <= SINGLE_UCS2_UNITS:
        return TextPlan(Encoding.UCS2, (text,))
    units = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return TextPlan(Encoding.UCS2, _split(text, units, PART_UCS2_UNITS))


def _split(text: str, units: list[int], per_part: int) -> tuple[str, ...]:
    parts: list[str] = []
    start, used = 0, 0
    for i, cost in enumerate(units):
        if used + cost > per_part:
            parts.append(text[start:i])
            start, used = i, 0
        used += cost
    parts.append(text[start:])
    return tuple(parts)


def encode_submit(
    to: str, plan: TextPlan, reference: int, status_report: bool
) -> list[SubmitPdu]:
    """PDUs for `plan` to `to` (E.164 with + or national digits); `reference` ties the parts."""
    if not 0 <= reference <= MAX_REFERENCE:
        raise ValueError(f"concatenation reference {reference} is not 0..{MAX_REFERENCE}")
    total = plan.count
    pdus = []
    for number, part in enumerate(plan.parts, start=1):
        header = bytes([0x05, 0x00, 0x03, reference, total, number]) if total > 1 else b""
        first = MTI_SUBMIT | TP_VPF_RELATIVE
        if status_report:
            first |= TP_SRR
        if header:
            first |= TP_UDHI
        tpdu = bytearray([first, 0x00])  # TP-MR 0: the modem assigns the real one
        tpdu += _address(to)
        dcs = DCS_GSM7 if plan.encoding is Encoding.GSM7 else DCS_UCS2
        tpdu += bytes([0x00, dcs, VALIDITY_ONE_DAY])
        tpdu += _user_data(part, plan.encoding, header)
        # Leading 00: use the SMSC stored on the SIM.
        pdus.append(SubmitPdu(hex=("00" + tpdu.hex()).upper(), tpdu_length=len(tpdu)))
    return pdus


def _address(number: str) -> bytes:
    international = number.startswith("+")
    digits = number.lstrip("+")
    if not digits.isdigit():
        raise ValueError(f"destination {number!r} is not digits")
    swapped = bytearray()
    padded = digits + ("F" if len(digits) % 2 else "")
    for i in range(0, len(padded), 2):
        swapped.append(int(padded[i + 1] + padded[i], 16))
    ton = TON_INTERNATIONAL if international else TON_UNKNOWN
    return bytes([len(digits), ton]) + bytes(swapped)


def _user_data(text: str, encoding: Encoding, header: bytes) -> bytes:
    if encoding is Encoding.UCS2:
        body = text.encode("utf-16-be")
        return bytes([len(header) + len(body)]) + header + body
    septets = gsm7_encode(text)
    fill = (7 - (len(header) * 8) % 7) % 7 if header else 0
    header_septets = (len(header) * 8 + fill) // 7
    packed = _pack_septets(septets, fill)
    return bytes([header_septets + len(septets)]) + header + packed


def gsm7_encode(text: str) -> list[int]:
    """Septet values of `text`; raises ValueError for a character GSM-7 lacks."""
    out: list[int] = []
    for ch in text:
        if ch in _BASIC_INDEX:
            out.append(_BASIC_INDEX[ch])
        elif ch in GSM7_EXTENSION:
            out += [ESC, GSM7_EXTENSION[ch]]
        else:
            raise ValueError(f"GSM-7 has no {ch!r}")
    return out


def gsm7_unpack(data: bytes, count: int, fill_bits: int = 0) -> list[int]:
    """The first `count` 7-bit values of `data` after `fill_bits` padding bits."""
    bits = int.from_bytes(data, "little")
    return [(bits >> (fill_bits + 7 * i)) & 0x7F for i in range(count)]


def gsm7_decode(values: list[int]) -> str:
    """Text of GSM 03.38 septet values; an unknown extension reads as a space (23.038)."""
    out: list[str] = []
    escaped = False
    for value in values:
        if escaped:
            out.append(_EXTENSION_CHAR.get(value, " "))
            escaped = False
        elif value == ESC:
            escaped = True
        else:
            out.append(GSM7_BASIC[value])
    return "".join(out)


def _pack_septets(septets: list[int], fill_bits: int) -> bytes:
    """Pack 7-bit values LSB first after `fill_bits` zero bits (23.040 §9.2.3.24)."""
    acc, nbits = 0, fill_bits
    out = bytearray()
    for s in septets:
        acc |= s << nbits
        nbits += 7
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)
