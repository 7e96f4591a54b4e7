"""Encodes what the network sends to a modem: SMS-DELIVER parts and SMS-STATUS-REPORTs.

Written from 3GPP 23.040/23.038 on purpose: neither the library's encoder nor the daemon's
modem/pdu.py may be used here, or a bug shared with them would cancel out in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# GSM 03.38 default alphabet; 0x1B is the escape to the extension table, never a character.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_ESCAPE = 0x1B
GSM7_EXTENSION = {
    "\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F,
    "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65,
}  # fmt: skip
_BASIC_CODE = {char: code for code, char in enumerate(GSM7_BASIC) if code != GSM7_ESCAPE}

MAX_UD_OCTETS = 140
SEPTET_BITS = 7
UCS2_UNIT_OCTETS = 2
MAX_PARTS = 255
REF_MODULO = {8: 0x100, 16: 0x10000}
IEI_CONCAT = {8: 0x00, 16: 0x08}

# TP-DCS
DCS_GSM7 = 0x00
DCS_UCS2 = 0x08
# First octets (23.040 9.2.2.1 and 9.2.2.3): TP-MMS set = no more messages waiting.
TP_MTI_DELIVER = 0x00
TP_MTI_STATUS_REPORT = 0x02
TP_MMS = 0x04
TP_UDHI = 0x40
TP_PID_DEFAULT = 0x00
# Type of address: ISDN numbering plan with TON international / national / alphanumeric.
TOA_INTERNATIONAL = 0x91
TOA_NATIONAL = 0xA1
TOA_ALPHANUMERIC = 0xD0
TZ_QUARTER = timedelta(minutes=15)
TZ_NEGATIVE = 0x08  # sign bit inside the swapped time-zone octet

# TP-ST values the simulator produces (23.040 9.2.3.15).
ST_DELIVERED = 0x00
ST_TEMPORARY_STILL_TRYING = 0x20
ST_PERMANENT_INCOMPATIBLE_DEST = 0x41


@dataclass(frozen=True)
class EncodedPdu:
    """One PDU as a modem shows it: hex with the SMSC address, and its TPDU length."""

    hex: str
    tpdu_length: int


def gsm7_codes(text: str) -> list[list[int]] | None:
    """Return each character's septets (escape + code for the extension table), or None."""
    codes: list[list[int]] = []
    for char in text:
        if char in _BASIC_CODE:
            codes.append([_BASIC_CODE[char]])
        elif char in GSM7_EXTENSION:
            codes.append([GSM7_ESCAPE, GSM7_EXTENSION[char]])
        else:
            return None
    return codes


def pack_septets(septets: list[int], fill_bits: int = 0) -> bytes:
    """Pack septets LSB first after `fill_bits` zero bits (the UDH padding of 23.040 9.2.3.24)."""
    acc, position = 0, fill_bits
    for septet in septets:
        acc |= (septet & 0x7F) << position
        position += SEPTET_BITS
    return acc.to_bytes((position + 7) // 8, "little")


def unpack_septets(data: bytes, count: int, fill_bits: int = 0) -> list[int]:
    """The first `count` 7-bit values after `fill_bits` padding bits (23.040 §9.2.3.24)."""
    bits = int.from_bytes(data, "little")
    return [(bits >> (fill_bits + SEPTET_BITS * i)) & 0x7F for i in range(count)]


def gsm7_text(values: list[int]) -> str:
    """Decode GSM 03.38 septet values, extension table included."""
    extension = {code: char for char, code in GSM7_EXTENSION.items()}
    out: list[str] = []
    escaped = False
    for value in values:
        if escaped:
            out.append(extension.get(value, " "))  # unknown extension: a space (23.038)
            escaped = False
        elif value == GSM7_ESCAPE:
            escaped = True
        else:
            out.append(GSM7_BASIC[value])
    return "".join(out)


def _swap_bcd(digits: str) -> bytes:
    """Semi-octet encoding: two digits per octet, low nibble first, padded with F."""
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex("".join(digits[i + 1] + digits[i] for i in range(0, len(digits), 2)))


def encode_address(address: str) -> bytes:
    """TP-OA/TP-RA: '+digits' international, 'digits' national, anything else alphanumeric."""
    if address.startswith("+") and address[1:].isdigit():
        digits = address[1:]
        return bytes([len(digits), TOA_INTERNATIONAL]) + _swap_bcd(digits)
    if address.isdigit():
        return bytes([len(address), TOA_NATIONAL]) + _swap_bcd(address)
    codes = gsm7_codes(address)
    if codes is None or not address:
        raise ValueError(f"address {address!r} is neither a number nor GSM-7 text")
    packed = pack_septets([s for c in codes for s in c])
    # An alphanumeric address length counts the semi-octets actually used.
    used_semi_octets = (sum(len(c) for c in codes) * SEPTET_BITS + 3) // 4
    return bytes([used_semi_octets, TOA_ALPHANUMERIC]) + packed


def encode_smsc(number: str) -> bytes:
    """The SMSC field in front of a TPDU: its length in octets, or 00 when unknown."""
    if not number:
        return b"\x00"
    digits = number.lstrip("+")
    toa = TOA_INTERNATIONAL if number.startswith("+") else TOA_NATIONAL
    body = bytes([toa]) + _swap_bcd(digits)
    return bytes([len(body)]) + body


def encode_timestamp(when: datetime) -> bytes:
    """TP-SCTS/TP-DT: yyMMddhhmmss in swapped BCD plus the UTC offset in signed quarters."""
    offset = when.utcoffset() or timedelta(0)
    quarters = int(abs(offset) / TZ_QUARTER)
    stamp = _swap_bcd(when.strftime("%y%m%d%H%M%S"))
    tz = _swap_bcd(f"{quarters:02d}")[0]
    if offset < timedelta(0):
        tz |= TZ_NEGATIVE
    return stamp + bytes([tz])


def choose_encoding(text: str, encoding: str) -> str:
    """Resolve "auto" to "gsm7" when every character is in GSM 03.38, else "ucs2"."""
    if encoding == "auto":
        return "gsm7" if gsm7_codes(text) is not None else "ucs2"
    if encoding == "gsm7" and gsm7_codes(text) is None:
        raise ValueError("text has characters outside the GSM 03.38 alphabet")
    if encoding not in ("gsm7", "ucs2"):
        raise ValueError(f"unknown encoding {encoding!r}")
    return encoding


def _concat_udh(ref_bits: int, reference: int, total: int, number: int) -> bytes:
    if ref_bits == 16:
        ie = bytes([IEI_CONCAT[16], 4, reference >> 8, reference & 0xFF, total, number])
    else:
        ie = bytes([IEI_CONCAT[8], 3, reference, total, number])
    return bytes([len(ie)]) + ie


def _udh_octets(ref_bits: int) -> int:
    return len(_concat_udh(ref_bits, 0, 1, 1))


def split_gsm7(text: str, ref_bits: int = 8) -> list[list[int]]:
    """Split into per-part septet lists; an escape pair never straddles two parts."""
    codes = gsm7_codes(text)
    if codes is None:
        raise ValueError("text has characters outside the GSM 03.38 alphabet")
    septets = [s for c in codes for s in c]
    if len(septets) * SEPTET_BITS <= MAX_UD_OCTETS * 8:
        return [septets]
    room = (MAX_UD_OCTETS - _udh_octets(ref_bits)) * 8 // SEPTET_BITS  # 153, or 152 for 16-bit
    return _split_units(codes, room)


def split_ucs2(text: str, ref_bits: int = 8) -> list[list[int]]:
    """Split into per-part UTF-16 code-unit lists; a surrogate pair stays in one part."""
    units = [list(char.encode("utf-16-be")) for char in text]
    octets = [o for u in units for o in u]
    if len(octets) <= MAX_UD_OCTETS:
        return [octets]
    room = (MAX_UD_OCTETS - _udh_octets(ref_bits)) // UCS2_UNIT_OCTETS * UCS2_UNIT_OCTETS
    return _split_units(units, room)


def _split_units(units: list[list[int]], room: int) -> list[list[int]]:
    parts: list[list[int]] = [[]]
    for unit in units:
        if len(parts[-1]) + len(unit) > room:
            parts.append([])
        parts[-1].extend(unit)
    if len(parts) > MAX_PARTS:
        raise ValueError(f"text needs {len(parts)} parts; at most {MAX_PARTS}")
    return parts


def encode_deliver(
    sender: str,
    payload: list[int],
    encoding: str,
    when: datetime,
    smsc: str = "",
    concat: tuple[int, int, int, int] | None = None,
) -> EncodedPdu:
    """Encode one SMS-DELIVER; `concat` is (ref_bits, reference, total, number) or None."""
    udh = _concat_udh(*concat) if concat else b""
    if encoding == "gsm7":
        fill = (SEPTET_BITS - len(udh) * 8 % SEPTET_BITS) % SEPTET_BITS
        user_data = udh + pack_septets(payload, fill)
        udl = (len(udh) * 8 + fill) // SEPTET_BITS + len(payload)
        dcs = DCS_GSM7
    else:
        user_data = udh + bytes(payload)
        udl = len(user_data)
        dcs = DCS_UCS2
    first = TP_MTI_DELIVER | TP_MMS | (TP_UDHI if udh else 0)
    tpdu = (
        bytes([first]) + encode_address(sender) + bytes([TP_PID_DEFAULT, dcs])
        + encode_timestamp(when) + bytes([udl]) + user_data
    )  # fmt: skip
    return EncodedPdu((encode_smsc(smsc) + tpdu).hex().upper(), len(tpdu))


def deliver_parts(
    sender: str,
    text: str,
    when: datetime,
    encoding: str = "auto",
    ref_bits: int = 8,
    reference: int = 0,
    smsc: str = "",
) -> list[EncodedPdu]:
    """Encode `text` as the SMSC would deliver it: one part, or concatenated parts."""
    if ref_bits not in REF_MODULO:
        raise ValueError("ref_bits must be 8 or 16")
    chosen = choose_encoding(text, encoding)
    payloads = split_gsm7(text, ref_bits) if chosen == "gsm7" else split_ucs2(text, ref_bits)
    if len(payloads) == 1:
        return [encode_deliver(sender, payloads[0], chosen, when, smsc)]
    reference %= REF_MODULO[ref_bits]
    total = len(payloads)
    return [
        encode_deliver(sender, p, chosen, when, smsc, (ref_bits, reference, total, n))
        for n, p in enumerate(payloads, start=1)
    ]


def encode_status_report(
    mr: int, recipient: str, submitted: datetime, discharged: datetime, status: int, smsc: str = ""
) -> EncodedPdu:
    """Encode an SMS-STATUS-REPORT for the submit with TP-MR `mr` (TP-ST `status`)."""
    first = TP_MTI_STATUS_REPORT | TP_MMS
    tpdu = (
        bytes([first, mr & 0xFF]) + encode_address(recipient)
        + encode_timestamp(submitted) + encode_timestamp(discharged) + bytes([status & 0xFF])
    )  # fmt: skip
    return EncodedPdu((encode_smsc(smsc) + tpdu).hex().upper(), len(tpdu))
