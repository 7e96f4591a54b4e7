"""The HQ side in a few lines: sign a batch and publish it (`smsgw hq publish`).

For integrators and tests; the daemon never imports this module.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from daemon.config import MqttSettings
from daemon.mqtt import QOS, tls_configure
from daemon.signing import sign

CONNECT_TIMEOUT_S = 10.0
PUBLISH_TIMEOUT_S = 30.0


class HqError(RuntimeError):
    """The batch could not be handed to the broker, or no BatchAck came in time."""


@dataclass(frozen=True)
class Broker:
    """Where and how HQ connects; the TLS and password fields mirror [mqtt]."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_insecure: bool = False
    client_id: str = ""


def publish_properties(payload: bytes, key: bytes | None, ts: int | None = None) -> Properties:
    """PUBLISH properties carrying the signature (none when `key` is None)."""
    props = Properties(PacketTypes.PUBLISH)
    if key is not None:
        props.UserProperty = sign(payload, key, int(time.time()) if ts is None else ts)
    return props


def publish_batch(payload: bytes, broker: Broker, gw: str, key: bytes | None = None,
                  wait_ack_s: float = 0.0) -> dict[str, Any] | None:
    """Publish one Batch (signed when `key` is given) to smsgw/{gw}/outbox, QoS 1.

    `gw = "fleet"` publishes to the fleet's shared topic. With `wait_ack_s` > 0, waits
    for the BatchAck on smsgw/+/ack naming this batch_id and returns it.
    """
    batch_id = _batch_id(payload)
    acks: list[dict[str, Any]] = []
    got_ack = threading.Event()
    subscribed = threading.Event()
    connected = threading.Event()
    client = _client(broker)

    def on_connect(c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            return
        connected.set()
        if wait_ack_s > 0:
            c.subscribe("smsgw/+/ack", qos=QOS)
        else:
            subscribed.set()

    def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(body, dict) and body.get("batch_id") == batch_id:
            acks.append(body)
            got_ack.set()

    client.on_connect = on_connect
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_message = on_message
    client.connect_async(broker.host, broker.port)
    client.loop_start()
    try:
        if not (connected.wait(CONNECT_TIMEOUT_S) and subscribed.wait(CONNECT_TIMEOUT_S)):
            raise HqError(f"could not connect to {broker.host}:{broker.port}")
        info = client.publish(f"smsgw/{gw}/outbox", payload, qos=QOS,
                              properties=publish_properties(payload, key))
        info.wait_for_publish(PUBLISH_TIMEOUT_S)
        if not info.is_published():
            raise HqError("the broker did not take the batch in time")
        if wait_ack_s > 0:
            if not got_ack.wait(wait_ack_s):
                raise HqError(f"no BatchAck for {batch_id!r} within {wait_ack_s} s")
            return acks[0]
        return None
    finally:
        client.disconnect()
        client.loop_stop()


def _client(broker: Broker) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=broker.client_id,
                         protocol=paho.MQTTv5)
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    settings = MqttSettings(tls_ca=broker.tls_ca, tls_cert=broker.tls_cert,
                            tls_key=broker.tls_key, tls_insecure=broker.tls_insecure)
    if settings.tls:
        tls_configure(client, settings)
    return client


def _batch_id(payload: bytes) -> str | None:
    try:
        found = json.loads(payload).get("batch_id")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def read_secret(path: str) -> str:
    """A password file's first line."""
    return Path(path).read_text(encoding="utf-8").strip()
