"""A fleet shares the work: three gateways on one mosquitto take batches from the shared
subscription $share/{group}/smsgw/fleet/outbox; one is SIGKILLed mid-run and restarted."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.broker import Broker
from tests.support.gateway import Daemon, SimulatedPool
from tests.support.wait import wait_until

GATEWAYS = ("gw-f0", "gw-f1", "gw-f2")
VICTIM = "gw-f1"
BATCHES = 30
PER_BATCH = 100
BEFORE_KILL = 24  # batches published before the kill; the rest while the victim is down
FINAL = {"sent", "delivered", "failed", "uncertain", "expired", "cancelled"}


class FleetHq:
    """HQ for a fleet: publishes to smsgw/fleet/outbox, hears smsgw/+/{ack,status,state}."""

    def __init__(self, port: int) -> None:
        self._lock = threading.Lock()
        self.received: list[tuple[str, str, dict[str, Any]]] = []
        self._ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="hq-fleet",
                                  protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, *_a: c.subscribe(
            [("smsgw/+/ack", 1), ("smsgw/+/status", 1), ("smsgw/+/state", 1)])
        self.client.on_subscribe = lambda *_a: self._ready.set()
        self.client.on_message = self._message
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()
        wait_until(self._ready.is_set, 10, "HQ to subscribe")

    def _message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        _root, gw, kind = msg.topic.split("/")
        with self._lock:
            self.received.append((gw, kind, json.loads(msg.payload)))

    def on(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return [(gw, b) for gw, k, b in self.received if k == kind]

    def online(self, gw: str, since: int = 0) -> bool:
        with self._lock:
            return any(g == gw and k == "state" and b.get("online")
                       for g, k, b in self.received[since:])

    def publish(self, payload: dict[str, Any]) -> None:
        self.client.publish("smsgw/fleet/outbox", json.dumps(payload), qos=1
                            ).wait_for_publish(10)

    def final_states(self) -> dict[str, tuple[str, str]]:
        """id -> (gateway, last terminal state)."""
        out: dict[str, tuple[str, str]] = {}
        for gw, s in self.on("status"):
            if s.get("state") in FINAL:
                out[s["id"]] = (gw, s["state"])
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _config(d: Daemon, port: int, pool: SimulatedPool) -> None:
    d.config.write_text(
        f'[gateway]\nid = "{d.gw}"\ndata_dir = "{d.dir / "data"}"\ndefault_region = "CN"\n\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nreconnect_max_s = 2\n'
        'fleet_group = "fleet"\n\n'
        f'[modems]\nports = ["{pool.dir / "ttyGSM*"}"]\nrescan_s = 1\nreopen_backoff_s = 0.5\n\n'
        '[send]\nsettle_s = 1\n\n'
        '[limits]\nper_hour = 0\nper_day = 0\n', encoding="utf-8")


def _batch(n: int) -> dict[str, Any]:
    return {"batch_id": f"fleet-{n}", "messages": [
        {"id": f"f{n}-{i}", "to": f"+86137{n:03d}{i:05d}", "text": f"fleet f{n}-{i}"}
        for i in range(PER_BATCH)]}


def test_fleet_sends_each_message_once_and_a_killed_gateway_loses_nothing(
        tmp_path: Path, broker: Broker) -> None:
    pools = {gw: SimulatedPool(tmp_path / gw / "pool", 2, latency=(0.02, 0.005))
             for gw in GATEWAYS}
    daemons = {gw: Daemon(tmp_path / gw / "daemon", broker.port, "", gw=gw) for gw in GATEWAYS}
    hq = FleetHq(broker.port)
    try:
        for gw, d in daemons.items():
            _config(d, broker.port, pools[gw])
            d.start()
        for gw in GATEWAYS:
            wait_until(lambda gw=gw: hq.online(gw), 30, f"{gw} online")
        started = time.monotonic()
        for n in range(BEFORE_KILL):
            hq.publish(_batch(n))
        wait_until(lambda: len(pools[VICTIM].network()) >= 40, 60, "the victim to be sending")
        daemons[VICTIM].kill()
        sent_before_kill = len(pools[VICTIM].network())
        acked_before_kill = {b["batch_id"] for gw, b in hq.on("ack") if gw == VICTIM}
        for n in range(BEFORE_KILL, BATCHES):
            hq.publish(_batch(n))
        # Let the live members take what they are given, then bring the victim back.
        wait_until(lambda: sum(1 for gw, b in hq.on("ack") if b["batch_id"]
                               in {f"fleet-{n}" for n in range(BEFORE_KILL, BATCHES)})
                   >= 4, 30, "the live members to ack batches published during the outage")
        mark = len(hq.received)
        daemons[VICTIM].start()
        wait_until(lambda: hq.online(VICTIM, mark), 30, "the victim back online")

        ids = [f"f{n}-{i}" for n in range(BATCHES) for i in range(PER_BATCH)]
        wait_until(lambda: len(hq.final_states()) == len(ids), 240,
                   "every message to reach a terminal state")
        duration = time.monotonic() - started

        finals = hq.final_states()
        on_network: Counter[str] = Counter()
        per_gw = {}
        for gw, pool in pools.items():
            journal = pool.network()
            per_gw[gw] = len(journal)
            on_network.update(m["text"].removeprefix("fleet ") for m in journal)
        duplicates = {i: c for i, c in on_network.items() if c > 1}
        uncertain = sorted(i for i, (_gw, st) in finals.items() if st == "uncertain")
        lost = [i for i in ids if i not in on_network and i not in uncertain]
        acks = hq.on("ack")
        accepted_by: dict[str, list[str]] = {}
        for gw, a in acks:
            if a.get("accepted"):
                accepted_by.setdefault(a["batch_id"], []).append(gw)
        outage_batches = {f"fleet-{n}": accepted_by.get(f"fleet-{n}")
                          for n in range(BEFORE_KILL, BATCHES)}
        print(f"\nfleet: {len(ids)} messages in {BATCHES} batches, {duration:.1f} s; "
              f"sent per gateway {per_gw}; duplicates {len(duplicates)}; lost {len(lost)}; "
              f"uncertain {len(uncertain)} {uncertain[:10]}; victim sent {sent_before_kill} "
              f"before SIGKILL and had acked {len(acked_before_kill)} batches; "
              f"batches published during the outage went to {outage_batches}; "
              f"final states {Counter(st for _g, st in finals.values())}")

        assert not duplicates
        assert not lost
        assert set(finals) == set(ids)
        assert all(st in ("sent", "uncertain") for _g, st in finals.values())
        # Each batch is accepted by exactly one gateway (a redelivery is all duplicates).
        assert sorted(accepted_by) == sorted(f"fleet-{n}" for n in range(BATCHES))
        assert all(len(set(g)) == 1 for g in accepted_by.values()), accepted_by
        assert all(per_gw[gw] > 0 for gw in GATEWAYS)
        # An uncertain message is one the victim held on a modem when it died.
        assert all(finals[i][0] == VICTIM for i in uncertain)
        assert len(uncertain) <= 2 * 2  # at most one per port (and per retry)
        for d in daemons.values():
            assert d.stop() == 0
    finally:
        hq.close()
        for d in daemons.values():
            if d.alive:
                d.kill()
        for pool in pools.values():
            pool.stop()
