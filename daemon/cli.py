"""The `smsgw` command: run the daemon, simulate a modem pool, talk to a running daemon."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from daemon import __version__, config, logs

EXIT_FAILED = 1  # the daemon answered with an error, or the modem did
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3  # LSB: "program is not running"
EXIT_PORT_BUSY = 4  # `smsgw probe` of a port the running daemon holds
DEFAULT_SHOW = 10
PROBE_CMGS_TIMEOUT_S = 10.0  # probe never sends; the value only satisfies ModemPort
BALANCE_TIMEOUT_S = 30.0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    return int(args.func(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsgw", description=__doc__)
    parser.add_argument("--version", action="version", version=f"smsgw {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway in the foreground")
    run.add_argument("--config", default=config.DEFAULT_CONFIG, help="TOML file")
    run.set_defaults(func=_run)

    sim = sub.add_parser("simulate", help="a simulated modem pool on pseudo-terminals")
    sim.add_argument("--ports", type=int, required=True, help="number of modems (1..256)")
    sim.add_argument("--dir", required=True, help="where DIR/ttyGSM0..N-1 appear")
    sim.add_argument("--latency", nargs=2, type=float, metavar=("MEAN", "JITTER"),
                     default=(1.0, 0.2), help="seconds AT+CMGS takes (default 1.0 0.2)")
    sim.add_argument("--make", choices=("mixed", "sim800", "quectel"), default="mixed")
    sim.add_argument("--seed", type=int, default=1, help="identities and latencies")
    sim.add_argument("--slots", type=int, default=1,
                     help="SIM cards per port, switched by AT+CSUS/AT+QDSIM/mux (1..32)")
    sim.add_argument("--switch-delay", type=float, default=3.0, metavar="SECONDS",
                     help="how long a port shows no SIM after a slot switch (default 3)")
    sim.set_defaults(func=_simulate)

    _talk(sub, "status", "what the running daemon is doing: ports, queue, broker, faults",
          _status)
    _talk(sub, "sims", "every SIM of every port (active, waiting, unusable), its counts "
          "against its limits and what holds it", _sims)
    queue = _talk(sub, "queue", "messages by state and the next ones to go out", _queue)
    queue.add_argument("-n", type=int, default=DEFAULT_SHOW, help="how many waiting to show")
    queue.add_argument("--reveal", action="store_true", help="show numbers in full")
    inbox = _talk(sub, "inbox", "the last received SMS", _inbox)
    inbox.add_argument("-n", type=int, default=DEFAULT_SHOW, help="how many to show")
    inbox.add_argument("--reveal", action="store_true", help="show numbers and texts")
    send = _talk(sub, "send", "queue a local test message (same checks as HQ's batches)",
                 _send)
    send.add_argument("--to", required=True, help="phone number")
    send.add_argument("--text", required=True)
    stop = _talk(sub, "stoplist", "list, add or remove stop-listed numbers", _stoplist)
    stop.add_argument("action", choices=("list", "add", "remove"))
    stop.add_argument("numbers", nargs="*", metavar="NUMBER")
    stop.add_argument("--reveal", action="store_true", help="show numbers in full")
    probe = _talk(sub, "probe", "open a serial port the daemon does not hold and ask the modem "
                  "who it is", _probe)
    probe.add_argument("port", metavar="PORT", help="device path, e.g. /dev/smsgw/port-...")
    balance = _talk(sub, "balance", "dial a USSD code (balance) on a port of the running daemon",
                    _balance)
    balance.add_argument("port", metavar="PORT", help="port name (ttyUSB0) or path")
    balance.add_argument("--code", default="*100#", help="USSD code (default *100#)")
    balance.add_argument("--timeout", type=float, default=BALANCE_TIMEOUT_S)
    _talk(sub, "leds", "what each LED shows now", _leds)

    _hq_parser(sub)

    check = sub.add_parser("check-config", help="parse the config file and report problems")
    check.add_argument("--config", default=config.DEFAULT_CONFIG)
    check.set_defaults(func=_check_config)
    return parser


def _load(path: str) -> config.Settings | None:
    try:
        return config.load(path)
    except config.ConfigError as e:
        print(f"smsgw: {e}", file=sys.stderr)
        return None


def _check_config(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    if settings is None:
        return config.EX_CONFIG
    print(f"{args.config}: ok (gateway {settings.gateway.id})")
    return 0


def _run(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    if settings is None:
        return config.EX_CONFIG
    logs.configure(settings.gateway.log_level)
    from daemon.clock import Clock
    from daemon.gateway import Gateway  # imported late: `smsgw --help` stays fast
    from daemon.memory import tune_malloc

    tune_malloc()  # before the threads start: arenas are handed out as threads first allocate

    gateway = Gateway(settings, clock=Clock(settings.gateway.clock_offset_file))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        gateway.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return gateway.run()


def _simulate(args: argparse.Namespace) -> int:
    if not 1 <= args.ports <= 256:
        print("smsgw simulate: --ports must be 1..256", file=sys.stderr)
        return 2
    mean, jitter = args.latency
    if mean < 0 or jitter < 0:
        print("smsgw simulate: --latency values must be >= 0", file=sys.stderr)
        return 2
    if not 1 <= args.slots <= 32:
        print("smsgw simulate: --slots must be 1..32", file=sys.stderr)
        return 2
    if args.switch_delay < 0:
        print("smsgw simulate: --switch-delay must be >= 0", file=sys.stderr)
        return 2
    from modem.sim.pool import serve

    serve(args.ports, args.dir, latency_mean=mean, latency_jitter=jitter, make=args.make,
          seed=args.seed, slots=args.slots, switch_delay_s=args.switch_delay)
    return 0


def _talk(sub: Any, name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
    """A subcommand that talks to the running daemon: --config and --json."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text,
                                                     description=help_text)
    parser.add_argument("--config", default=config.DEFAULT_CONFIG)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=func)
    return parser


class _Exit(Exception):
    """Stop a command with this exit status (the message is already printed)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _ask(args: argparse.Namespace, payload: dict[str, Any],
         timeout: float | None = None) -> Any:
    """One request to the daemon named by --config; prints the problem and raises _Exit."""
    settings = _load(args.config)
    if settings is None:
        raise _Exit(config.EX_CONFIG)
    from daemon.control import REQUEST_TIMEOUT_S, RequestFailed, StatusUnavailable, request

    try:
        return request(settings.control_socket, payload, timeout or REQUEST_TIMEOUT_S)
    except StatusUnavailable as e:
        print(f"smsgw: the daemon is not running: nothing answers on "
              f"{settings.control_socket} ({e})", file=sys.stderr)
        raise _Exit(EXIT_NOT_RUNNING) from e
    except RequestFailed as e:
        print(f"smsgw {args.command}: {e}", file=sys.stderr)
        raise _Exit(EXIT_FAILED) from e


def _guarded(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except _Exit as e:
            return e.status
    return run


def _out(args: argparse.Namespace, result: Any, text: str) -> int:
    from daemon.control import render_json

    print(render_json(result) if args.json else text)
    return 0


@_guarded
def _status(args: argparse.Namespace) -> int:
    from daemon.control import render_status

    status = _ask(args, {"cmd": "status"})
    print(render_status(status, as_json=args.json))
    return 0


@_guarded
def _sims(args: argparse.Namespace) -> int:
    from daemon.control import SIM_COLUMNS, render_table, with_counts_shown

    rows = _ask(args, {"cmd": "sims"})
    shown = [with_counts_shown(row) for row in rows]
    return _out(args, rows, render_table(SIM_COLUMNS, shown) if rows else "no SIM seen yet")


@_guarded
def _queue(args: argparse.Namespace) -> int:
    from daemon.control import render_table

    result = _ask(args, {"cmd": "queue", "limit": args.n, "reveal": args.reveal})
    counts = "  ".join(f"{k} {v}" for k, v in sorted(result["counts"].items())) or "empty"
    columns = [("hq_id", "ID"), ("batch_id", "BATCH"), ("state", "STATE"),
               ("priority", "PRIO"), ("to", "TO"), ("parts", "PARTS"),
               ("encoding", "ENCODING"), ("attempts", "ATTEMPTS"),
               ("not_before", "NOT_BEFORE"), ("created_at", "CREATED")]
    text = "\n".join([f"messages  {counts}",
                      f"paused    {'yes' if result['paused'] else 'no'}",
                      f"next      {len(result['next'])} waiting (of up to {args.n} asked)", "",
                      render_table(columns, result["next"])])
    return _out(args, result, text)


@_guarded
def _inbox(args: argparse.Namespace) -> int:
    from daemon.control import render_table

    rows = _ask(args, {"cmd": "inbox", "limit": args.n, "reveal": args.reveal})
    columns = [("received_at", "RECEIVED"), ("port", "PORT"), ("from", "FROM"),
               ("parts", "PARTS"), ("complete", "COMPLETE"), ("in_reply_to", "REPLY_TO"),
               ("id", "ID"), ("text", "TEXT")]
    return _out(args, rows, render_table(columns, rows) if rows else "no SMS received yet")


@_guarded
def _send(args: argparse.Namespace) -> int:
    result = _ask(args, {"cmd": "send", "to": args.to, "text": args.text})
    if args.json:
        _out(args, result, "")
    for rejected in result["rejected"]:
        print(f"smsgw send: rejected: {rejected['code']}: {rejected['reason']}",
              file=sys.stderr)
    if not result["accepted"]:
        return EXIT_FAILED
    if not args.json:
        print(result["id"])
    return 0


@_guarded
def _stoplist(args: argparse.Namespace) -> int:
    from daemon.control import render_table

    if args.action == "list":
        if args.numbers:
            print("smsgw stoplist list: takes no numbers", file=sys.stderr)
            return EXIT_USAGE
        rows = _ask(args, {"cmd": "stoplist", "reveal": args.reveal})
        columns = [("number", "NUMBER"), ("added_at", "ADDED"), ("source", "SOURCE"),
                   ("keyword", "KEYWORD")]
        return _out(args, rows, render_table(columns, rows) if rows else "the stop-list is empty")
    if not args.numbers:
        print(f"smsgw stoplist {args.action}: give at least one NUMBER", file=sys.stderr)
        return EXIT_USAGE
    result = _ask(args, {"cmd": f"stoplist_{args.action}", "numbers": args.numbers})
    if args.action == "add":
        text = (f"added {result['added']} number(s); cancelled {result['cancelled']} "
                "waiting message(s)")
    else:
        text = f"removed {result['removed']} number(s)"
    return _out(args, result, text)


@_guarded
def _balance(args: argparse.Namespace) -> int:
    result = _ask(args, {"cmd": "ussd", "port": args.port, "code": args.code,
                         "timeout": args.timeout}, timeout=args.timeout + 10)
    return _out(args, result, f"{result['port']} {args.code}: {result['answer']}")


@_guarded
def _leds(args: argparse.Namespace) -> int:
    from daemon.control import render_table

    result = _ask(args, {"cmd": "leds"})
    if not result["enabled"]:
        return _out(args, result, "LEDs are disabled ([leds] enabled = false)")
    rows = [{"led": name, **led} for name, led in result["leds"].items()]
    fault = result["leds"]["fault"]
    text = render_table([("led", "LED"), ("pin", "PIN"), ("pattern", "PATTERN"), ("lit", "LIT")],
                        rows)
    text += (f"\nfault code {fault['code']}: {fault['fault']}" if fault["fault"]
             else "\nno fault") + f"  (pin factory: {result['factory']})"
    return _out(args, result, text)


def _probe(args: argparse.Namespace) -> int:
    """Ask a modem who it is, directly; refuses a port the running daemon holds."""
    settings = _load(args.config)
    if settings is None:
        return config.EX_CONFIG
    from daemon.control import RequestFailed, StatusUnavailable, render_json, request

    path = args.port
    try:
        status = request(settings.control_socket, {"cmd": "status"})
    except (StatusUnavailable, RequestFailed):
        status = None  # no daemon: every port is free
    if status is not None:
        for modem in status["modems"]:
            held = modem.get("path")
            if path == modem["port"] or (held and os.path.realpath(held)
                                         == os.path.realpath(path)):
                print(f"smsgw probe: {path} is held by the running daemon (port "
                      f"{modem['port']}, {modem['state']}); see `smsgw status`, or stop the "
                      "daemon (systemctl stop smsgw) to probe it directly", file=sys.stderr)
                return EXIT_PORT_BUSY
    if not os.path.exists(path):
        print(f"smsgw probe: {path}: no such device", file=sys.stderr)
        return EXIT_FAILED
    from modem.errors import ModemError
    from modem.port import ModemPort

    modem = ModemPort(path, settings.modems.baudrate, PROBE_CMGS_TIMEOUT_S)
    try:
        info = modem.open()
        radio = modem.radio()
    except ModemError as e:
        print(f"smsgw probe: {path}: {e}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        modem.close()
    result = {"path": path, "manufacturer": info.manufacturer, "model": info.model,
              "imei": info.imei, "iccid": info.iccid, "imsi": info.imsi,
              "operator": radio.operator, "signal": radio.signal,
              "registered": radio.registered}
    if args.json:
        print(render_json(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            shown = ("yes" if value else "no") if isinstance(value, bool) else value
            print(f"{key.ljust(width)}  {'-' if shown is None else shown}")
    return 0


def _hq_parser(sub: Any) -> None:
    hq = sub.add_parser("hq", help="HQ-side helpers (sign and publish a batch)")
    hq_sub = hq.add_subparsers(dest="hq_command", required=True)
    pub = hq_sub.add_parser("publish", help="publish a Batch file to smsgw/{gw}/outbox")
    pub.add_argument("batch", help="the Batch JSON file, published byte for byte")
    pub.add_argument("--host", default="127.0.0.1")
    pub.add_argument("--port", type=int, default=1883)
    pub.add_argument("--gw", required=True, help='gateway id, or "fleet" for the shared topic')
    pub.add_argument("--key-file", help="HMAC key file: sign the batch")
    pub.add_argument("--username", default="")
    pub.add_argument("--password-file", help="the password, first line of this file")
    pub.add_argument("--tls-ca", default="", help="CA certificate that signed the broker's")
    pub.add_argument("--tls-cert", default="", help="HQ's client certificate")
    pub.add_argument("--tls-key", default="", help="HQ's client key (mode 0600)")
    pub.add_argument("--tls-insecure", action="store_true",
                     help="do not check the broker's host name (the CA is still checked)")
    pub.add_argument("--wait-ack", type=float, default=0.0, metavar="SECONDS",
                     help="wait this long for the BatchAck and print it")
    pub.set_defaults(func=_hq_publish)


def _hq_publish(args: argparse.Namespace) -> int:
    import json

    from daemon.hq import Broker, HqError, publish_batch, read_secret
    from daemon.signing import read_key

    try:
        payload = open(args.batch, "rb").read()  # noqa: SIM115 - read at once
        key = read_key(args.key_file) if args.key_file else None
        broker = Broker(args.host, args.port, args.username,
                        read_secret(args.password_file) if args.password_file else "",
                        args.tls_ca, args.tls_cert, args.tls_key, args.tls_insecure)
        ack = publish_batch(payload, broker, args.gw, key, args.wait_ack)
    except (OSError, ValueError, HqError) as e:  # ConfigError is a ValueError
        print(f"smsgw hq publish: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(ack, ensure_ascii=False) if ack is not None
          else f"published {len(payload)} bytes to smsgw/{args.gw}/outbox"
          + (" (signed)" if key is not None else ""))
    return 0
