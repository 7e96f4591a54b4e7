"""HQ commands on smsgw/{gw}/cmd, each answered with a CommandReply."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daemon import logs
from daemon.batch import BadBatch, Rejected, decode, has_lone_surrogate, normalise_number

if TYPE_CHECKING:
    from daemon.gateway import Gateway

MAX_IDS = 10_000
_log = logs.get("commands")


class CommandFailed(ValueError):
    """A command that cannot be carried out; `code` goes into the reply."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def handle_command(gw: Gateway, payload: bytes) -> dict[str, Any] | None:
    """Carry out one command; returns the reply body (None when nobody can be answered)."""
    try:
        doc = decode(payload)
    except BadBatch as e:
        _log.warning("bad_command", reason=e.reason)
        return {"cmd_id": None, "ok": False, "error": {"code": "bad_command",
                                                        "reason": e.reason}}
    cmd_id = doc.get("cmd_id")
    if not isinstance(cmd_id, str):
        cmd_id = None
    try:
        name = doc.get("cmd")
        handler = HANDLERS.get(name) if isinstance(name, str) else None
        if handler is None:
            raise CommandFailed("unknown_command",
                                f"cmd must be one of {', '.join(sorted(HANDLERS))}")
        result = handler(gw, doc)
    except CommandFailed as e:
        return {"cmd_id": cmd_id, "ok": False, "error": {"code": e.code, "reason": e.reason}}
    except Exception as e:  # a bug in one command must not stop the gateway
        _log.exception("command_failed", cmd=doc.get("cmd"))
        return {"cmd_id": cmd_id, "ok": False, "error": {"code": "internal_error",
                                                         "reason": repr(e)}}
    _log.info("command_done", cmd=doc.get("cmd"), cmd_id=cmd_id)
    return {"cmd_id": cmd_id, "ok": True, "result": result}


def _strings(doc: dict[str, Any], key: str) -> list[str]:
    value = doc.get(key)
    if not isinstance(value, list) or not all(_clean(v) for v in value):
        raise CommandFailed("bad_command", f"{key} must be a list of strings")
    if len(value) > MAX_IDS:
        raise CommandFailed("bad_command", f"{key} has more than {MAX_IDS} items")
    return value


def _clean(value: Any) -> bool:
    """A string SQLite can store: JSON may carry half a UTF-16 pair ("\\ud800")."""
    return isinstance(value, str) and not has_lone_surrogate(value)


def _cancel(gw: Gateway, doc: dict[str, Any]) -> Any:
    outcome = gw.store.cancel(_strings(doc, "ids"), gw.clock())
    gw.publisher.wake()
    return {"cancelled": sum(1 for v in outcome.values() if v == "cancelled"),
            "ids": outcome}


def _cancel_batch(gw: Gateway, doc: dict[str, Any]) -> Any:
    batch_id = doc.get("batch_id")
    if not _clean(batch_id) or not batch_id:
        raise CommandFailed("bad_command", "batch_id must be a non-empty string")
    count = gw.store.cancel_batch(batch_id, gw.clock())
    gw.publisher.wake()
    return {"cancelled": count}


def _pause(gw: Gateway, _doc: dict[str, Any]) -> Any:
    gw.dispatcher.pause()
    gw.publish_state()
    return {"paused": True}


def _resume(gw: Gateway, _doc: dict[str, Any]) -> Any:
    gw.dispatcher.resume()
    gw.publish_state()
    return {"paused": False}


def _numbers(gw: Gateway, doc: dict[str, Any]) -> list[str]:
    numbers = []
    for raw in _strings(doc, "numbers"):
        try:
            numbers.append(normalise_number(raw, gw.settings.gateway.default_region))
        except Rejected as e:
            raise CommandFailed("invalid_number", e.reason) from e
    return numbers


def _stoplist_add(gw: Gateway, doc: dict[str, Any]) -> Any:
    outcome = gw.store.stoplist_add(_numbers(gw, doc), gw.clock())
    gw.publisher.wake()
    return outcome


def _stoplist_remove(gw: Gateway, doc: dict[str, Any]) -> Any:
    return {"removed": gw.store.stoplist_remove(_numbers(gw, doc))}


def _state(gw: Gateway, _doc: dict[str, Any]) -> Any:
    return gw.state_body(online=True)


HANDLERS: dict[str, Callable[[Gateway, dict[str, Any]], Any]] = {
    "cancel": _cancel,
    "cancel_batch": _cancel_batch,
    "pause": _pause,
    "resume": _resume,
    "state": _state,
    "stoplist_add": _stoplist_add,
    "stoplist_remove": _stoplist_remove,
}
