"""Benchmarks on real processes (mosquitto, `smsgw simulate`, `smsgw run`); prints figures.

  python scripts/bench.py utilisation --ports 16 --latency 0.5 --messages 2000
  python scripts/bench.py intake --messages 100000
  python scripts/bench.py pick                       # next-message cost, 1,000 vs 1,000,000 queued
  python scripts/bench.py idle --ports 64            # CPU and RSS of an idle 64-port daemon
  python scripts/bench.py inbound --replies 200      # modem notification -> MQTT publish
  python scripts/bench.py slots --slots 3 --cap 20   # one port's day with K cards vs one

Figures go into BENCHMARKS.md with the date, the machine and this command.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.broker import Broker  # noqa: E402
from tests.support.gateway import Daemon, SimulatedPool  # noqa: E402
from tests.support.hq import Hq  # noqa: E402
from tests.support.wait import wait_until  # noqa: E402

GW = "gw-bench"


def _proc_status(pid: int, key: str) -> int:
    """A kB figure (VmRSS, VmHWM) from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _stamps(records: list[dict[str, Any]]) -> list[float]:
    """The simulator's RFC 3339 UTC stamps as epoch seconds."""
    return [datetime.fromisoformat(r["at"].replace("Z", "+00:00")).timestamp() for r in records]


def _write_bytes(pid: int) -> int:
    """Bytes the process caused to be written to storage (/proc/PID/io)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    return sum(_cpu_split(pid))


def _cpu_split(pid: int) -> tuple[float, float]:
    """The process's user and system CPU seconds so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick  # utime, stime


def _cpu_ticks() -> list[int]:
    """The machine's cpu line of /proc/stat: user nice system idle iowait irq softirq steal."""
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]


def _setup(work: Path, ports: int, latency: tuple[float, float],
           extra: str = "") -> tuple[Broker, SimulatedPool, Daemon, Hq]:
    broker = Broker(work / "broker")
    broker.start()
    pool = SimulatedPool(work / "pool" / "dev", ports, latency=latency)
    daemon = Daemon(work / "gw", broker.port, str(pool.dir / "ttyGSM*"), gw=GW, extra=extra)
    daemon.start()
    hq = Hq(broker.port, GW)
    try:
        hq.wait_online()
        wait_until(lambda: _all_ready(hq, ports), 60, "every port ready")
    except AssertionError:
        # A benchmark that cannot start says why, and leaves no processes behind.
        print(daemon.log()[-4000:], file=sys.stderr)
        _teardown(broker, pool, daemon, hq)
        raise
    return broker, pool, daemon, hq


def _all_ready(hq: Hq, ports: int) -> bool:
    """Ask for the state (a `state` command) and check every port is ready."""
    hq.publish("cmd", {"cmd_id": "bench-state", "cmd": "state"})
    replies = [r for r in hq.on("reply") if r.get("cmd_id") == "bench-state"]
    if not replies:
        return False
    modems = replies[-1]["result"]["modems"]
    return len(modems) == ports and all(m["state"] == "ready" for m in modems)


def utilisation(args: argparse.Namespace) -> dict[str, Any]:
    """Achieved send rate over the pool's aggregate capacity (ports / mean latency)."""
    with tempfile.TemporaryDirectory() as tmp:
        broker, pool, daemon, hq = _setup(Path(tmp), args.ports, (args.latency, 0.0),
                                          _NO_LIMITS)
        try:
            ids = [f"u-{i}" for i in range(args.messages)]
            batch = {"batch_id": "bench", "messages": [
                {"id": i, "to": f"+86138{n:08d}", "text": f"Benchmark message {n}"}
                for n, i in enumerate(ids)]}
            assert daemon.proc is not None
            user0, system0 = _cpu_split(daemon.proc.pid)
            written0 = _write_bytes(daemon.proc.pid)
            hq.publish("outbox", batch)
            hq.wait_ack("bench", timeout=60)
            wait_until(lambda: len(pool.network()) >= 1, 30, "the first send")
            hq.wait_final(ids, {"sent", "failed"}, timeout=args.messages * args.latency + 120)
            user1, system1 = _cpu_split(daemon.proc.pid)
            written = _write_bytes(daemon.proc.pid) - written0
            records = pool.network()
            stamps = sorted(time.mktime(time.strptime(r["at"][:19], "%Y-%m-%dT%H:%M:%S"))
                            + float("0." + r["at"][20:23]) for r in records)
            # Per port, the time between two recorded sends beyond the send itself:
            # what the gateway (and the simulator) add between sends.
            by_port: dict[str, list[float]] = {}
            for r, t in zip(records, _stamps(records), strict=True):
                by_port.setdefault(r["port"], []).append(t)
            gaps = sorted(b - a - args.latency for ts in by_port.values()
                          for a, b in itertools.pairwise(sorted(ts)))
            # Makespan from the first submission's start to the last one's end.
            makespan = stamps[-1] - stamps[0] + args.latency
            capacity = args.ports / args.latency
            achieved = len(records) / makespan
            return {"ports": args.ports, "latency_s": args.latency, "messages": len(records),
                    "makespan_s": round(makespan, 2), "capacity_per_s": round(capacity, 2),
                    "achieved_per_s": round(achieved, 2),
                    "utilisation": round(achieved / capacity, 4),
                    "cpu_ms_per_message": round(
                        (user1 + system1 - user0 - system0) * 1000 / len(records), 3),
                    # System time is the kernel's: serial and socket I/O, fsync, wake-ups.
                    "of_which_system_ms": round((system1 - system0) * 1000 / len(records), 3),
                    "disk_bytes_written_per_message": round(written / len(records)),
                    "daemon_rss_kb": _proc_status(daemon.proc.pid, "VmRSS"),
                    "gap_between_sends_ms_p50": round(gaps[len(gaps) // 2] * 1000, 1),
                    "gap_between_sends_ms_p90": round(gaps[int(len(gaps) * 0.9)] * 1000, 1)}
        finally:
            _teardown(broker, pool, daemon, hq)


def intake(args: argparse.Namespace) -> dict[str, Any]:
    """Time from a big batch's publish to its BatchAck, and the daemon's peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        extra = "\n[send]\nmax_parts = 10\n"
        if args.in_daemon:
            extra += "\n[queue]\nvalidate_in_child = false\n"
        broker, pool, daemon, hq = _setup(Path(tmp), 1, (60.0, 0.0), extra)
        try:
            hq.publish("cmd", {"cmd_id": "p", "cmd": "pause"})
            wait_until(lambda: any(r.get("cmd_id") == "p" for r in hq.on("reply")), 10, "pause")
            template = "尊敬的{name}，您的积分{points}分将于{date}到期。回复TD退订"
            payload = json.dumps({"batch_id": "big", "template": template, "messages": [
                {"id": f"m{i}", "to": f"+86138{i:08d}",
                 "vars": {"name": "林瓊", "points": i, "date": "11月30日"}}
                for i in range(args.messages)]}, ensure_ascii=False).encode()
            assert daemon.proc is not None
            rss_before = _proc_status(daemon.proc.pid, "VmRSS")
            t0 = time.monotonic()
            hq.client.publish(f"smsgw/{GW}/outbox", payload, qos=1)
            ack = hq.wait_ack("big", timeout=300)
            # When paho handed HQ the BatchAck, not when the 50 ms poll noticed it.
            index = next(i for i, a in enumerate(hq.on("ack")) if a.get("batch_id") == "big")
            elapsed = hq.arrivals("ack")[index] - t0
            line = wait_until(lambda: next((ln for ln in daemon.log().splitlines()
                                            if "event='batch_accepted'" in ln), None),
                              10, "the batch_accepted log line")
            split = dict(re.findall(r"(took_s|validate_s|queued_s|waited_for_child_s)=([0-9.]+)",
                                    line))
            return {"messages": args.messages, "payload_mb": round(len(payload) / 1e6, 1),
                    "accepted": ack["accepted"], "publish_to_batchack_s": round(elapsed, 2),
                    "of_which_validate_and_commit_s": float(split.get("took_s", "nan")),
                    "of_which_queued_before_intake_s": float(split.get("queued_s", "nan")),
                    "of_which_waiting_for_child_s": float(split.get("waited_for_child_s", "nan")),
                    "validated_by": "child" if "validated_by='child'" in line else "intake",
                    "daemon_rss_before_kb": rss_before,
                    "daemon_peak_rss_kb": _proc_status(daemon.proc.pid, "VmHWM")}
        finally:
            _teardown(broker, pool, daemon, hq)


def pick(args: argparse.Namespace) -> dict[str, Any]:
    """Cost of choosing and claiming the next message, with a small and a huge queue."""
    from store.store import Store

    out: dict[str, Any] = {"claims_timed": args.claims}
    for queued in (1_000, 1_000_000):
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(tmp)
            store.run_started = time.time()
            _fill(store, queued)
            t0 = time.perf_counter()
            for _ in range(args.claims):
                candidate = store.peek_queued(4)[0]
                store.claim(candidate.id, "ttyGSM0", "8986000000000000000", time.time())
            out[f"ms_per_pick_at_{queued}"] = round(
                (time.perf_counter() - t0) * 1000 / args.claims, 3)
            store.close()
    out["ratio_1M_over_1k"] = round(out["ms_per_pick_at_1000000"] / out["ms_per_pick_at_1000"],
                                    3)
    return out


def _fill(store: Any, count: int) -> None:
    """Queue `count` messages in batches of 50,000 through the store's own intake path."""
    from store.intake import NewMessage

    chunk = 50_000
    for start in range(0, count, chunk):
        messages = [NewMessage(f"m{i}", f"b{start}", f"+86138{i:08d}", f"text {i}", "gsm7", 1,
                               i % 10, None, None, True, False)
                    for i in range(start, min(count, start + chunk))]
        store.accept_batch(f"b{start}", messages, [], time.time())


def idle(args: argparse.Namespace) -> dict[str, Any]:
    """CPU share and RSS of a daemon holding `ports` ready modems and nothing to send."""
    with tempfile.TemporaryDirectory() as tmp:
        broker, pool, daemon, hq = _setup(Path(tmp), args.ports, (0.5, 0.0), _NO_LIMITS)
        try:
            assert daemon.proc is not None
            time.sleep(args.settle)  # let start-up scans finish: we measure the steady state
            cpu0, t0 = _cpu_seconds(daemon.proc.pid), time.monotonic()
            time.sleep(args.seconds)
            cpu = _cpu_seconds(daemon.proc.pid) - cpu0
            wall = time.monotonic() - t0
            return {"ports": args.ports, "seconds": round(wall, 1),
                    "idle_cpu_percent_of_a_core": round(cpu / wall * 100, 3),
                    "steady_rss_kb": _proc_status(daemon.proc.pid, "VmRSS"),
                    "threads": _proc_status(daemon.proc.pid, "Threads")}
        finally:
            _teardown(broker, pool, daemon, hq)


def inbound(args: argparse.Namespace) -> dict[str, Any]:
    """Latency from a reply's +CMTI to its publish on smsgw/{gw}/inbox (instant simulator)."""
    from modem.sim.control import request

    with tempfile.TemporaryDirectory() as tmp:
        broker, pool, daemon, hq = _setup(Path(tmp), args.ports, (0.0, 0.0), _NO_LIMITS)
        try:
            latencies = []
            for i in range(args.replies):
                seen = len(hq.on("inbox"))
                t0 = time.monotonic()
                request(pool.dir, {"cmd": "inject_sms", "port": i % args.ports,
                                   "from": f"+861390013{i:04d}", "text": f"reply {i}"})
                wait_until(lambda seen=seen: len(hq.on("inbox")) > seen, 10, "the reply")
                # Stamped by HQ's paho callback: the 50 ms polling above is not counted.
                latencies.append(hq.arrivals("inbox")[seen] - t0)
            latencies.sort()
            return {"replies": args.replies, "ports": args.ports,
                    "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
                    "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
                    "max_ms": round(latencies[-1] * 1000, 1)}
        finally:
            _teardown(broker, pool, daemon, hq)


_NO_LIMITS = "\n[limits]\nper_hour = 0\nper_day = 0\n"


def slots(args: argparse.Namespace) -> dict[str, Any]:
    """Messages a day one port sends with K cards against the single-card cap."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker")
        broker.start()
        pool = SimulatedPool(work / "pool" / "dev", 1, latency=(args.latency, 0.0),
                             extra_args=("--slots", str(args.slots), "--switch-delay",
                                         str(args.switch_delay)))
        daemon = Daemon(work / "gw", broker.port, str(pool.dir / "ttyGSM*"), gw=GW,
                        extra=f"\n[limits]\nper_hour = 0\nper_day = {args.cap}\n",
                        modems_extra="switch_timeout_s = 60\n")
        daemon.start()
        hq = Hq(broker.port, GW)
        try:
            hq.wait_online()
            offered = args.cap * args.slots + args.cap
            t0 = time.monotonic()
            hq.publish("outbox", {"batch_id": "slots", "messages": [
                {"id": f"s-{i}", "to": f"+86138{i:08d}", "text": f"card rotation {i}"}
                for i in range(offered)]})
            wait_until(lambda: len(pool.network()) >= args.cap * args.slots, 600,
                       "every card's daily cap used")
            elapsed = time.monotonic() - t0
            switches = [e for e in hq.on("events") if e["type"] == "sim_switched"]
            return {"slots": args.slots, "cap_per_card_per_day": args.cap,
                    "offered": offered, "sent_in_the_day": len(pool.network()),
                    "ratio_to_single_card_cap": round(len(pool.network()) / args.cap, 2),
                    "switches": len(switches),
                    "switch_s_each": [e["took_s"] for e in switches],
                    "seconds_to_use_every_cap": round(elapsed, 1),
                    "switching_share_of_that_time": round(
                        sum(e["took_s"] for e in switches) / elapsed, 3)}
        finally:
            _teardown(broker, pool, daemon, hq)


def _teardown(broker: Broker, pool: SimulatedPool, daemon: Daemon, hq: Hq) -> None:
    hq.close()
    if daemon.alive:
        daemon.stop(60)
    pool.stop()
    broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="bench", required=True)
    u = sub.add_parser("utilisation")
    u.add_argument("--ports", type=int, default=16)
    u.add_argument("--latency", type=float, default=0.5)
    u.add_argument("--messages", type=int, default=2000)
    u.set_defaults(func=utilisation)
    i = sub.add_parser("intake")
    i.add_argument("--messages", type=int, default=100_000)
    i.add_argument("--in-daemon", action="store_true",
                   help="validate in the daemon's own process (queue.validate_in_child = false)")
    i.set_defaults(func=intake)
    p = sub.add_parser("pick")
    p.add_argument("--claims", type=int, default=2000)
    p.set_defaults(func=pick)
    d = sub.add_parser("idle")
    d.add_argument("--ports", type=int, default=64)
    d.add_argument("--seconds", type=float, default=60.0)
    d.add_argument("--settle", type=float, default=10.0)
    d.set_defaults(func=idle)
    k = sub.add_parser("slots")
    k.add_argument("--slots", type=int, default=3)
    k.add_argument("--cap", type=int, default=20)
    k.add_argument("--latency", type=float, default=0.5)
    k.add_argument("--switch-delay", type=float, default=3.0)
    k.set_defaults(func=slots)
    n = sub.add_parser("inbound")
    n.add_argument("--replies", type=int, default=200)
    n.add_argument("--ports", type=int, default=4)
    n.set_defaults(func=inbound)
    args = parser.parse_args()
    steal0 = _cpu_ticks()
    result = args.func(args)
    steal1 = _cpu_ticks()
    # On a shared VM the hypervisor may take CPU from us; a run with steal is not
    # comparable with one without it.
    busy = sum(steal1) - sum(steal0)
    result.update(bench=args.bench, date=time.strftime("%Y-%m-%d"), machine=platform.machine(),
                  cpus=__import__("os").cpu_count(), python=platform.python_version(),
                  cpu_steal_percent=round(100 * (steal1[7] - steal0[7]) / busy, 1) if busy else 0)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
