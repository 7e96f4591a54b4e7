"""Bodies of what HQ hears, written as outbox rows in the same transaction as the change."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from store.models import Event

TOPIC_STATUS = "status"
TOPIC_ACK = "ack"
TOPIC_EVENTS = "events"
TOPIC_STATE = "state"
TOPIC_REPLY = "reply"
TOPIC_INBOX = "inbox"


def rfc3339(epoch: float) -> str:
    """Epoch seconds as RFC 3339 with an explicit offset."""
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds")


def dumps(body: dict[str, Any]) -> str:
    """Compact JSON that keeps Chinese and Russian readable (no \\u escapes).

    A lone UTF-16 surrogate echoed from bad input (an id, a reason) cannot be
    stored as UTF-8; such a body is written with \\u escapes instead of failing.
    """
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(body, ensure_ascii=True, separators=(",", ":"))
    return text


def add(topic: str, body: dict[str, Any], retain: bool = False) -> int:
    """Queue one payload for HQ (its seq is returned); call inside the transaction that
    makes it true."""
    cursor = Event._meta.database.execute_sql(  # plain SQL: runs for every status
        "INSERT INTO event (topic, body, retain) VALUES (?, ?, ?)", (topic, dumps(body), retain))
    return int(cursor.lastrowid)


def status_body(
    hq_id: str,
    batch_id: str,
    state: str,
    at: float,
    *,
    parts: int | None = None,
    encoding: str | None = None,
    port: str | None = None,
    iccid: str | None = None,
    attempts: int | None = None,
    error: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """A MessageStatus payload; fields that do not apply are left out."""
    body: dict[str, Any] = {"id": hq_id, "batch_id": batch_id, "state": state, "at": rfc3339(at)}
    if parts is not None:
        body["parts"] = parts
    if encoding is not None:
        body["encoding"] = encoding
    if port is not None:
        body["sim"] = {"port": port, "iccid": iccid}
    if attempts:
        body["attempts"] = attempts
    if error is not None:
        body["error"] = {"code": error[0], "reason": error[1]}
    return body


def with_envelope(body: str, gw: str, seq: int) -> str:
    """Put "gw" and "seq" in front of a stored body without re-parsing it."""
    head = dumps({"gw": gw, "seq": seq})
    rest = body[1:]
    return head[:-1] + ("," + rest if rest != "}" else "}")
