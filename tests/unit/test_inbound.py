"""Decoding what modems hand up: SMS-DELIVER parts, status reports, unsolicited lines."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modem.inbound import (
    InlineReport,
    NewMessageNotice,
    StoredReportNotice,
    UndecodablePdu,
    decode_deliver,
    decode_report,
    parse_notices,
    split_unsolicited,
)
from modem.sim.deliver import deliver_parts, encode_status_report

WHEN = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", [
    "STOP", "0000000@", "ends with @", "€ [ ] { } ^ ~ | \\ § braces", "x" * 300 + "@",
    "Добрый день! " * 20, "您好，请问积分什么时候到期？" * 8, "emoji 😀 " * 20, "退订",
])
@pytest.mark.parametrize("ref_bits", [8, 16])
def test_deliver_parts_decode_to_the_text_the_network_sent(text: str, ref_bits: int) -> None:
    parts = deliver_parts("+79161234567", text, WHEN, ref_bits=ref_bits, reference=300)
    decoded = [decode_deliver(p.hex) for p in parts]
    assert "".join(d.text for d in sorted(decoded, key=lambda d: d.number)) == text
    assert {d.sender for d in decoded} == {"+79161234567"}
    assert {d.total for d in decoded} == {len(parts)}
    if len(parts) > 1:
        assert len({d.reference for d in decoded}) == 1
    else:
        assert decoded[0].reference is None
    assert len({d.fingerprint for d in decoded}) == len(parts)


def test_a_status_report_names_the_reference_and_the_outcome() -> None:
    pdu = encode_status_report(42, "+8613800138000", WHEN, WHEN, 0x00)
    report = decode_report(pdu.hex)
    assert (report.mr, report.recipient, report.delivered, report.pending) == (
        42, "+8613800138000", True, False)
    failed = decode_report(encode_status_report(7, "+8613800138000", WHEN, WHEN, 0x41).hex)
    assert not failed.delivered and not failed.pending
    assert decode_report(encode_status_report(7, "+86138", WHEN, WHEN, 0x20).hex).pending


def test_a_report_is_not_a_message_and_garbage_is_neither() -> None:
    report = encode_status_report(1, "+8613800138000", WHEN, WHEN, 0).hex
    with pytest.raises(UndecodablePdu):
        decode_deliver(report)
    with pytest.raises(UndecodablePdu):
        decode_report("00")


@pytest.mark.parametrize(("lines", "notices", "noise"), [
    (['+CMTI: "ME",3'], [NewMessageNotice("ME", 3)], []),
    (['+CMTI: "SM",12', "^RSSI: 14"], [NewMessageNotice("SM", 12)], ["^RSSI: 14"]),
    (['+CDSI: "SR",0'], [StoredReportNotice("SR", 0)], []),
    (["+CDS: 25", "0006"], [InlineReport("0006")], []),
    (["+CDS: 25"], [], ["+CDS: 25"]),
    (['+QIND: "csq",20,99'], [], ['+QIND: "csq",20,99']),
])
def test_unsolicited_groups_are_sorted_into_notices_and_noise(
        lines: list[str], notices: list[object], noise: list[str]) -> None:
    assert parse_notices(lines) == (notices, noise)


def test_notifications_filed_under_a_command_are_pulled_out_of_its_answer() -> None:
    answer, unsolicited = split_unsolicited(
        ["+CSQ: 21,0", '+CMTI: "ME",4', "+CDS: 25", "07911326040000F0", "OK"])
    assert answer == ["+CSQ: 21,0", "OK"]
    assert unsolicited == ['+CMTI: "ME",4', "+CDS: 25", "07911326040000F0"]


def test_a_commands_own_answer_is_kept_even_when_the_prefix_can_come_unasked() -> None:
    answer, unsolicited = split_unsolicited(["+CPIN: READY", "+CMTI: \"ME\",1", "OK"],
                                            own="+CPIN:")
    assert answer == ["+CPIN: READY", "OK"]
    assert unsolicited == ['+CMTI: "ME",1']
