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
MAX_CONCURRENT = 8  # a slow request (USSD) must not block `smsgw status`


class StatusUnavailable(ConnectionError):
    """No daemon answers on the control socket."""


class RequestError(ValueError):
    """A request the daemon understood but cannot carry out; the message is for the technician."""


class RequestFailed(RuntimeError):
    """The daemon answered a request with an error."""


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
        slots = threading.BoundedSemaphore(MAX_CONCURRENT)
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if not slots.acquire(timeout=REQUEST_TIMEOUT_S):
                conn.close()  # too many at once: the caller says "not answering"
                continue
            threading.Thread(target=self._one, args=(conn, slots), name="control-request",
                             daemon=True).start()

    def _one(self, conn: socket.socket, slots: threading.BoundedSemaphore) -> None:
        """Answer one connection (on its own short-lived thread)."""
        try:
            with conn:
                conn.settimeout(REQUEST_TIMEOUT_S)
                try:
                    reply = self._answer(_read_line(conn))
                except RequestError as e:
                    reply = {"ok": False, "error": str(e)}
                except Exception as e:
                    self._log.exception("control_request_failed")
                    reply = {"ok": False, "error": repr(e)}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
        finally:
            slots.release()

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


def request(path: Path, payload: dict[str, Any], timeout: float = REQUEST_TIMEOUT_S) -> Any:
    """Send one request to the daemon at `path`.

    Raises StatusUnavailable when no daemon answers, RequestFailed when it answers with an error.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(payload).encode() + b"\n")
            reply = json.loads(_read_line(sock).decode("utf-8"))
    except FileNotFoundError as e:
        raise StatusUnavailable(f"no control socket at {path}") from e
    except PermissionError as e:
        raise StatusUnavailable(f"{path}: permission denied (are you in the smsgw group?)") from e
    except (ConnectionRefusedError, TimeoutError, OSError, ValueError) as e:
        raise StatusUnavailable(f"{path}: {e}") from e
    if not isinstance(reply, dict):
        raise StatusUnavailable(f"{path}: not a daemon reply")
    if not reply.get("ok"):
        raise RequestFailed(str(reply.get("error")))
    return reply["result"]


def request_status(path: Path) -> dict[str, Any]:
    return dict(request(path, {"cmd": "status"}))


# --- rendering for the terminal (the `smsgw` commands) --------------------------


def render_json(result: Any) -> str:
    return json.dumps(result, ensure_ascii=False, indent=2)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).replace("\n", " ")


def render_table(columns: list[tuple[str, str]], rows: list[dict[str, Any]]) -> str:
    """Rows as aligned columns; `columns` is (key, HEADER) pairs; missing values are "-"."""
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max([len(header), *(len(r[i]) for r in cells)])
              for i, (_, header) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def against(sent: int, limit: int) -> str:
    """"3/10" (sent against a limit), or "3" where no limit applies."""
    return f"{sent}/{limit}" if limit else str(sent)


def with_counts_shown(row: dict[str, Any]) -> dict[str, Any]:
    """A row of `smsgw sims` with its counts as "sent/limit" under `today` and `hour`."""
    return dict(row, today=against(row["sent_today"], row["day_limit"]),
                hour=against(row["sent_hour"], row["hour_limit"]))


PORT_COLUMNS = [("port", "PORT"), ("state", "STATE"), ("imei", "IMEI"), ("iccid", "ICCID"),
                ("operator", "OPERATOR"), ("signal", "SIGNAL"), ("registered", "REG"),
                ("sent_today", "SENT_TODAY"), ("last_error", "LAST_ERROR")]
# A multi-SIM port's cards, under its row in `smsgw status`.
CARD_COLUMNS = [("slot", "SLOT"), ("state", "STATE"), ("iccid", "ICCID"),
                ("today", "SENT_TODAY"), ("hour", "SENT_HOUR"), ("held_by", "HELD_BY"),
                ("held_until", "UNTIL"), ("reason", "REASON")]
CARD_INDENT = "    "
# `smsgw sims`: every card of every port, then the SIMs no port holds now.
SIM_COLUMNS = [("port", "PORT"), ("slot", "SLOT"), ("state", "STATE"), ("iccid", "ICCID"),
               ("imsi", "IMSI"), ("operator", "OPERATOR"), ("today", "SENT_TODAY"),
               ("hour", "SENT_HOUR"), ("held_by", "HELD_BY"), ("held_until", "UNTIL"),
               ("sent_total", "SENT_TOTAL"), ("last_port", "LAST_SEEN_IN"),
               ("reason", "REASON")]


def render_status(status: dict[str, Any], as_json: bool) -> str:
    """The status as aligned text for a terminal, or as JSON."""
    if as_json:
        return render_json(status)
    q = status["queue"]
    broker = status.get("broker") or {"connected": status.get("online")}
    where = f" ({broker['host']}:{broker['port']})" if "host" in broker else ""
    link = "connected" if broker["connected"] else "DISCONNECTED, reconnecting"
    health = status.get("health") or {"pool": "-", "ready": "-", "total": "-", "faults": []}
    lines = [
        f"gateway      {status.get('gw', '-')}  version {status['version']}  "
        f"started {status['started_at']}  paused {_cell(status.get('paused'))}",
        f"broker       {link}{where}",
        f"queue        queued {q['queued']}  scheduled {q['scheduled']}  "
        f"sending {q['sending']}",
        f"unpublished  {status['unpublished']} events waiting for the broker",
        f"pool         {health['pool']}: {health['ready']} of {health['total']} ports ready",
    ]
    faults = health["faults"]
    if not faults:
        lines.append("faults       none")
    for i, f in enumerate(faults):
        head = "faults       " if i == 0 else "             "
        lines.append(f"{head}{f['fault']} (LED code {f['code']}): {f['detail']}")
        lines.append(f"               fix: {f['advice']}")
    lines.append("")
    lines += _ports_and_cards(status["modems"])
    return "\n".join(line.rstrip() for line in lines)


def _ports_and_cards(modems: list[dict[str, Any]]) -> list[str]:
    """The port table; under each multi-SIM port's row, a table of its cards."""
    header, *rows = render_table(PORT_COLUMNS, modems).split("\n")
    lines = [header]
    for modem, row in zip(modems, rows, strict=True):
        lines.append(row)
        if modem.get("sims"):
            cards = render_table(CARD_COLUMNS, [with_counts_shown(c) for c in modem["sims"]])
            lines += [CARD_INDENT + line for line in cards.split("\n")]
    return lines
