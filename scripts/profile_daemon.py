"""Run a benchmark of scripts/bench.py with the daemon under yappi; print where its CPU went.

  pip install yappi
  python scripts/profile_daemon.py utilisation --ports 16 --latency 0.5 --messages 2000

The daemon (`smsgw run`) runs under yappi's CPU clock with every thread profiled; the
simulator and broker do not. yappi's per-call cost inflates call-heavy code, so read
the output as shares between parts of the daemon, not as times.
"""

from __future__ import annotations

import os
import pstats
import runpy
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = (  # first match wins: (substring of the file's path, part)
    ("paho", "paho-mqtt"),
    ("gsmmodem", "python-gsmmodem-new + pyserial"),
    ("/serial/", "python-gsmmodem-new + pyserial"),
    ("modem/gsm.py", "python-gsmmodem-new + pyserial"),
    ("modem/port.py", "python-gsmmodem-new + pyserial"),
    ("peewee", "SQLite (peewee + store/)"),
    ("/store/", "SQLite (peewee + store/)"),
    ("structlog", "logging"),
    ("daemon/logs", "logging"),
    ("modem/pdu", "PDU encoding"),
    ("/daemon/", "daemon: policy, dispatch, publisher, sending"),
    ("threading.py", "thread hand-offs"),
    ("queue.py", "thread hand-offs"),
    ("/json/", "JSON"),
)


def _daemon_under_yappi(out: str) -> None:
    """In the daemon's process: `smsgw run` with yappi on; stats saved at exit."""
    import atexit

    import yappi

    from daemon.cli import main

    yappi.set_clock_type("cpu")
    yappi.start(builtins=False, profile_threads=True)

    def save() -> None:
        yappi.stop()
        yappi.get_func_stats().save(out, type="pstat")
    atexit.register(save)
    sys.exit(main(sys.argv[3:]))


def _part(path: str) -> str:
    return next((part for key, part in PARTS if key in path), "other (start-up, stdlib)")


def main() -> int:
    try:
        import yappi  # noqa: F401
    except ImportError:
        print("profile_daemon.py needs yappi: pip install yappi", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "daemon.pstat")
        sys.path.insert(0, str(ROOT))
        import tests.support.gateway as gateway

        me = str(Path(__file__).resolve())
        real = gateway.smsgw_command

        def command() -> list[str]:
            # Only `smsgw run` is profiled; the simulator runs as usual.
            return [sys.executable, me, "--as-daemon", out]
        gateway.smsgw_command = command
        os.environ["SMSGW_REAL_COMMAND"] = " ".join(real())
        sys.argv = [str(ROOT / "scripts" / "bench.py"), *sys.argv[1:]]
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit as e:  # bench.py ends with sys.exit(): its figures are printed
            if e.code:
                return int(e.code) if isinstance(e.code, int) else 1
        if not Path(out).exists():
            print("the daemon left no profile", file=sys.stderr)
            return 1
        stats = pstats.Stats(out).stats  # type: ignore[attr-defined]
    own = Counter[str]()
    for (path, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.items():
        own[_part(path)] += tottime
    total = sum(own.values())
    print(f"\ndaemon CPU under yappi: {total:.2f} s; shares by part:")
    for part, seconds in own.most_common():
        print(f"  {seconds / total * 100:5.1f} %  {part}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--as-daemon":
        out_path = sys.argv[2]
        if sys.argv[3:4] != ["run"]:  # the simulator: run it unprofiled
            os.execvp(os.environ["SMSGW_REAL_COMMAND"].split()[0],
                      [*os.environ["SMSGW_REAL_COMMAND"].split(), *sys.argv[3:]])
        sys.path.insert(0, str(ROOT))
        _daemon_under_yappi(out_path)
    sys.exit(main())
