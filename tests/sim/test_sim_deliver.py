"""The simulator's own SMS-DELIVER / SMS-STATUS-REPORT encoder, checked against the library."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from gsmmodem.pdu import decodeSmsPdu

from modem.sim.deliver import (
    GSM7_BASIC,
    deliver_parts,
    encode_status_report,
    gsm7_codes,
    split_gsm7,
    split_ucs2,
)
from modem.sim.inbound import delivery_sequence

WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=3)))
SMSC = "+8613800100500"
# 0x5F is "§" in GSM 03.38 but "`" in the library's table: kept out of round trips.
GSM7_SAFE = "".join(c for c in GSM7_BASIC if c not in "\x1b§") + "^{}\\[~]|€"


def _text_of(pdus: list[str]) -> str:
    text = "".join(decodeSmsPdu(p)["text"] for p in pdus)
    return text.encode("utf-16", "surrogatepass").decode("utf-16")  # rejoin split surrogates


@pytest.mark.parametrize(
    ("text", "encoding", "parts"),
    [
        ("hello", "gsm7", 1),
        (GSM7_SAFE, "gsm7", 1),
        ("x" * 160, "gsm7", 1),
        ("x" * 161, "gsm7", 2),
        ("€" * 80, "gsm7", 1),  # 160 septets: every € is escape + code
        ("€" * 81, "gsm7", 2),
        ("Привет", "ucs2", 1),
        ("Ж" * 70, "ucs2", 1),
        ("Ж" * 71, "ucs2", 2),
        ("Привет, мир! " * 12, "ucs2", 3),
        ("ok 😀 " * 40, "ucs2", 4),
    ],
)
def test_round_trip_through_the_library_decoder(text: str, encoding: str, parts: int) -> None:
    pdus = deliver_parts("+79161234567", text, WHEN, reference=200, smsc=SMSC)
    assert len(pdus) == parts
    decoded = [decodeSmsPdu(p.hex) for p in pdus]
    assert _text_of([p.hex for p in pdus]) == text
    if parts == 1:
        assert "udh" not in decoded[0]
    for number, (pdu, d) in enumerate(zip(pdus, decoded, strict=True), start=1):
        assert (d["type"], d["number"], d["smsc"], d["time"]) == (
            "SMS-DELIVER", "+79161234567", SMSC, WHEN,
        )  # fmt: skip
        assert d["tpdu_length"] == pdu.tpdu_length
        assert len(bytes.fromhex(pdu.hex)) - 1 - 8 == pdu.tpdu_length  # SMSC field is 9 octets
        if parts > 1:
            (concat,) = d["udh"]
            assert (concat.id, concat.reference, concat.parts, concat.number) == (
                0x00, 200, parts, number,
            )  # fmt: skip
        assert pdu.hex[2 + 16 + 20 : 2 + 16 + 22] == ("00" if encoding == "gsm7" else "08")  # DCS


def test_split_sizes_follow_the_smsc() -> None:
    assert [len(p) for p in split_gsm7("a" * 400)] == [153, 153, 94]
    assert [len(p) for p in split_gsm7("a" * 400, ref_bits=16)] == [152, 152, 96]
    assert [len(p) // 2 for p in split_ucs2("ы" * 150)] == [67, 67, 16]
    assert [len(p) // 2 for p in split_ucs2("ы" * 150, ref_bits=16)] == [66, 66, 18]


def test_escape_pairs_and_surrogate_pairs_never_straddle_parts() -> None:
    parts = split_gsm7("a" * 152 + "€" + "b" * 7)  # 161 septets: two parts of up to 153
    assert [len(p) for p in parts] == [152, 9]  # the € moved whole to part 2
    units = split_ucs2("a" * 66 + "😀" + "b" * 3)  # 71 UTF-16 units: parts of up to 67
    assert [len(p) for p in units] == [132, 10]


def test_ucs2_16_bit_reference_round_trips() -> None:
    text = "Съешь же ещё этих мягких французских булок. " * 4
    pdus = deliver_parts("+79161234567", text, WHEN, ref_bits=16, reference=0xBEEF)
    assert _text_of([p.hex for p in pdus]) == text
    concat = decodeSmsPdu(pdus[0].hex)["udh"][0]
    assert (concat.id, concat.reference, concat.parts) == (0x08, 0xBEEF, 3)


def _unpack(octets: bytes, count: int, skip_bits: int) -> list[int]:
    value = int.from_bytes(octets, "little") >> skip_bits
    return [(value >> (7 * i)) & 0x7F for i in range(count)]


def test_gsm7_with_16_bit_reference_has_no_fill_bits() -> None:
    # A 7-octet UDH is exactly 8 septets, so no fill bits. The library's decoder skips one
    # septet anyway (it drops each part's first character), so check against the spec here.
    pdus = deliver_parts("+79161234567", "ABC" * 60, WHEN, ref_bits=16, reference=0x1234)
    tpdu = bytes.fromhex(pdus[0].hex)[1:]  # no SMSC
    udl_at = 1 + 2 + 6 + 1 + 1 + 7  # first, OA len+TOA, 6 digit octets, PID, DCS, SCTS
    udl, ud = tpdu[udl_at], tpdu[udl_at + 1 :]
    assert ud[:8] == bytes([6, 0x08, 4, 0x12, 0x34, 2, 1]) + b"A"
    assert udl == 8 + 152
    septets = _unpack(ud[7:], 152, 0)
    assert septets == [s for c in gsm7_codes(("ABC" * 60)[:152]) or [] for s in c]


def test_gsm7_with_8_bit_reference_pads_one_fill_bit() -> None:
    (first, _) = deliver_parts("+79161234567", "Z" * 200, WHEN)
    tpdu = bytes.fromhex(first.hex)[1:]
    ud = tpdu[19:]
    assert tpdu[18] == 7 + 153
    assert _unpack(ud[6:], 153, 1) == [0x5A] * 153


@pytest.mark.parametrize(
    ("sender", "shown"),
    [("+79161234567", "+79161234567"), ("89161234567", "89161234567"), ("Sberbank", "Sberbank")],
)
def test_originating_address_forms(sender: str, shown: str) -> None:
    (pdu,) = deliver_parts(sender, "hi", WHEN)
    assert decodeSmsPdu(pdu.hex)["number"] == shown


@pytest.mark.parametrize("hours", [8, 0, -5, 5.75])
def test_timestamp_keeps_its_timezone(hours: float) -> None:
    when = datetime(2026, 12, 31, 23, 59, 58, tzinfo=timezone(timedelta(hours=hours)))
    (pdu,) = deliver_parts("+1", "hi", when)
    decoded = decodeSmsPdu(pdu.hex)["time"]
    assert decoded == when and decoded.utcoffset() == when.utcoffset()


def test_status_report_decodes_with_reference_recipient_and_status() -> None:
    later = WHEN + timedelta(seconds=12)
    pdu = encode_status_report(77, "+8613800138000", WHEN, later, 0x41, SMSC)
    d = decodeSmsPdu(pdu.hex)
    assert (d["type"], d["reference"], d["number"], d["status"]) == (
        "SMS-STATUS-REPORT", 77, "+8613800138000", 0x41,
    )  # fmt: skip
    assert (d["time"], d["discharge"], d["tpdu_length"]) == (WHEN, later, pdu.tpdu_length)


def test_forced_gsm7_refuses_text_outside_the_alphabet() -> None:
    with pytest.raises(ValueError):
        deliver_parts("+1", "Привет", WHEN, encoding="gsm7")
    (pdu,) = deliver_parts("+1", "plain", WHEN, encoding="ucs2")
    assert decodeSmsPdu(pdu.hex)["text"] == "plain"


def test_delivery_sequence_orders_drops_and_repeats() -> None:
    assert delivery_sequence(3, None, frozenset(), frozenset()) == [1, 2, 3]
    assert delivery_sequence(3, (3, 1, 2), frozenset({1}), frozenset({2})) == [3, 2, 2]
    for bad in [(1, 2), (1, 1, 2), (0, 1, 2)]:
        with pytest.raises(ValueError):
            delivery_sequence(3, bad, frozenset(), frozenset())
    with pytest.raises(ValueError):
        delivery_sequence(3, None, frozenset({4}), frozenset())
