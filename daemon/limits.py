"""Size limits on batches from [security], checked before the expensive work.

The payload size is checked before anything is decoded; the message count before any
message is validated (and without decoding at all when the payload is too small to hold
that many); the text length per message after the template is filled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.batch import ParsedBatch, decode
from daemon.signing import BatchRefused

# The shortest message a batch can hold, {"id":"x","to":"1"}, so a payload under
# max_messages * this cannot hold too many and is not decoded twice.
MIN_MESSAGE_BYTES = 20


@dataclass(frozen=True)
class InputLimits:
    max_payload_bytes: int
    max_messages: int
    max_text_chars: int


def check_size(payload: bytes, limits: InputLimits) -> None:
    """Raise BatchRefused(payload_too_large) before anything is decoded."""
    if len(payload) > limits.max_payload_bytes:
        raise BatchRefused("payload_too_large", f"{len(payload)} bytes; at most "
                           f"{limits.max_payload_bytes} are accepted")


def check_count(payload: bytes, limits: InputLimits) -> dict[str, Any] | None:
    """Raise BatchRefused(too_many_messages) before any message is validated.

    Returns the decoded document when it had to decode it, for the parser to reuse.
    """
    if len(payload) < limits.max_messages * MIN_MESSAGE_BYTES:
        return None
    doc = decode(payload)  # BadBatch when it is not JSON: the parser says the same
    count_messages(doc, limits)
    return doc


def count_messages(doc: dict[str, Any], limits: InputLimits) -> None:
    """Raise BatchRefused(too_many_messages) for a decoded batch with too many."""
    items = doc.get("messages")
    if isinstance(items, list) and len(items) > limits.max_messages:
        raise BatchRefused("too_many_messages", f"{len(items)} messages; at most "
                           f"{limits.max_messages} per batch")


def check_texts(parsed: ParsedBatch, limits: InputLimits) -> ParsedBatch:
    """Move messages longer than max_text_chars to the rejected list, as `too_long`."""
    over = [m for m in parsed.messages if len(m.text) > limits.max_text_chars]
    if not over:
        return parsed
    rejected = list(parsed.rejected)
    for m in over:
        rejected.append({"id": m.hq_id, "code": "too_long", "reason": (
            f"{len(m.text)} characters; at most {limits.max_text_chars} are allowed")})
    kept = [m for m in parsed.messages if len(m.text) <= limits.max_text_chars]
    return ParsedBatch(parsed.batch_id, kept, rejected)
