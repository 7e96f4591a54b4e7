"""A stand-in for HQ: a real paho client that publishes batches and records every reply."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support.wait import wait_until

SESSION_EXPIRY_S = 3600


class Hq:
    """Subscribed to smsgw/{gw}/# from the start, like an HQ that never misses a message."""

    def __init__(self, port: int, gw: str, client_id: str = "", topics: tuple[str, ...] = ("#",),
                 persistent: bool = False) -> None:
        self.gw = gw
        self.root = f"smsgw/{gw}"
        self.topics = topics
        self.connects = 0
        self._lock = threading.Lock()
        self.received: list[tuple[str, dict[str, Any]]] = []
        # (suffix, time.monotonic()) of everything, as paho handed it over; kept when a
        # test clears `received`.
        self._arrivals: list[tuple[str, float]] = []
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"hq-{gw}",
                                  protocol=paho.MQTTv5)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._connected
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._message
        props = None
        if persistent:  # clean start off: what arrives while the broker is down still reaches us
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S
        self.client.connect_async("127.0.0.1", port, clean_start=not persistent,
                                  properties=props)
        self.client.loop_start()
        wait_until(self._subscribed.is_set, 10, "HQ to subscribe")

    def _connected(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connects += 1
        if not reason.is_failure:
            client.subscribe([(f"{self.root}/{t}", 1) for t in self.topics])

    def _message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        suffix = msg.topic[len(self.root) + 1:]
        try:
            body = json.loads(msg.payload)
        except (ValueError, RecursionError):  # fuzz tests publish deeply nested junk here
            body = {"_raw": msg.payload}
        if not isinstance(body, dict):
            body = {"_raw": msg.payload}
        with self._lock:
            self.received.append((suffix, body))
            self._arrivals.append((suffix, time.monotonic()))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, suffix: str, payload: Any) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(f"{self.root}/{suffix}", data, qos=1).wait_for_publish(10)

    def on(self, suffix: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for topic, body in self.received if topic == suffix]

    def arrivals(self, suffix: str) -> list[float]:
        """When each message on `suffix` arrived (monotonic clock), in arrival order."""
        with self._lock:
            return [t for topic, t in self._arrivals if topic == suffix]

    def statuses(self, msg_id: str) -> list[str]:
        return [s["state"] for s in self.on("status") if s.get("id") == msg_id]

    def wait_ack(self, batch_id: str | None, timeout: float = 20) -> dict[str, Any]:
        return wait_until(
            lambda: next((a for a in self.on("ack") if a.get("batch_id") == batch_id), None),
            timeout, f"BatchAck for {batch_id}")

    def wait_online(self, timeout: float = 30) -> dict[str, Any]:
        return wait_until(
            lambda: next((s for s in reversed(self.on("state")) if s.get("online")), None),
            timeout, "the gateway to say it is online")

    def wait_final(self, ids: list[str], states: set[str], timeout: float) -> None:
        def done() -> bool:
            with self._lock:
                final = {b["id"] for t, b in self.received
                         if t == "status" and b.get("state") in states}
            return all(i in final for i in ids)
        wait_until(done, timeout, f"{len(ids)} messages to reach {sorted(states)}")
