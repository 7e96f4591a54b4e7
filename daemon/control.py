"""The technician's local line to the daemon: a UNIX socket, one JSON request per connection.

No MQTT needed: `smsgw status` works with the broker down, which is exactly
when a technician needs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon import logs

REQUEST_TIMEOUT_S = 5.0
MAX_REQUEST = 64 * 1024
SOCKET_MODE = 0o660  # the smsgw group may ask; others may not


class StatusUnavailable(ConnectionError):
    """No daemon answers on the control socket."""


class ControlServer:
    """Answers requests on a UNIX socket from its own thread."""

    def __init__(self, path: Path, handlers: dict[str, Callable[[dict[str, Any]], Any]]) -> None:
        self._path = path
        self._handlers = handlers
        self._log = logs.get("control")
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)

    def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        if self._path.exists() or self._path.is_symlink():
            self._path.unlink()  # left by a killed daemon; we hold the database, so it is ours
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self._path))
        os.chmod(self._path, SOCKET_MODE)
        sock.listen(8)
        self._sock = sock
        self._thread.start()

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def _serve(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(REQUEST_TIMEOUT_S)
                try:
                    reply = self._answer(_read_line(conn))
                except Exception as e:
                    self._log.exception("control_request_failed")
                    reply = {"ok": False, "error": repr(e)}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(reply, ensure_ascii=False).encode() + b"\n")

    def _answer(self, raw: bytes) -> dict[str, Any]:
        request = json.loads(raw.decode("utf-8"))
        cmd = request.get("cmd") if isinstance(request, dict) else None
        handler = self._handlers.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            return {"ok": False, "error": f"unknown request; known: {sorted(self._handlers)}"}
        return {"ok": True, "result": handler(request)}


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def request(path: Path, payload: dict[str, Any]) -> Any:
    """Send one request to the daemon at `path`; raises StatusUnavailable when none answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(REQUEST_TIMEOUT_S)
            sock.connect(str(path))
            sock.sendall(json.dumps(payload).encode() + b"\n")
            reply = json.loads(_read_line(sock).decode("utf-8"))
    except FileNotFoundError as e:
        raise StatusUnavailable(f"no control socket at {path}") from e
    except (ConnectionRefusedError, TimeoutError, OSError, ValueError) as e:
        raise StatusUnavailable(f"{path}: {e}") from e
    if not reply.get("ok"):
        raise StatusUnavailable(str(reply.get("error")))
    return reply["result"]


def request_status(path: Path) -> dict[str, Any]:
    return dict(request(path, {"cmd": "status"}))


def render_status(status: dict[str, Any], as_json: bool) -> str:
    """The status as aligned text for a terminal, or as JSON."""
    if as_json:
        return json.dumps(status, ensure_ascii=False, indent=2)
    q = status["queue"]
    lines = [
        f"gateway  online={status['online']}  paused={status.get('paused')}  "
        f"version={status['version']}  started={status['started_at']}",
        f"queue    queued={q['queued']}  scheduled={q['scheduled']}  sending={q['sending']}  "
        f"unpublished={status['unpublished']}",
        "",
    ]
    columns = ("port", "state", "imei", "iccid", "operator", "signal", "registered",
               "sent_today", "last_error")
    rows = [[str(m.get(c) if m.get(c) is not None else "-") for c in columns]
            for m in status["modems"]]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
              for i, c in enumerate(columns)]
    lines.append("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)
