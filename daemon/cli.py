"""The `smsgw` command: run the daemon, simulate a modem pool, talk to a running daemon."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from daemon import __version__, config, logs

EXIT_NOT_RUNNING = 3  # LSB: "program is not running"


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
    sim.set_defaults(func=_simulate)

    status = sub.add_parser("status", help="what the running daemon is doing")
    status.add_argument("--config", default=config.DEFAULT_CONFIG)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_status)

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
    from daemon.gateway import Gateway  # imported late: `smsgw --help` stays fast

    gateway = Gateway(settings)

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
    from modem.sim.pool import serve

    serve(args.ports, args.dir, latency_mean=mean, latency_jitter=jitter, make=args.make,
          seed=args.seed)
    return 0


def _status(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    if settings is None:
        return config.EX_CONFIG
    from daemon.control import StatusUnavailable, render_status, request_status

    try:
        status = request_status(settings.control_socket)
    except StatusUnavailable as e:
        print(f"smsgw: the daemon is not running ({e})", file=sys.stderr)
        return EXIT_NOT_RUNNING
    print(render_status(status, as_json=args.json))
    return 0
