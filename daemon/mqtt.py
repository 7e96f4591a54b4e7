"""The two MQTT connections: `control` (publishes everything, takes commands, carries the
last will) and `intake` (takes batches, acked by hand only after they are on disk).

Two connections because holding back PUBACKs on one connection holds back everything
on it: while the queue is over high_water the intake stops acking and the broker keeps
the batches, yet commands still flow on the control connection.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from daemon import logs
from daemon.config import MqttSettings

QOS = 1
RECONNECT_MIN_S = 1
# Unacked batches the broker may push to us at once; the rest wait at the broker.
INTAKE_RECEIVE_MAXIMUM = 2
CONTROL_INFLIGHT = 100
FLEET_TOPIC = "smsgw/fleet/outbox"


@dataclass(frozen=True)
class Incoming:
    """One MQTT message waiting for us to process and (for intake) to ack."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    # MQTT 5 user properties of the PUBLISH, in order (the batch signature travels here).
    properties: tuple[tuple[str, str], ...] = ()
    received_at: float = field(default_factory=time.monotonic)  # when paho handed it over


class MqttLink:
    """Owns both paho clients and their network threads."""

    def __init__(self, settings: MqttSettings, gateway_id: str, will: dict[str, Any],
                 on_batch: Callable[[Incoming], None], on_command: Callable[[Incoming], None],
                 on_puback: Callable[[int], None], on_online: Callable[[], None]) -> None:
        self._settings = settings
        self.root = f"smsgw/{gateway_id}"
        self._on_batch = on_batch
        self._on_command = on_command
        self._on_puback = on_puback
        self._on_online = on_online
        self._log = logs.get("mqtt")
        self.subscribed = threading.Event()
        self.control_connected = threading.Event()
        self._connect_errors: dict[str, str] = {}
        self._connected_links: set[str] = set()
        self.control = self._client(f"smsgw-{gateway_id}", manual_ack=False)
        self.intake = self._client(f"smsgw-{gateway_id}-outbox", manual_ack=True)
        self.control.will_set(f"{self.root}/state", json.dumps(will), qos=QOS, retain=True)
        self.control.max_inflight_messages_set(CONTROL_INFLIGHT)
        self.control.on_connect = self._control_connected
        self.control.on_disconnect = self._control_disconnected
        self.control.on_message = self._guard(self._command_message)
        self.control.on_publish = self._guard(self._published)
        self.intake.on_connect = self._intake_connected
        self.intake.on_disconnect = self._intake_disconnected
        self.intake.on_subscribe = self._guard(self._intake_subscribed)
        self.intake.on_message = self._guard(self._batch_message)

    def _client(self, client_id: str, manual_ack: bool) -> paho.Client:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=paho.MQTTv5, manual_ack=manual_ack)
        # An exception in a callback would kill paho's thread while it still says
        # "connected": log it instead.
        client.suppress_exceptions = True
        client.reconnect_delay_set(RECONNECT_MIN_S, self._settings.reconnect_max_s)
        if self._settings.username:
            client.username_pw_set(self._settings.username, _password(self._settings))
        if self._settings.tls:
            tls_configure(client, self._settings)
        link = "intake" if manual_ack else "control"
        client.on_connect_fail = lambda _c, _u: self._connect_failed(link)
        return client

    def _connect_properties(self, receive_maximum: int | None = None) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._settings.session_expiry_s
        if receive_maximum:
            props.ReceiveMaximum = receive_maximum
        return props

    def start(self) -> None:
        """Connect in the background; a broker that is down at boot is retried for ever."""
        s = self._settings
        for client, recv_max in ((self.control, None), (self.intake, INTAKE_RECEIVE_MAXIMUM)):
            client.connect_async(s.host, s.port, keepalive=s.keepalive, clean_start=False,
                                 properties=self._connect_properties(recv_max))
            client.loop_start()

    def stop(self) -> None:
        for client in (self.intake, self.control):
            client.disconnect()
            client.loop_stop()

    def stop_intake(self) -> None:
        """Disconnect the batch connection only: unacked batches go back to the broker."""
        self.intake.disconnect()
        self.intake.loop_stop()

    def publish_event(self, topic_suffix: str, payload: str, retain: bool) -> int:
        """Hand one payload to paho (QoS 1); returns the mid its PUBACK will carry."""
        info = self.control.publish(f"{self.root}/{topic_suffix}", payload.encode("utf-8"),
                                    qos=QOS, retain=retain)
        return int(info.mid)

    def ack_batch(self, item: Incoming) -> None:
        """Tell the broker the batch is ours (it is on disk)."""
        self.intake.ack(item.mid, item.qos)

    @property
    def connected(self) -> bool:
        return self.control_connected.is_set() and self.subscribed.is_set()

    # --- paho callbacks (paho's threads: keep them short) -------------------

    def _guard(self, fn: Callable[..., None]) -> Callable[..., None]:
        def wrapper(*args: Any) -> None:
            try:
                fn(*args)
            except Exception:
                self._log.exception("mqtt_callback_failed", callback=fn.__name__)
        return wrapper

    def _connect_failed(self, link: str) -> None:
        """paho calls this inside its `except` block: the exception says why (TLS, refused)."""
        error = sys.exc_info()[1]
        self._note_failure(link, f"{type(error).__name__}: {error}" if error else "unknown")

    def _note_failure(self, link: str, text: str) -> None:
        """Log a failed connection attempt once per distinct reason, not once per retry."""
        if self._connect_errors.get(link) != text:
            self._connect_errors[link] = text
            self._log.warning("broker_unreachable", link=link, error=text,
                              tls=self._settings.tls)

    def _control_connected(self, client: paho.Client, _u: Any, flags: Any, reason: Any,
                           _p: Any) -> None:
        self._connect_errors.pop("control", None)
        if reason.is_failure:
            self._log.warning("broker_refused", link="control", reason=str(reason))
            return
        client.subscribe(f"{self.root}/cmd", qos=QOS)
        self.control_connected.set()
        self._log.info("broker_connected", link="control",
                       session_present=bool(flags.session_present))
        if self.subscribed.is_set():
            self._on_online()

    def _control_disconnected(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if self.control_connected.is_set():
            self._log.warning("broker_lost", link="control", reason=str(reason))
        else:  # dropped before CONNACK: with TLS 1.3 a refused certificate shows up here
            self._note_failure("control", f"closed before CONNACK: {reason}")
        self.control_connected.clear()

    def _intake_connected(self, client: paho.Client, _u: Any, _f: Any, reason: Any,
                          _p: Any) -> None:
        self._connect_errors.pop("intake", None)
        self._connected_links.add("intake")
        if reason.is_failure:
            self._log.warning("broker_refused", link="intake", reason=str(reason))
            return
        topics = [(f"{self.root}/outbox", QOS)]
        if self._settings.fleet_group:
            topics.append((f"$share/{self._settings.fleet_group}/{FLEET_TOPIC}", QOS))
        client.subscribe(topics)

    def _intake_disconnected(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if self.subscribed.is_set():
            self._log.warning("broker_lost", link="intake", reason=str(reason))
        elif "intake" not in self._connected_links:
            self._note_failure("intake", f"closed before CONNACK: {reason}")
        self._connected_links.discard("intake")
        self.subscribed.clear()

    def _intake_subscribed(self, _c: Any, _u: Any, _mid: int, reasons: list[Any],
                           _p: Any) -> None:
        if any(r.is_failure for r in reasons):
            self._log.error("subscribe_refused", reasons=[str(r) for r in reasons])
            return
        self.subscribed.set()
        if self.control_connected.is_set():
            self._on_online()

    def _batch_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        self._on_batch(Incoming(msg.topic, bytes(msg.payload), msg.mid, msg.qos,
                                user_properties(msg)))

    def _command_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        self._on_command(Incoming(msg.topic, bytes(msg.payload), msg.mid, msg.qos))

    def _published(self, _c: Any, _u: Any, mid: int, _reason: Any, _p: Any) -> None:
        self._on_puback(mid)


def user_properties(msg: paho.MQTTMessage) -> tuple[tuple[str, str], ...]:
    """The MQTT 5 user properties of a received message (none on MQTT 3.1.1)."""
    props = getattr(msg, "properties", None)
    pairs = getattr(props, "UserProperty", None) or []
    return tuple((str(k), str(v)) for k, v in pairs)


def tls_configure(client: paho.Client, settings: MqttSettings) -> None:
    """TLS with the pinned CA (or the system store) and our client certificate, if any."""
    client.tls_set(ca_certs=settings.tls_ca or None, certfile=settings.tls_cert or None,
                   keyfile=settings.tls_key or None, cert_reqs=ssl.CERT_REQUIRED,
                   tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.tls_insecure_set(settings.tls_insecure)


def _password(settings: MqttSettings) -> str:
    """From a systemd credential when one is named, else from password_file."""
    if settings.password_credential:
        directory = os.environ.get("CREDENTIALS_DIRECTORY", "")
        path = Path(directory) / settings.password_credential
    elif settings.password_file:
        path = Path(settings.password_file)
    else:
        return ""
    return path.read_text(encoding="utf-8").strip()
