"""The pool's control socket DIR/control.sock: one JSON object per line in, one reply out.

Every reply is {"ok": true, ...} or {"ok": false, "error": reason}. Commands ("port" is an index;
"slot" picks a SIM card of the port, default the selected one; on a port with several slots the
replies of inject_sms, report_for, block_after, unblock and sim also carry "slot"):

| cmd         | request fields                                   | reply fields (besides ok)       |
|-------------|--------------------------------------------------|---------------------------------|
| ping        |                                                  | pong                            |
| stats       |                                                  | ports: one row per port (SIM    |
|             |                                                  | fields of the selected card;    |
|             |                                                  | slots, active_slot, switching)  |
| unplug      | port                                             | port, plugged                   |
| replug      | port                                             | port, plugged, path             |
| fail_next   | port, error="+CMS ERROR: 38", count=1            | port, pending_failures          |
| hang        | port, on=true                                    | port, hung                      |
| inject_sms  | port, slot, from, text, encoding=auto|gsm7|ucs2, | port, parts, indexes, refused,  |
|             | ref_bits=8|16, reference, order, drop, repeat,   | reference, memory; held=true    |
|             | notify=true, memory=<mem3>|SM|ME                 | when the card is switched out   |
| reports     | port (absent = all), slot, outcome=delivered|    | ports, outcome, delay_s, slot   |
|             | failed|pending_then_delivered|none, delay_s=0    | (if given)                      |
| report_for  | port, slot, mr, status                           | port, mr, status, delivered_as  |
|             |                                                  | (cds|cdsi|none|refused_full|    |
|             |                                                  | held), index (cdsi only)        |
| block_after | port, slot, sends, code=21                       | port, sends, code, blocked      |
| unblock     | port, slot                                       | port, blocked                   |
| radio       | port, csq=0..31|99, creg=0..5                    | port, csq, creg, registered     |
| sim         | port, slot, state=ready|absent|pin               | port, state                     |
| ussd        | port, slot, text (the answer to any USSD code;   | port, text                      |
|             | default "Balance: 12.34 CNY")                    |                                 |
| slots       | port                                             | port, active_slot, switching,   |
|             |                                                  | switch_delay_s, hold_s, slots:  |
|             |                                                  | [{slot, iccid, imsi, operator,  |
|             |                                                  | msisdn, state, sim, active,     |
|             |                                                  | sends, blocked, reports_sent,   |
|             |                                                  | held, held_dropped}]            |
| mux_select  | port, slot                                       | port, active_slot, switched     |
| slot        | port, slot, state=ready|empty|broken             | port, slot, state               |
| slot_timing | port (absent = all), switch_delay_s, hold_s      | ports: [{port, switch_delay_s,  |
|             |                                                  | hold_s}]                        |
| noise       | port, lines: [str]                               | port, lines                     |
| garbage     | port, hex: "ff fe 80"                            | port, octets                    |
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from modem.sim import scenarios, slot_control
from modem.sim.control_args import ControlTarget, Reply, Request, port_of
from modem.sim.errors import ControlError, PortError

log = structlog.get_logger(__name__)

SOCKET_NAME = "control.sock"
MAX_REQUEST_OCTETS = 64 * 1024
FINAL_ERROR = re.compile(r"ERROR|\+CM[ES] ERROR: \d+")
MAX_FAIL_COUNT = 10_000


def _ping(target: ControlTarget, request: Request) -> Reply:
    return {"pong": True}


def _stats(target: ControlTarget, request: Request) -> Reply:
    return {"ports": target.stats()}


def _unplug(target: ControlTarget, request: Request) -> Reply:
    port = port_of(target, request)
    port.unplug()
    return {"port": port.index, "plugged": port.plugged}


def _replug(target: ControlTarget, request: Request) -> Reply:
    port = port_of(target, request)
    port.plug()
    return {"port": port.index, "plugged": port.plugged, "path": str(port.link)}


def _fail_next(target: ControlTarget, request: Request) -> Reply:
    port = port_of(target, request)
    error = request.get("error", "+CMS ERROR: 38")
    count = request.get("count", 1)
    if not isinstance(error, str) or not FINAL_ERROR.fullmatch(error):
        raise ControlError('"error" must be ERROR, "+CMS ERROR: <n>" or "+CME ERROR: <n>"')
    if not isinstance(count, int) or isinstance(count, bool) or not 0 < count <= MAX_FAIL_COUNT:
        raise ControlError(f'"count" must be an integer in 1..{MAX_FAIL_COUNT}')
    port.fail_next(error, count)
    return {"port": port.index, "pending_failures": len(port.faults.send_errors)}


def _hang(target: ControlTarget, request: Request) -> Reply:
    port = port_of(target, request)
    on = request.get("on", True)
    if not isinstance(on, bool):
        raise ControlError('"on" must be true or false')
    port.set_hung(on)
    return {"port": port.index, "hung": port.hung}


# One entry per command (see the table above); later: "quota".
COMMANDS: dict[str, Callable[[ControlTarget, Request], Reply]] = {
    "ping": _ping,
    "stats": _stats,
    "unplug": _unplug,
    "replug": _replug,
    "fail_next": _fail_next,
    "hang": _hang,
    "inject_sms": scenarios.inject_sms,
    "reports": scenarios.reports,
    "report_for": scenarios.report_for,
    "block_after": scenarios.block_after,
    "unblock": scenarios.unblock,
    "radio": scenarios.radio,
    "sim": scenarios.sim,
    "ussd": scenarios.ussd,
    "noise": scenarios.noise,
    "garbage": scenarios.garbage,
    "slots": slot_control.slots,
    "mux_select": slot_control.mux_select,
    "slot": slot_control.slot,
    "slot_timing": slot_control.slot_timing,
}


def dispatch(target: ControlTarget, line: bytes) -> Reply:
    """Answer one request line; errors become {"ok": false, "error": reason}, never exceptions."""
    try:
        request = json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
        return {"ok": False, "error": f"not JSON: {e}"}
    if not isinstance(request, dict):
        return {"ok": False, "error": "request must be a JSON object"}
    cmd = request.get("cmd")
    handler = COMMANDS.get(cmd) if isinstance(cmd, str) else None
    if handler is None:
        return {"ok": False, "error": f"unknown cmd {cmd!r}; known: {sorted(COMMANDS)}"}
    try:
        return {"ok": True, **handler(target, request)}
    except (ControlError, PortError) as e:
        return {"ok": False, "error": str(e)}


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        while True:
            line = self.rfile.readline(MAX_REQUEST_OCTETS)
            if not line:
                return
            if not line.strip():
                continue
            reply = dispatch(self.server.target, line)
            self.wfile.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
            self.wfile.flush()


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    target: ControlTarget


class ControlServer:
    """Serves COMMANDS on DIR/control.sock from its own thread until stop()."""

    def __init__(self, directory: Path, target: ControlTarget) -> None:
        self.path = directory / SOCKET_NAME
        self._target = target
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind the socket (replacing a stale one) and start serving."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        server = _Server(str(self.path), _Handler)
        server.target = self._target
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="sim-control", daemon=True
        )
        self._thread.start()
        log.info("sim_control_listening", path=str(self.path))

    def stop(self) -> None:
        """Stop serving, close the socket and remove its file."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def request(directory: str | Path, payload: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one command to the pool serving `directory` and return its reply object."""
    path = Path(directory) / SOCKET_NAME
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(payload).encode() + b"\n")
            with sock.makefile("rb") as stream:
                line = stream.readline(MAX_REQUEST_OCTETS)
    except OSError as e:
        raise ControlError(f"no simulated pool answering at {path}: {e}") from e
    if not line:
        raise ControlError(f"pool at {path} closed the connection without a reply")
    reply = json.loads(line)
    if not isinstance(reply, dict):
        raise ControlError(f"pool at {path} sent a non-object reply")
    return reply
