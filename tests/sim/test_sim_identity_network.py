"""Identities and the simulated network: Luhn, determinism, decoding and reassembly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modem.sim.errors import InvalidPdu
from modem.sim.identity import (
    iccid_ef_hex,
    luhn_digit,
    luhn_valid,
    modem_imei,
    sim_identity,
)
from modem.sim.network import Network, Sender, decode_submit
from tests.sim.sim_helpers import library_pdus, ucs2_pdu

SENDER = Sender("ttyGSM3", "867695031910978", "8986001234567890128")


@pytest.mark.parametrize(("body", "digit"), [("49015420323751", "8"), ("7992739871", "3")])
def test_luhn_digit_known_values(body: str, digit: str) -> None:
    assert luhn_digit(body) == digit


@pytest.mark.parametrize("index", range(8))
def test_identities_are_well_formed(index: int) -> None:
    imei = modem_imei(1, index, "sim800")
    assert len(imei) == 15 and luhn_valid(imei)
    sim = sim_identity(1, index)
    assert len(sim.iccid) == 19 and sim.iccid.startswith("8986") and luhn_valid(sim.iccid)
    assert len(sim.imsi) == 15 and sim.imsi[:5] in ("46000", "46001")
    expected = {"46000": "CHINA MOBILE", "46001": "CHN-UNICOM"}[sim.imsi[:5]]
    assert sim.operator == expected
    assert sim.iccid[4:6] == {"46000": "00", "46001": "01"}[sim.imsi[:5]]
    assert sim.msisdn is None or sim.msisdn.startswith("+86")


def test_identities_are_deterministic_and_distinct() -> None:
    assert sim_identity(5, 2) == sim_identity(5, 2)
    assert modem_imei(5, 2, "quectel") == modem_imei(5, 2, "quectel")
    iccids = {sim_identity(5, i).iccid for i in range(64)}
    assert len(iccids) == 64
    assert sim_identity(5, 2) != sim_identity(6, 2)


def test_iccid_ef_is_nibble_swapped_and_f_padded() -> None:
    assert iccid_ef_hex("8986001234567890123") == "986800214365870921F3"


def test_decode_submit_reads_the_library_encoding() -> None:
    (pdu, length), *_ = library_pdus("€ [ ] { } ^ ~ | \\")
    part = decode_submit(pdu, length)
    assert part.text == "€ [ ] { } ^ ~ | \\"
    assert (part.to, part.encoding, part.concat) == ("+8613800138000", "gsm7", None)


@pytest.mark.parametrize("pdu", ["", "00", "0001", "00210011"])
def test_decode_submit_rejects_garbage(pdu: str) -> None:
    with pytest.raises(InvalidPdu):
        decode_submit(pdu, len(pdu) // 2 - 1)


def _journal(directory: Path) -> list[dict[str, object]]:
    path = directory / "network.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_parts_arriving_out_of_order_make_one_record(tmp_path: Path) -> None:
    network = Network(tmp_path, clock=lambda: "2026-01-01T00:00:00Z")
    text = "Съешь же ещё этих мягких французских булок, да выпей чаю. " * 3
    parts = [decode_submit(p, n) for p, n in library_pdus(text, reference=9)]
    assert len(parts) == 3
    for part, mr in zip(reversed(parts), (12, 11, 10), strict=True):
        network.submit(SENDER, part, mr)
    network.close()
    (record,) = _journal(tmp_path)
    assert record == {
        "port": "ttyGSM3", "imei": SENDER.imei, "iccid": SENDER.iccid, "to": "+8613800138000",
        "text": text, "encoding": "ucs2", "parts": 3, "mr": [10, 11, 12],
        "status_report_requested": True, "at": "2026-01-01T00:00:00Z",
    }  # fmt: skip


def test_same_reference_from_two_sims_stays_apart(tmp_path: Path) -> None:
    network = Network(tmp_path)
    other = Sender("ttyGSM4", "861675038206931", "8986010000000000005")
    a = [decode_submit(p, n) for p, n in library_pdus("A" * 200, reference=1)]
    b = [decode_submit(p, n) for p, n in library_pdus("B" * 200, reference=1)]
    network.submit(SENDER, a[0], 1)
    network.submit(other, b[0], 1)
    network.submit(other, b[1], 2)
    network.submit(SENDER, a[1], 2)
    assert network.counters("ttyGSM3").pdus == 2
    assert network.counters("ttyGSM4").messages == 1
    network.close()
    assert [r["text"] for r in _journal(tmp_path)] == ["B" * 200, "A" * 200]


def test_non_bmp_text_split_across_parts_is_rejoined(tmp_path: Path) -> None:
    network = Network(tmp_path)
    payload = "ok 😀 done".encode("utf-16-be")
    cut = 6  # inside the surrogate pair of the emoji
    first = decode_submit(*ucs2_pdu(payload[:cut], concat=(0x42, 2, 1)))
    second = decode_submit(*ucs2_pdu(payload[cut:], concat=(0x42, 2, 2)))
    network.submit(SENDER, first, 1)
    network.submit(SENDER, second, 2)
    network.close()
    (record,) = _journal(tmp_path)
    assert record["text"] == "ok 😀 done"
    assert (record["parts"], record["encoding"]) == (2, "ucs2")
