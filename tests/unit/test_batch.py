"""daemon/batch: a Batch payload becomes queued messages and per-item rejections."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from daemon.batch import BadBatch, BatchLimits, mask, normalise_number, parse
from store.store import Store

LIMITS = BatchLimits(default_region="CN", max_parts=10)
NOW = datetime.fromisoformat("2026-11-23T12:00:00+08:00").timestamp()
GOOD = {"id": "good", "to": "+8613800138000", "text": "hello"}


def _batch(*messages: Any, **batch: Any) -> bytes:
    return json.dumps({"batch_id": "b-1", **batch, "messages": list(messages)},
                      ensure_ascii=False).encode()


def _one(item: dict[str, Any], **batch: Any):
    """Parse a batch of `item` plus a good message; the good one must always pass."""
    parsed = parse(_batch(item, GOOD, **batch), LIMITS, NOW)
    assert [m.hq_id for m in parsed.messages][-1:] == ["good"]
    return parsed


def _code(item: dict[str, Any], **batch: Any) -> str | None:
    parsed = _one(item, **batch)
    if len(parsed.messages) == 2:
        return None
    (rejection,) = parsed.rejected
    assert set(rejection) == {"id", "code", "reason"} and rejection["reason"]
    return rejection["code"]


# --- whole payload ------------------------------------------------------------

@pytest.mark.parametrize(("payload", "batch_id"), [
    (b"\xff\xfe not utf-8", None),
    ('{"batch_id": "x", "messages": []}'.encode("utf-16"), None),
    (b"", None),
    (b"not json", None),
    (b'{"batch_id": "b", "messages": [', None),
    (b'{"batch_id": "b", "messages": [], "priority": NaN}', None),
    (b"[1, 2]", None),
    (b'"just a string"', None),
    (b"42", None),
    (b"null", None),
    (b'{"messages": []}', None),
    (b'{"batch_id": 7, "messages": []}', None),
    (b'{"batch_id": "", "messages": []}', ""),
    (json.dumps({"batch_id": "x" * 129, "messages": []}).encode(), "x" * 129),
    (b'{"batch_id": "b"}', "b"),
    (b'{"batch_id": "b", "messages": {"id": "m"}}', "b"),
    (b'{"batch_id": "b", "messages": "m-1"}', "b"),
    (b'{"batch_id": "b", "messages": [], "template": "oops {"}', "b"),
    (b'{"batch_id": "b", "messages": [], "template": 5}', "b"),
    (b'{"batch_id": "b", "messages": [], "not_before": "2026-11-24T09:00:00"}', "b"),
    (b'{"batch_id": "b", "messages": [], "expires_at": "tomorrow"}', "b"),
    (b'{"batch_id": "b", "messages": [], "expires_at": 1764000000}', "b"),
    (b'{"batch_id": "b", "messages": [], "priority": 10}', "b"),
    (b'{"batch_id": "b", "messages": [], "priority": "5"}', "b"),
    (b'{"batch_id": "b", "messages": [], "delivery_report": "yes"}', "b"),
    (b"[" * 100_000 + b"]" * 100_000, None),
])
def test_unusable_payload_is_bad_batch(payload: bytes, batch_id: str | None) -> None:
    with pytest.raises(BadBatch) as info:
        parse(payload, LIMITS, NOW)
    assert info.value.code == "bad_batch"
    assert info.value.batch_id == batch_id
    assert info.value.reason


def test_empty_message_list_is_a_valid_batch() -> None:
    parsed = parse(_batch(), LIMITS, NOW)
    assert (parsed.batch_id, parsed.messages, parsed.rejected) == ("b-1", [], [])


# --- one item -------------------------------------------------------------------

@pytest.mark.parametrize(("item", "code"), [
    ("a string", "bad_message"),
    (None, "bad_message"),
    ({"to": "+8613800138000", "text": "x"}, "bad_message"),
    ({"id": "", "to": "+8613800138000", "text": "x"}, "bad_message"),
    ({"id": 17, "to": "+8613800138000", "text": "x"}, "bad_message"),
    ({"id": "x" * 129, "to": "+8613800138000", "text": "x"}, "bad_message"),
    ({"id": "m", "text": "x"}, "bad_message"),
    ({"id": "m", "to": 8613800138000, "text": "x"}, "bad_message"),
    ({"id": "m", "to": "+8613800138000", "text": 5}, "bad_message"),
    ({"id": "m", "to": "+8613800138000", "text": None}, "bad_message"),
    ({"id": "m", "to": "+8613800138000", "text": "x", "not_before": "2026-11-24T09:00:00"},
     "bad_message"),
    ({"id": "m", "to": "+8613800138000", "text": "x", "expires_at": "2026-12-01"},
     "bad_message"),
    ({"id": "m", "to": "+8613800138000", "text": "x", "expires_at": "soon"}, "bad_message"),
    ({"id": "m", "to": "+8613800138000", "text": "x", "priority": -1}, "bad_message"),
    ({"id": "m", "to": "+8613800138000", "text": "x", "priority": 10}, "bad_message"),
    ({"id": "m", "to": "+8613800138000", "text": "x", "priority": 5.0}, "bad_message"),
    ({"id": "m", "to": "+8613800138000", "text": "x", "priority": 4.5}, "bad_message"),
    ({"id": "m", "to": "+8613800138000", "text": "x", "priority": "5"}, "bad_message"),
    ({"id": "m", "to": "+8613800138000", "text": "x", "priority": True}, "bad_message"),
    ({"id": "m", "to": "+8613800138000", "text": "x", "priority": None}, "bad_message"),
    ({"id": "m", "to": "+8613800138000", "text": "x", "delivery_report": 1}, "bad_message"),
    ({"id": "m", "to": "+8613800138000", "text": "x", "urgent": "true"}, "bad_message"),
    ({"id": "m", "to": "+8613800138000", "vars": {"name": True}}, "bad_message"),
    ({"id": "m", "to": "+8613800138000", "vars": {"name": ["a"]}}, "bad_message"),
    ({"id": "m", "to": "+8613800138000", "vars": {"name": {"a": 1}}}, "bad_message"),
    ({"id": "m", "to": "+8613800138000", "vars": {"name": None}}, "bad_message"),
    ({"id": "m", "to": "+8613800138000", "vars": ["name"]}, "bad_message"),
    ({"id": "m", "to": "+8613800138000", "vars": {"name": "x"}, "template": "{"},
     "bad_message"),
    ({"id": "m", "to": "12345", "text": "x"}, "invalid_number"),
    ({"id": "m", "to": "", "text": "x"}, "invalid_number"),
    ({"id": "m", "to": "not a number", "text": "x"}, "invalid_number"),
    ({"id": "m", "to": "+86138", "text": "x"}, "invalid_number"),
    ({"id": "m", "to": "+8613800138000", "text": ""}, "empty_text"),
    ({"id": "m", "to": "+8613800138000", "text": "  \n\t "}, "empty_text"),
    ({"id": "m", "to": "+8613800138000", "template": "{name}", "vars": {"name": " "}},
     "empty_text"),
    ({"id": "m", "to": "+8613800138000", "text": "a" * 1531}, "too_long"),
    ({"id": "m", "to": "+8613800138000", "text": "中" * 671}, "too_long"),
    ({"id": "m", "to": "+8613800138000", "text": "€" * 766}, "too_long"),
    ({"id": "m", "to": "+8613800138000"}, "template_var_missing"),
    ({"id": "m", "to": "+8613800138000", "vars": {"other": "x"}}, "template_var_missing"),
    ({"id": "m", "to": "+8613800138000", "text": "x", "expires_at": "2026-11-23T12:00:00+08:00"},
     "expired"),
    ({"id": "m", "to": "+8613800138000", "text": "x", "expires_at": "2026-11-23T03:59:59Z"},
     "expired"),
    # fine: limits, overrides and ignored extras
    ({"id": "m", "to": "+8613800138000", "text": "a" * 1530}, None),
    ({"id": "m", "to": "+8613800138000", "text": "中" * 670}, None),
    ({"id": "m", "to": "+8613800138000", "vars": {"name": "x", "unused": None}}, None),
    ({"id": "m", "to": "+8613800138000", "text": "x", "expires_at": "2026-11-23T04:00:01Z"},
     None),
    ({"id": "m", "to": "+8613800138000", "text": "x", "priority": 0}, None),
    ({"id": "m", "to": "+8613800138000", "text": "x", "priority": 9}, None),
    ({"id": "m", "to": "+8613800138000", "text": "x", "not_before": None}, None),
])
def test_each_bad_item_gets_its_contract_code_and_the_good_one_passes(
    item: Any, code: str | None
) -> None:
    assert _code(item, template="Hi {name}") == code


def test_rejection_names_the_item_or_its_position() -> None:
    parsed = parse(_batch({"id": "m-1", "to": "bad"}, {"to": "bad"}, 5), LIMITS, NOW)
    assert [r["id"] for r in parsed.rejected] == ["m-1", "#1", "#2"]


def test_many_bad_items_never_spoil_the_good_ones() -> None:
    items = [{"id": f"ok-{i}", "to": "13900139000", "text": f"n{i}"} for i in range(5)]
    mixed = [items[0], {"id": "x"}, items[1], 7, items[2], {"id": "y", "to": "1", "text": "t"},
             items[3], {"id": "z", "to": "13900139000", "text": ""}, items[4]]
    parsed = parse(_batch(*mixed), LIMITS, NOW)
    assert [m.hq_id for m in parsed.messages] == [f"ok-{i}" for i in range(5)]
    assert [r["code"] for r in parsed.rejected] == [
        "bad_message", "bad_message", "invalid_number", "empty_text"]


# --- values ---------------------------------------------------------------------

@pytest.mark.parametrize(("raw_value", "inserted"), [
    ("1.50", "1.50"),
    ("150", "150"),
    ("-3", "-3"),
    ("1e3", "1e3"),
    ("0.10", "0.10"),
    ("12345678901234567890", "12345678901234567890"),
    ('"林瓊"', "林瓊"),
    ('"{x} }}"', "{x} }}"),
])
def test_vars_are_inserted_as_written_in_the_json(raw_value: str, inserted: str) -> None:
    payload = ('{"batch_id": "b", "template": "积分{points}分", "messages": '
               '[{"id": "m", "to": "13900139000", "vars": {"points": RAW}}]}').replace(
                   "RAW", raw_value)
    (msg,) = parse(payload.encode(), LIMITS, NOW).messages
    assert msg.text == f"积分{inserted}分"


@pytest.mark.parametrize(("item", "text", "encoding", "parts"), [
    ({"text": "plain wins", "vars": {"name": "x"}}, "plain wins", "gsm7", 1),
    ({"vars": {"name": "林瓊"}}, "Hi 林瓊", "ucs2", 1),
    ({"vars": {"name": "Bob"}}, "Hi Bob", "gsm7", 1),
    ({"template": "{{{name}}}", "vars": {"name": "x"}}, "{x}", "gsm7", 1),
    ({"text": "a" * 161}, "a" * 161, "gsm7", 2),
    ({"text": "Привет" * 12}, "Привет" * 12, "ucs2", 2),
])
def test_text_template_and_plan(item: dict, text: str, encoding: str, parts: int) -> None:
    (msg,) = parse(_batch({"id": "m", "to": "13900139000", **item}, template="Hi {name}"),
                   LIMITS, NOW).messages
    assert (msg.text, msg.encoding, msg.parts) == (text, encoding, parts)


@pytest.mark.parametrize(("to", "e164"), [
    ("13900139000", "+8613900139000"),
    ("+8613800138000", "+8613800138000"),
    (" 139 0013 9000 ", "+8613900139000"),
    ("+86 139-0013-9000", "+8613900139000"),
    ("008613900139000", "+8613900139000"),
    ("+79161234567", "+79161234567"),
    ("+447911123456", "+447911123456"),
])
def test_numbers_are_normalised_to_e164_with_the_default_region(to: str, e164: str) -> None:
    (msg,) = parse(_batch({"id": "m", "to": to, "text": "x"}), LIMITS, NOW).messages
    assert msg.to == e164
    assert normalise_number(to, "CN") == e164


BATCH_LEVEL = {"not_before": "2026-11-24T09:00:00+08:00", "expires_at": "2026-11-30T00:00:00+08:00",
               "priority": 7, "delivery_report": False}


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize(("override", "expected"), [
    ({}, {"not_before": _ts("2026-11-24T09:00:00+08:00"),
          "expires_at": _ts("2026-11-30T00:00:00+08:00"), "priority": 7,
          "delivery_report": False, "urgent": False}),
    ({"not_before": "2026-11-25T01:00:00Z"}, {"not_before": _ts("2026-11-25T01:00:00+00:00")}),
    ({"expires_at": "2026-12-01T00:00:00+03:00"},
     {"expires_at": _ts("2026-12-01T00:00:00+03:00")}),
    ({"priority": 0}, {"priority": 0}),
    ({"priority": 9}, {"priority": 9}),
    ({"delivery_report": True}, {"delivery_report": True}),
    ({"urgent": True}, {"urgent": True}),
])
def test_message_fields_override_the_batch(override: dict, expected: dict) -> None:
    item = {"id": "m", "to": "13900139000", "text": "x", **override}
    (msg,) = parse(_batch(item, **BATCH_LEVEL), LIMITS, NOW).messages
    for field, value in expected.items():
        assert getattr(msg, field) == value, field


def test_defaults_without_batch_level_fields() -> None:
    (msg,) = parse(_batch({"id": "m", "to": "13900139000", "text": "x"}), LIMITS, NOW).messages
    assert (msg.priority, msg.delivery_report, msg.urgent, msg.not_before, msg.expires_at,
            msg.batch_id) == (5, True, False, None, None, "b-1")


def test_default_priority_comes_from_limits() -> None:
    limits = BatchLimits(default_region="CN", max_parts=10, default_priority=2)
    (msg,) = parse(_batch({"id": "m", "to": "13900139000", "text": "x"}), limits, NOW).messages
    assert msg.priority == 2


def test_batch_expired_at_arrival_rejects_every_message() -> None:
    parsed = parse(_batch({"id": "a", "to": "13900139000", "text": "x"},
                          expires_at="2026-11-23T11:00:00+08:00"), LIMITS, NOW)
    assert parsed.messages == []
    assert [(r["id"], r["code"]) for r in parsed.rejected] == [("a", "expired")]


@pytest.mark.parametrize("bad", [
    {"text": "hi \ud83d"},
    {"text": "\ude00"},
    {"text": "a\udfffb"},
    {"template": "Hi {name}", "vars": {"name": "x\ud83d"}},
], ids=["high-half", "low-half", "low-half-inside", "in-vars"])
def test_lone_surrogate_in_text_is_rejected_not_queued(tmp_path: Path, bad: dict) -> None:
    """JSON may escape half a surrogate pair; such a text can be neither stored nor encoded."""
    payload = json.dumps({"batch_id": "b", "messages": [
        {"id": "bad", "to": "13900139000", **bad},
        {"id": "good", "to": "13900139000", "text": "ok"}]})  # ASCII: the half is escaped
    assert "\\ud" in payload
    parsed = parse(payload.encode(), LIMITS, NOW)
    assert [m.hq_id for m in parsed.messages] == ["good"]
    assert [r["id"] for r in parsed.rejected] == ["bad"]
    store = Store(tmp_path)
    try:
        outcome = store.accept_batch(parsed.batch_id, parsed.messages, parsed.rejected, NOW)
        assert outcome.accepted == 1
    finally:
        store.close()


def test_escaped_surrogate_pair_is_one_emoji() -> None:
    payload = (b'{"batch_id": "b", "messages": '
               b'[{"id": "m", "to": "13900139000", "text": "\\ud83d\\ude00"}]}')
    (msg,) = parse(payload, LIMITS, NOW).messages
    assert (msg.text, msg.encoding) == ("😀", "ucs2")


@pytest.mark.parametrize(("number", "masked"), [
    ("+8613800138000", "+8613******000"),
    ("13900139000", "13900***000"),
    ("+79161234567", "+7916****567"),
    ("123456789", "12345*789"),
    ("12345678", "********"),
    ("", ""),
])
def test_mask_hides_the_middle_of_a_number(number: str, masked: str) -> None:
    assert mask(number) == masked
    assert len(mask(number)) == len(number)
