"""Shared pieces of the fault tests: config tweaks, the pool's control socket, an HQ with a
persistent session, and the bookkeeping that checks the contract's promises 1 and 2."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from modem.sim.control import request
from tests.support.gateway import Daemon, SimulatedPool
from tests.support.hq import Hq
from tests.support.wait import wait_until

TERMINAL = frozenset({"sent", "failed", "uncertain", "expired", "cancelled"})


def with_modem_keys(daemon: Daemon, keys: str) -> Daemon:
    """Add keys to the [modems] table tests/support/gateway.py already wrote."""
    text = daemon.config.read_text(encoding="utf-8")
    assert "[modems]\n" in text, text
    daemon.config.write_text(text.replace("[modems]\n", "[modems]\n" + keys.rstrip("\n") + "\n",
                                          1), encoding="utf-8")
    return daemon


def control(pool: SimulatedPool, cmd: str, **fields: Any) -> dict[str, Any]:
    reply = request(pool.dir, {"cmd": cmd, **fields})
    assert reply.get("ok"), reply
    return reply


def number(i: int) -> str:
    return f"+86139{i:08d}"


def batch(batch_id: str, prefix: str, n: int, start: int = 0) -> dict[str, Any]:
    """n messages, each with its own number and text, so the network journal can tell them apart."""
    return {"batch_id": batch_id, "messages": [
        {"id": f"{prefix}-{i}", "to": number(start + i), "text": f"{prefix} message {i}"}
        for i in range(n)]}


def expected_pairs(b: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {m["id"]: (m["to"], m["text"]) for m in b["messages"]}


def unique_by_seq(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop QoS 1 redeliveries (same seq), keep arrival order."""
    seen: set[Any] = set()
    out = []
    for b in bodies:
        key = b.get("seq")
        if key in seen:
            continue
        seen.add(key)
        out.append(b)
    return out


def status_history(hq: Hq, ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Every distinct status HQ heard for each id, in seq order."""
    hist: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in sorted(unique_by_seq(hq.on("status")), key=lambda s: s["seq"]):
        if s.get("id") in ids:
            hist[s["id"]].append(s)
    return hist


def terminal_problems(hq: Hq, ids: set[str]) -> list[str]:
    """Promise 1: each id has exactly one terminal status and it is the last one HQ heard."""
    hist = status_history(hq, ids)
    problems = []
    for i in sorted(ids):
        states = [s["state"] for s in hist.get(i, [])]
        terminal = [s for s in states if s in TERMINAL]
        if len(terminal) != 1 or not states or states[-1] not in TERMINAL:
            problems.append(f"{i}: {states}")
    return problems


def all_terminal(hq: Hq, ids: set[str]) -> bool:
    hist = status_history(hq, ids)
    return all(any(s["state"] in TERMINAL for s in hist.get(i, [])) for i in ids)


def final_states(hq: Hq, ids: set[str]) -> dict[str, dict[str, Any]]:
    hist = status_history(hq, ids)
    return {i: hist[i][-1] for i in ids if hist.get(i)}


def network_duplicates(pool: SimulatedPool) -> dict[tuple[str, str], int]:
    counts = Counter((m["to"], m["text"]) for m in pool.network())
    return {k: v for k, v in counts.items() if v > 1}


def states_of_port(hq: Hq, port: str) -> list[str | None]:
    """The port's state in every GatewayState HQ heard, in arrival order."""
    out = []
    for st in hq.on("state"):
        for m in st.get("modems") or []:
            if m.get("port") == port:
                out.append(m.get("state"))
    return out


def PersistentHq(port: int, gw: str, client_id: str = "hq-persistent",
                 topics: tuple[str, ...] = ("#",)) -> Hq:
    """An HQ with a persistent session (clean start off): nothing the gateway publishes
    is lost for it across a broker restart."""
    return Hq(port, gw, client_id=client_id, topics=topics, persistent=True)


def log_tail(daemon: Daemon, lines: int = 40) -> str:
    if not Path(daemon.log_path).exists():
        return "(no log)"
    return "\n".join(daemon.log().splitlines()[-lines:])


def fast_publisher(port: int, client_id: str = "hq-fuzzer") -> paho.Client:
    """A second HQ client that keeps many QoS 1 publishes in flight (no wait per PUBACK)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(1000)
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.connect_async("127.0.0.1", port)
    client.loop_start()
    wait_until(connected.is_set, 10, "the fuzzing client to connect")
    return client
