"""daemon/validator.py: a child process gives the same verdicts as validating in-process."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from daemon.batch import BatchLimits, parse
from daemon.limits import InputLimits
from daemon.validator import Validator, ValidatorFailed

NOW = 1_790_000_000.0
LIMITS = BatchLimits("CN", 3)


@pytest.fixture(scope="module")
def validator() -> Iterator[Validator]:
    v = Validator()
    v.warm_up()
    yield v


def _payload(messages: list[dict[str, Any]], **batch: Any) -> bytes:
    return json.dumps({"batch_id": "b", "messages": messages, **batch},
                      ensure_ascii=False).encode()


def _messages(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"id": f"m{i}", "to": f"+86138{i:08d}", "vars": {"n": i}}
                                 for i in range(n)]
    out[3] = {"id": "bad-number", "to": "+86123", "vars": {"n": 1}}
    out[7] = {"id": "no-var", "to": "+8613800138000", "vars": {}}
    out[-1] = "not an object"
    return out


def test_the_chunks_add_up_to_what_parse_gives(validator: Validator) -> None:
    payload = _payload(_messages(12_001), template="积分 {n}")
    with validator.validate(payload, LIMITS, None, NOW) as (verdict, chunks):
        assert verdict.batch_id == "b" and verdict.bad is None and verdict.refused is None
        got = list(chunks)
    assert len(got) == 3  # 5,000 a chunk
    expected = parse(payload, LIMITS, NOW)
    assert [m for messages, _ in got for m in messages] == expected.messages
    assert [r for _, rejected in got for r in rejected] == expected.rejected
    assert {r["code"] for r in expected.rejected} == {
        "invalid_number", "template_var_missing", "bad_message"}


@pytest.mark.parametrize(("payload", "code"), [
    (b"not json", "bad_batch"),
    (_payload([], template="{"), "bad_batch"),
    (_payload([{"id": "x", "to": "+8613800138000", "text": "t"}] * 3), "too_many_messages"),
])
def test_a_batch_refused_whole_is_answered_before_any_chunk(
        validator: Validator, payload: bytes, code: str) -> None:
    limits = InputLimits(max_payload_bytes=10**6, max_messages=2, max_text_chars=100)
    with validator.validate(payload, LIMITS, limits, NOW) as (verdict, chunks):
        error = verdict.bad or verdict.refused
        assert error is not None and error.code == code
        assert list(chunks) == []


def test_a_child_that_dies_is_a_failure_the_intake_can_fall_back_from(
        validator: Validator) -> None:
    payload = _payload(_messages(30_000), template="{n}")
    with pytest.raises(ValidatorFailed), \
            validator.validate(payload, LIMITS, None, NOW) as (_verdict, chunks):
        assert next(chunks)[0]
        (child,) = [c for c in multiprocessing.active_children() if c.name == "smsgw-validate"]
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        list(chunks)
