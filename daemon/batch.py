"""Turn a Batch payload into messages to queue and rejections, item by item.

Pure: no I/O, no clock of its own. A bad item never spoils the good ones;
only a payload that is not a batch at all raises BadBatch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import phonenumbers

from daemon import numbers
from daemon.template import MissingVariable, TemplateSyntaxError, compile_template, placeholders
from modem.pdu import plan_text
from store.intake import NewMessage

MAX_ID_LENGTH = 128
PRIORITY_RANGE = range(0, 10)
NUMBER_CACHE = 4096
_SURROGATE = re.compile("[\ud800-\udfff]")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# A message with only these keys overrides none of the batch's settings.
_CONTENT_KEYS = frozenset({"id", "to", "text", "template", "vars"})
MASK_KEEP_HEAD = 5
MASK_KEEP_TAIL = 3


class JsonNumber:
    """A JSON number kept exactly as written, so `1.50` is inserted as `1.50`."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


class BadBatch(ValueError):
    """The payload is not a usable batch; `batch_id` is set when it could be read."""

    code = "bad_batch"

    def __init__(self, reason: str, batch_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.batch_id = batch_id


class Rejected(ValueError):
    """One message cannot be queued: `code` is the contract's error code."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class BatchLimits:
    """What the gateway's configuration allows."""

    default_region: str
    max_parts: int
    default_priority: int = 5


@dataclass(frozen=True)
class ParsedBatch:
    """The outcome of reading one batch."""

    batch_id: str
    messages: list[NewMessage]
    rejected: list[dict[str, str]]


@dataclass(frozen=True)
class _Defaults:
    template: str | None
    not_before: float | None
    expires_at: float | None
    priority: int
    delivery_report: bool


def decode(payload: bytes) -> dict[str, Any]:
    """Parse the payload into a JSON object, numbers kept as written."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadBatch(f"payload is not UTF-8 (byte {e.start})") from e
    try:
        doc = json.loads(text, parse_float=JsonNumber, parse_int=JsonNumber,
                         parse_constant=_reject_constant)
    except (json.JSONDecodeError, RecursionError, ValueError) as e:
        raise BadBatch(f"payload is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise BadBatch(f"payload is a JSON {type(doc).__name__}, not an object")
    return doc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse(payload: bytes, limits: BatchLimits, now: float,
          decoded: dict[str, Any] | None = None) -> ParsedBatch:
    """Validate every message of a Batch payload received at `now` (epoch seconds).

    `decoded` is `decode(payload)` when the caller already has it.
    """
    doc = decode(payload) if decoded is None else decoded
    header = read_header(doc, limits)
    messages: list[NewMessage] = []
    rejected: list[dict[str, str]] = []
    for chunk in parse_chunks(header, limits, now, len(header.items) or 1):
        messages += chunk.messages
        rejected += chunk.rejected
    return ParsedBatch(header.batch_id, messages, rejected)


@dataclass(frozen=True)
class Header:
    """A batch's own fields, read before any of its messages."""

    batch_id: str
    items: list[Any]
    defaults: _Defaults


def read_header(doc: dict[str, Any], limits: BatchLimits) -> Header:
    """The batch id, the message list and the batch-wide settings; raises BadBatch."""
    batch_id = doc.get("batch_id")
    if not isinstance(batch_id, str) or not batch_id or len(batch_id) > MAX_ID_LENGTH:
        raise BadBatch(f"batch_id must be a string of 1..{MAX_ID_LENGTH} characters",
                       batch_id if isinstance(batch_id, str) else None)
    if _SURROGATE.search(batch_id):
        raise BadBatch("batch_id has a lone UTF-16 surrogate")
    items = doc.get("messages")
    if not isinstance(items, list):
        raise BadBatch("messages must be a list", batch_id)
    try:
        defaults = _batch_defaults(doc, limits)
    except Rejected as e:
        raise BadBatch(e.reason, batch_id) from e
    return Header(batch_id, items, defaults)


def parse_chunks(header: Header, limits: BatchLimits, now: float,
                 size: int) -> Iterator[ParsedBatch]:
    """Validate the messages `size` at a time; each item is let go once it is read."""
    items = header.items
    for start in range(0, len(items), size):
        messages: list[NewMessage] = []
        rejected: list[dict[str, str]] = []
        for index in range(start, min(start + size, len(items))):
            item, items[index] = items[index], None
            try:
                messages.append(_message(item, header.batch_id, header.defaults, limits, now))
            except Rejected as e:
                item_id = item.get("id") if isinstance(item, dict) else None
                rejected.append({"id": item_id if isinstance(item_id, str) else f"#{index}",
                                 "code": e.code, "reason": e.reason})
        yield ParsedBatch(header.batch_id, messages, rejected)


def _batch_defaults(doc: dict[str, Any], limits: BatchLimits) -> _Defaults:
    template = doc.get("template")
    if template is not None:
        if not isinstance(template, str):
            raise Rejected("bad_batch", "template must be a string")
        try:
            placeholders(template)
        except TemplateSyntaxError as e:
            raise Rejected("bad_batch", f"template: {e}") from e
    return _Defaults(
        template=template,
        not_before=_time(doc, "not_before", "bad_batch"),
        expires_at=_time(doc, "expires_at", "bad_batch"),
        priority=_priority(doc, limits.default_priority, "bad_batch"),
        delivery_report=_flag(doc, "delivery_report", True, "bad_batch"),
    )


def _message(item: Any, batch_id: str, d: _Defaults, limits: BatchLimits,
             now: float) -> NewMessage:
    if not isinstance(item, dict):
        raise Rejected("bad_message", f"a message must be an object, not {type(item).__name__}")
    hq_id = item.get("id")
    if not isinstance(hq_id, str) or not hq_id or len(hq_id) > MAX_ID_LENGTH:
        raise Rejected("bad_message", f"id must be a string of 1..{MAX_ID_LENGTH} characters")
    if not hq_id.isascii():
        _no_lone_surrogate(hq_id, "id")
    to = item.get("to")
    if not isinstance(to, str):
        raise Rejected("bad_message", "to must be a string")
    if item.keys() <= _CONTENT_KEYS:  # the usual case: the batch's settings apply as they are
        not_before, expires_at, priority = d.not_before, d.expires_at, d.priority
        delivery_report, urgent = d.delivery_report, False
    else:
        not_before = _time(item, "not_before", "bad_message", d.not_before)
        expires_at = _time(item, "expires_at", "bad_message", d.expires_at)
        priority = _priority(item, d.priority, "bad_message")
        delivery_report = _flag(item, "delivery_report", d.delivery_report, "bad_message")
        urgent = _flag(item, "urgent", False, "bad_message")
    text = _text(item, d.template)
    number = normalise_number(to, limits.default_region)
    if expires_at is not None and expires_at <= now:
        raise Rejected("expired", "expires_at has already passed")
    plan = plan_text(text)
    if plan.count > limits.max_parts:
        raise Rejected("too_long", f"{len(text)} characters need {plan.count} {plan.encoding} "
                       f"parts; at most {limits.max_parts} are allowed")
    return NewMessage(hq_id=hq_id, batch_id=batch_id, to=number, text=text,
                      encoding=plan.encoding.value, parts=plan.count, priority=priority,
                      not_before=not_before, expires_at=expires_at,
                      delivery_report=delivery_report, urgent=urgent)


def _text(item: dict[str, Any], batch_template: str | None) -> str:
    if "text" in item:
        text = item["text"]
        if not isinstance(text, str):
            raise Rejected("bad_message", "text must be a string")
    else:
        template = item.get("template", batch_template)
        if template is None:
            raise Rejected("empty_text", "neither text nor a template")
        if not isinstance(template, str):
            raise Rejected("bad_message", "template must be a string")
        text = _fill(template, item.get("vars", {}))
    if not text.strip():
        raise Rejected("empty_text", "the text is empty")
    _no_lone_surrogate(text, "text")
    return text


def has_lone_surrogate(value: str) -> bool:
    """True when `value` holds half a UTF-16 pair, which no SMS or SQLite row can carry."""
    return _SURROGATE.search(value) is not None


def _no_lone_surrogate(value: str, what: str) -> None:
    """JSON may escape half a UTF-16 pair ("\ud83d"); no SMS and no SQLite row can carry it."""
    bad = _SURROGATE.search(value)
    if bad:
        raise Rejected("bad_message", f"{what} has a lone UTF-16 surrogate at offset "
                       f"{bad.start()}")


def _fill(template: str, raw_vars: Any) -> str:
    if not isinstance(raw_vars, dict):
        raise Rejected("bad_message", "vars must be an object")
    try:
        compiled = compile_template(template)  # once per batch: it is cached
    except TemplateSyntaxError as e:
        raise Rejected("bad_message", f"template: {e}") from e
    values: dict[str, str] = {}
    for name, value in raw_vars.items():
        if isinstance(value, str):
            values[name] = value
        elif isinstance(value, JsonNumber):
            values[name] = value.text
        elif value is not None or name in compiled.names:
            kind = "null" if value is None else type(value).__name__
            raise Rejected("bad_message", f"vars.{name} is a {kind}; only strings and numbers")
    try:
        return compiled.fill(values)
    except MissingVariable as e:
        raise Rejected("template_var_missing", f"no value for {{{e.name}}} in vars") from e


def _time(doc: dict[str, Any], key: str, code: str, default: float | None = None) -> float | None:
    if key not in doc or doc[key] is None:
        return default
    value = doc[key]
    if not isinstance(value, str):
        raise Rejected(code, f"{key} must be an RFC 3339 string")
    try:
        when = datetime.fromisoformat(value)
    except ValueError as e:
        raise Rejected(code, f"{key} {value!r} is not an RFC 3339 time") from e
    if when.tzinfo is None:
        raise Rejected(code, f"{key} {value!r} has no offset")
    return when.timestamp()


def _priority(doc: dict[str, Any], default: int, code: str) -> int:
    if "priority" not in doc:
        return default
    value = doc["priority"]
    digits = value.text if isinstance(value, JsonNumber) else ""
    if not digits.isdigit() or int(digits) not in PRIORITY_RANGE:
        raise Rejected(code, f"priority must be an integer 0..9 (got {value!r})")
    return int(digits)


def _flag(doc: dict[str, Any], key: str, default: bool, code: str) -> bool:
    if key not in doc:
        return default
    value = doc[key]
    if not isinstance(value, bool):
        raise Rejected(code, f"{key} must be true or false")
    return value


def normalise_number(raw: str, region: str) -> str:
    """E.164 form of `raw` read in `region`; raises Rejected(invalid_number)."""
    number = _parse_number(raw.strip(), region)
    if number is None:
        raise Rejected("invalid_number", f"{mask(raw)} is not a valid number for {region}")
    return number


@lru_cache(maxsize=NUMBER_CACHE)
def _parse_number(raw: str, region: str) -> str | None:
    split = _split_e164(raw)
    if split is not None:
        # "+<cc><national>" without a leading zero is already its own E.164 form.
        return raw if numbers.is_valid_national(*split) else None
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not numbers.is_valid(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _split_e164(raw: str) -> tuple[int, str] | None:
    """Fast path for "+<cc><national>" (most of HQ's numbers): (cc, national digits).

    parse() costs ~19 us a number, a third of a 100,000-message batch's budget;
    this form needs none of its normalising. Anything else -> None.
    """
    if not _E164.fullmatch(raw):
        return None
    cc_len = _country_code_length(raw[1:4])
    if cc_len is None or raw[1 + cc_len] == "0":
        return None  # leading zeros (Italy...) need parse()'s bookkeeping
    return int(raw[1 : 1 + cc_len]), raw[1 + cc_len :]


@lru_cache(maxsize=1000)
def _country_code_length(head: str) -> int | None:
    """How many of these three leading digits are a country calling code (ITU codes are
    prefix-free), or None."""
    for cc_len in (1, 2, 3):
        if int(head[:cc_len]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return cc_len
    return None


def mask(number: str) -> str:
    """A number with its middle hidden, for logs at info level: +8613******000."""
    if len(number) <= MASK_KEEP_HEAD + MASK_KEEP_TAIL:
        return "*" * len(number)
    hidden = len(number) - MASK_KEEP_HEAD - MASK_KEEP_TAIL
    return number[:MASK_KEEP_HEAD] + "*" * hidden + number[-MASK_KEEP_TAIL:]
