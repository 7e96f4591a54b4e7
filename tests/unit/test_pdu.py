"""modem/pdu: alphabet, split points, and PDUs checked with an independent decoder."""

from __future__ import annotations

import math

import pytest
from gsmmodem.pdu import Concatenation, decodeSmsPdu
from hypothesis import given, settings
from hypothesis import strategies as st

from modem.pdu import DCS_GSM7, GSM7_BASIC, GSM7_EXTENSION, Encoding, encode_submit, plan_text
from modem.sim.network import decode_submit

MAX_USER_DATA_OCTETS = 140
GSM7 = Encoding.GSM7
UCS2 = Encoding.UCS2
EMOJI = "😀"


def _fix_surrogates(text: str) -> str:
    return text.encode("utf-16", "surrogatepass").decode("utf-16")


def _user_data_octets(pdu_hex: str, tpdu_length: int) -> int:
    """Octets of TP-UD: the TPDU minus first, MR, address, PID, DCS, VP and UDL."""
    tpdu = bytes.fromhex(pdu_hex)[1:]
    digits = tpdu[2]
    return tpdu_length - (8 + math.ceil(digits / 2))


def _decode_all(to: str, text: str, reference: int = 7, status_report: bool = True) -> list[dict]:
    plan = plan_text(text)
    pdus = encode_submit(to, plan, reference, status_report)
    assert len(pdus) == plan.count
    decoded = []
    for pdu in pdus:
        d = decodeSmsPdu(pdu.hex)
        assert d["type"] == "SMS-SUBMIT"
        assert d["tpdu_length"] == pdu.tpdu_length
        assert len(pdu.hex) // 2 - 1 == pdu.tpdu_length  # one SMSC octet (00) in front
        assert _user_data_octets(pdu.hex, pdu.tpdu_length) <= MAX_USER_DATA_OCTETS
        tpdu = bytes.fromhex(pdu.hex)[1:]
        d["srr"] = bool(tpdu[0] & 0x20)
        d["own_text"] = decode_submit(pdu.hex, pdu.tpdu_length).text
        d["dcs"] = tpdu[4 + math.ceil(tpdu[2] / 2) + 1]
        decoded.append(d)
    return decoded


def _text_of(decoded: list[dict]) -> str:
    return "".join(_from_decoder(d) for d in decoded)


def _from_decoder(d: dict) -> str:
    if d["dcs"] == DCS_GSM7:
        # python-gsmmodem's GSM-7 decoding drops a final "@" and reads 0x5F as "`":
        # take the simulator's own unpacking (modem/sim, independent of modem/pdu.py).
        return str(d["own_text"])
    return _fix_surrogates(d["text"])


# --- plan_text: alphabet ------------------------------------------------------

@pytest.mark.parametrize(("text", "encoding"), [
    ("Hello, world!", GSM7),
    ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¡ÄÖÑÜ§¿äöñüà", GSM7),
    ("Price 5€ [a] {b} ^c ~d |e \\f", GSM7),
    ("Привет, мир", UCS2),
    ("尊敬的林瓊，您的积分150分", UCS2),
    ("Hello 😀", UCS2),
    ("Hello €😀", UCS2),
    ("ç", UCS2),  # only the capital Ç is in the basic table
    ("back`tick", UCS2),
    ("", GSM7),
])
def test_plan_text_picks_gsm7_only_when_every_character_fits(text: str, encoding: Encoding) -> None:
    plan = plan_text(text)
    assert plan.encoding is encoding
    assert "".join(plan.parts) == text


# --- plan_text: split points --------------------------------------------------

@pytest.mark.parametrize(("text", "lengths"), [
    ("a" * 160, [160]),
    ("a" * 161, [153, 8]),
    ("a" * 153 * 2, [153, 153]),
    ("a" * (153 * 2 + 1), [153, 153, 1]),
    ("€" * 80, [80]),  # 160 septets
    ("€" * 81, [76, 5]),  # 152 septets per part: a 77th € would need 154
    ("a" * 158 + "€", [159]),  # exactly 160 septets
    ("a" * 159 + "€", [153, 7]),  # 161 septets
    ("a" * 152 + "€" + "a" * 10, [152, 11]),  # the € and its escape move together
    ("a" * 151 + "€" + "a" * 10, [152, 10]),  # 151 + 2 = 153 septets fit exactly
    ("[]{}^~|\\" * 20, [76, 76, 8]),
])
def test_gsm7_split_points(text: str, lengths: list[int]) -> None:
    plan = plan_text(text)
    assert plan.encoding is GSM7
    assert [len(p) for p in plan.parts] == lengths
    assert plan.count == len(lengths)
    assert "".join(plan.parts) == text


@pytest.mark.parametrize(("text", "lengths"), [
    ("中" * 70, [70]),
    ("中" * 71, [67, 4]),
    ("中" * 67 * 2, [67, 67]),
    ("中" * (67 * 2 + 1), [67, 67, 1]),
    ("П" * 70, [70]),
    ("П" * 71, [67, 4]),
    (EMOJI * 35, [35]),  # 70 UTF-16 units
    (EMOJI * 36, [33, 3]),  # 66 units per part: a 34th emoji would need 68
    ("中" * 68 + EMOJI, [69]),  # exactly 70 units
    ("中" * 69 + EMOJI, [67, 3]),  # 71 units
    ("中" * 66 + EMOJI + "中" * 5, [66, 6]),  # the surrogate pair stays together
    ("中" * 65 + EMOJI + "中" * 5, [66, 5]),  # 65 + 2 = 67 units fit exactly
])
def test_ucs2_split_points(text: str, lengths: list[int]) -> None:
    plan = plan_text(text)
    assert plan.encoding is UCS2
    assert [len(p) for p in plan.parts] == lengths
    assert "".join(plan.parts) == text


# --- encode_submit, decoded by python-gsmmodem --------------------------------

TEXTS = [
    "Hello, world!",
    "Ваш код: 1234",
    "尊敬的林瓊，您的积分150分将于11月30日到期。回复TD退订",
    "€ [ ] { } ^ ~ | \\",
    "a" * 160,
    "a" * 161,
    "a" * 153 * 2,
    "a" * 152 + "€" + "b" * 10,
    "€" * 81,
    "中" * 70,
    "中" * 71,
    "中" * 67 * 2,
    "中" * 66 + EMOJI + "中" * 5,
    EMOJI * 36,
    "Привет, мир! " * 12,
    "The quick brown fox jumps over the lazy dog. " * 8,
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà",
]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("to", ["+8613800138000", "13800138000", "+79161234567", "+447700900123"])
def test_encode_submit_round_trips_through_independent_decoder(text: str, to: str) -> None:
    decoded = _decode_all(to, text)
    assert _text_of(decoded) == text
    for d in decoded:
        assert d["number"] == to


@pytest.mark.parametrize(("text", "reference"), [
    ("a" * 161, 0),
    ("a" * 153 * 3, 255),
    ("中" * 71, 42),
    (EMOJI * 36, 1),
    ("€" * 400, 200),
])
def test_multipart_pdus_carry_reference_and_part_numbers(text: str, reference: int) -> None:
    decoded = _decode_all("+8613800138000", text, reference=reference)
    total = len(decoded)
    assert total > 1
    for number, d in enumerate(decoded, start=1):
        concat = [h for h in d.get("udh", []) if isinstance(h, Concatenation)]
        assert len(concat) == 1
        assert (concat[0].reference, concat[0].parts, concat[0].number) == (
            reference, total, number)


@pytest.mark.parametrize("text", ["Hello", "中文", "a" * 160, "中" * 70])
def test_single_part_pdus_have_no_concatenation_header(text: str) -> None:
    (d,) = _decode_all("+8613800138000", text)
    assert not [h for h in d.get("udh", []) if isinstance(h, Concatenation)]


@pytest.mark.parametrize("status_report", [True, False])
@pytest.mark.parametrize("text", ["Hello", "a" * 300, "中文" * 50])
def test_status_report_request_bit_follows_argument(text: str, status_report: bool) -> None:
    decoded = _decode_all("+8613800138000", text, status_report=status_report)
    assert [d["srr"] for d in decoded] == [status_report] * len(decoded)


@pytest.mark.parametrize("reference", [-1, 256, 1000])
def test_reference_outside_one_octet_is_refused(reference: int) -> None:
    with pytest.raises(ValueError):
        encode_submit("+8613800138000", plan_text("hi"), reference, False)


@pytest.mark.parametrize("to", ["+86 138", "abc", "", "+"])
def test_destination_that_is_not_digits_is_refused(to: str) -> None:
    with pytest.raises(ValueError):
        encode_submit(to, plan_text("hi"), 1, False)


@pytest.mark.parametrize(("text", "user_data_hex"), [
    ("§", "015F"),  # septet 0x5F (python-gsmmodem decodes it as "`")
    ("\f", "021B05"),  # ESC 0x0A (python-gsmmodem drops it)
    ("€", "029B32"),  # ESC 0x65
    ("@", "0100"),
])
def test_characters_the_decoder_mishandles_are_encoded_per_23038(
    text: str, user_data_hex: str
) -> None:
    (pdu,) = encode_submit("+8613800138000", plan_text(text), 1, False)
    assert pdu.hex.endswith(user_data_hex)


# --- properties ---------------------------------------------------------------

_ALPHABET = (
    [ch for ch in GSM7_BASIC if ch != "\x1b"]
    + [ch for ch in GSM7_EXTENSION if ch != "\f"]  # the decoder drops ESC 0x0A
    + [chr(c) for c in range(0x0410, 0x0450)]  # Cyrillic А..я
    + list("中文尊敬的您积分将于到期回复退订林瓊")
    + ["😀", "🎉", "👍", "🚀", "𠀀"]
)
mixed_text = st.text(alphabet=st.sampled_from(_ALPHABET), min_size=1, max_size=500)
_GSM_ONLY = [ch for ch in _ALPHABET if ch in GSM7_BASIC or ch in GSM7_EXTENSION]
gsm_text = st.text(alphabet=st.sampled_from(_GSM_ONLY), min_size=1, max_size=700)


@settings(max_examples=300, deadline=None)
@given(text=mixed_text, reference=st.integers(0, 255), status_report=st.booleans())
def test_property_mixed_text_round_trips_and_every_part_fits(
    text: str, reference: int, status_report: bool
) -> None:
    decoded = _decode_all("+8613800138000", text, reference, status_report)
    assert _text_of(decoded) == text
    assert all(d["srr"] is status_report for d in decoded)


@settings(max_examples=300, deadline=None)
@given(text=gsm_text)
def test_property_gsm7_text_stays_gsm7_and_round_trips(text: str) -> None:
    plan = plan_text(text)
    assert plan.encoding is GSM7
    decoded = _decode_all("13800138000", text)
    assert _text_of(decoded) == text
