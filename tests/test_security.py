"""Only HQ can make it send: TLS with client certificates on a real mosquitto, the ACL,
signed batches (bad, stale, replayed — also after a restart), input limits, secret files."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from daemon.hq import publish_properties
from tests.support.broker import Broker, Pki, make_pki
from tests.support.gateway import Daemon, SimulatedPool, smsgw_command
from tests.support.hq import Hq
from tests.support.wait import wait_until

ACL = """\
# HQ: everything under smsgw/
user hq
topic readwrite smsgw/#

# Every gateway (its certificate's CN is its id): its own topics, and the fleet outbox
pattern readwrite smsgw/%u/#
pattern read smsgw/fleet/outbox
"""
PASSWORD = "s3cret-Pa55word-not-for-logs"
HMAC_KEY = b"0f1e2d3c4b5a69788796a5b4c3d2e1f0-hmac-key-not-for-logs"


def _number(i: int) -> str:
    return f"+86139{i:08d}"


def write_config(d: Daemon, port: int, pool: SimulatedPool, mqtt: str = "",
                 extra: str = "") -> None:
    """Our own config for the daemon (the support class has no room for [mqtt] keys)."""
    d.config.write_text(
        f'[gateway]\nid = "{d.gw}"\ndata_dir = "{d.dir / "data"}"\ndefault_region = "CN"\n\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nreconnect_max_s = 2\n{mqtt}\n'
        f'[modems]\nports = ["{pool.dir / "ttyGSM*"}"]\nrescan_s = 1\nreopen_backoff_s = 0.5\n'
        + extra, encoding="utf-8")


def secret(path: Path, content: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(content)
    path.chmod(mode)
    return path


class Listener:
    """A paho client (TLS when given a PKI) that records every message under `topic`."""

    def __init__(self, port: int, topic: str, pki: Pki | None = None, name: str = "hq",
                 client_id: str = "") -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.suback: list[Any] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=paho.MQTTv5)
        if pki is not None:
            self.client.tls_set(ca_certs=pki.ca(), certfile=pki.cert(name),
                                keyfile=pki.key(name), cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = self._subscribed
        self.client.on_message = self._message
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()
        wait_until(self._ready.is_set, 15, f"{name} to subscribe to {topic}")

    def _subscribed(self, _c: Any, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
        self.suback = list(reasons)
        self._ready.set()

    def _message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def bodies(self, topic: str) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(p) for t, p in self.messages if t == topic and p]

    def topics(self) -> list[str]:
        with self._lock:
            return [t for t, _p in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki", ["gw-a", "gw-b", "hq"])


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Any:
    b = Broker(tmp_path / "tls-broker", pki=pki, acl=ACL)
    b.start()
    yield b
    b.stop()


def _tls_mqtt(pki: Pki, name: str) -> str:
    return (f'tls_ca = "{pki.ca()}"\ntls_cert = "{pki.cert(name)}"\n'
            f'tls_key = "{pki.key(name)}"\n')


def test_tls_with_client_certificates_sends_a_batch_and_the_acl_holds(
        tmp_path: Path, pki: Pki, tls_broker: Broker, pool_factory: Any) -> None:
    pool = pool_factory(2)
    daemon = Daemon(tmp_path / "gw-a", tls_broker.port, "", gw="gw-a")
    write_config(daemon, tls_broker.port, pool, _tls_mqtt(pki, "gw-a"))
    hq = Listener(tls_broker.port, "smsgw/#", pki, "hq")
    try:
        daemon.start()
        wait_until(lambda: any(s.get("online") for s in hq.bodies("smsgw/gw-a/state")), 30,
                   "gw-a online over TLS")
        batch = {"batch_id": "tls-1", "messages": [
            {"id": f"t-{i}", "to": _number(i), "text": f"over TLS {i}"} for i in range(5)]}
        hq.client.publish("smsgw/gw-a/outbox", json.dumps(batch), qos=1).wait_for_publish(10)
        wait_until(lambda: len({s["id"] for s in hq.bodies("smsgw/gw-a/status")
                                if s["state"] == "sent"}) == 5, 60, "5 messages sent")
        assert len(pool.network()) == 5

        # gw-a's certificate cannot reach gw-b's topics.
        intruder = Listener(tls_broker.port, "smsgw/gw-b/#", pki, "gw-a",
                            client_id="intruder")
        # mosquitto 2.0 grants the SUBSCRIBE and checks "read" per message: nothing of
        # gw-b's reaches it (HQ's publish to gw-b, then one to gw-a it may read, in order).
        hq.client.publish("smsgw/gw-b/cmd", b'{"cmd_id": "x", "cmd": "state"}', qos=1
                          ).wait_for_publish(10)
        intruder.client.subscribe("smsgw/gw-a/probe", qos=1)
        intruder.client.publish("smsgw/gw-b/outbox", json.dumps(batch), qos=1
                                ).wait_for_publish(10)
        intruder.client.publish("smsgw/gw-a/probe", b'{"probe": 1}', qos=1
                                ).wait_for_publish(10)  # allowed: proves delivery works
        wait_until(lambda: "smsgw/gw-a/probe" in hq.topics(), 10, "the allowed publish")
        wait_until(lambda: "smsgw/gw-a/probe" in intruder.topics(), 10, "the allowed read")
        assert "smsgw/gw-b/outbox" not in hq.topics()
        assert intruder.topics() == ["smsgw/gw-a/probe"]
        assert "Denied PUBLISH" in tls_broker.log_file.read_text(errors="replace")
        intruder.close()

        # Nothing secret in the log or the retained state.
        key_pem = Path(pki.key("gw-a")).read_text()
        key_body = "".join(key_pem.splitlines()[1:-1])
        log = daemon.log()
        assert key_body[:40] not in log
        for state in hq.bodies("smsgw/gw-a/state"):
            assert key_body[:40] not in json.dumps(state)
        assert daemon.stop() == 0
    finally:
        hq.close()
        if daemon.alive:
            daemon.kill()


def test_certificate_signed_by_another_ca_is_refused(
        tmp_path: Path, pki: Pki, tls_broker: Broker, pool_factory: Any) -> None:
    rogue = make_pki(tmp_path / "rogue-pki", ["gw-a"])
    pool = pool_factory(1)
    daemon = Daemon(tmp_path / "gw-a", tls_broker.port, "", gw="gw-a")
    # The broker's CA is pinned correctly; the client certificate is from another CA.
    write_config(daemon, tls_broker.port, pool,
                 f'tls_ca = "{pki.ca()}"\ntls_cert = "{rogue.cert("gw-a")}"\n'
                 f'tls_key = "{rogue.key("gw-a")}"\n')
    hq = Listener(tls_broker.port, "smsgw/#", pki, "hq")
    try:
        daemon.start()
        wait_until(lambda: "broker_unreachable" in daemon.log()
                   or "broker_refused" in daemon.log(), 30, "the daemon to log the refusal")
        wait_until(lambda: "certificate verify failed" in tls_broker.log_file.read_text(
            errors="replace"), 10, "mosquitto to log the rejected certificate")
        assert not any(s.get("online") for s in hq.bodies("smsgw/gw-a/state"))
        assert daemon.alive
        assert daemon.stop() == 0
    finally:
        hq.close()
        if daemon.alive:
            daemon.kill()


def _signed_publish(hq: Hq, payload: bytes, key: bytes | None, ts: int | None = None) -> None:
    hq.client.publish(f"{hq.root}/outbox", payload, qos=1,
                      properties=publish_properties(payload, key, ts)).wait_for_publish(10)


def _error_ack(hq: Hq, batch_id: str | None, code: str) -> dict[str, Any]:
    return wait_until(lambda: next((a for a in hq.on("ack") if a.get("batch_id") == batch_id
                                    and a.get("error", {}).get("code") == code), None),
                      20, f"{code} for {batch_id}")


def test_signed_batches_only_and_a_replay_is_caught_even_after_a_restart(
        tmp_path: Path, broker: Broker, pool_factory: Any, hq: Hq) -> None:
    pool = pool_factory(2)
    key_file = secret(tmp_path / "hmac.key", HMAC_KEY + b"\n")
    password_file = secret(tmp_path / "password", PASSWORD.encode() + b"\n")
    daemon = Daemon(tmp_path / "gw", broker.port, "", gw="gw-test")
    write_config(daemon, broker.port, pool,
                 f'username = "gw-test"\npassword_file = "{password_file}"\n',
                 f'\n[security]\nbatch_hmac_key_file = "{key_file}"\nmax_batch_age_s = 120\n')
    daemon.start()
    hq.wait_online()

    def batch(name: str, n: int = 3) -> bytes:
        return json.dumps({"batch_id": name, "messages": [
            {"id": f"{name}-{i}", "to": _number(i), "text": f"{name} {i}"}
            for i in range(n)]}).encode()

    hq.publish("outbox", batch("unsigned"))
    _error_ack(hq, "unsigned", "unsigned_batch")
    _signed_publish(hq, batch("wrong-key"), b"another key")
    _error_ack(hq, "wrong-key", "bad_signature")
    tampered = batch("tampered")
    props = publish_properties(tampered, HMAC_KEY)
    hq.client.publish(f"{hq.root}/outbox", tampered.replace(b"tampered 0", b"tampered X"),
                      qos=1, properties=props).wait_for_publish(10)
    _error_ack(hq, "tampered", "bad_signature")
    _signed_publish(hq, batch("stale"), HMAC_KEY, int(time.time()) - 600)
    _error_ack(hq, "stale", "replayed_batch")
    _signed_publish(hq, batch("future"), HMAC_KEY, int(time.time()) + 600)
    _error_ack(hq, "future", "replayed_batch")

    # The HQ helper: `smsgw hq publish` signs and waits for the BatchAck.
    good_file = tmp_path / "good.json"
    good_file.write_bytes(batch("good"))
    out = subprocess.run([*smsgw_command(), "hq", "publish", str(good_file), "--port",
                          str(broker.port), "--gw", "gw-test", "--key-file", str(key_file),
                          "--wait-ack", "20"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["accepted"] == 3

    replay_ts = int(time.time())
    _signed_publish(hq, batch("again"), HMAC_KEY, replay_ts)
    assert hq.wait_ack("again")["accepted"] == 3
    hq.wait_final([f"{n}-{i}" for n in ("good", "again") for i in range(3)], {"sent"}, 60)
    _signed_publish(hq, batch("again"), HMAC_KEY, replay_ts)
    _error_ack(hq, "again", "replayed_batch")

    assert daemon.stop() == 0
    daemon.start()
    hq.received.clear()
    hq.wait_online()
    _signed_publish(hq, batch("again"), HMAC_KEY, replay_ts)
    _error_ack(hq, "again", "replayed_batch")
    assert len(pool.network()) == 6
    assert not [a for a in hq.on("ack") if a.get("batch_id") == "unsigned" and "error" not in a]

    # Nothing secret in the log, the retained state or anything in data_dir.
    assert daemon.stop() == 0
    log = daemon.log()
    state = hq.on("state")
    assert state
    for needle in (PASSWORD, HMAC_KEY.decode()):
        assert needle not in log
        assert all(needle not in json.dumps(s) for s in state)
        for f in (daemon.dir / "data").rglob("*"):
            if f.is_file():
                assert needle.encode() not in f.read_bytes(), f


def test_limits_are_checked_before_the_batch_is_read(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    pool = pool_factory(1)
    daemon = daemon_factory(pool, extra=(
        "\n[send]\nmax_parts = 50\n"
        "\n[security]\nmax_payload_bytes = 2048\nmax_messages_per_batch = 5\n"
        "max_text_chars = 50\n"))
    daemon.start()
    hq.wait_online()
    hq.publish("outbox", {"batch_id": "huge", "messages": [
        {"id": "h", "to": _number(1), "text": "x" * 3000}]})
    assert hq.wait_ack(None)["error"]["code"] == "payload_too_large"
    hq.publish("outbox", {"batch_id": "many", "messages": [
        {"id": f"m-{i}", "to": _number(i), "text": "hi"} for i in range(6)]})
    assert hq.wait_ack("many")["error"]["code"] == "too_many_messages"
    hq.publish("outbox", {"batch_id": "long", "messages": [
        {"id": "short", "to": _number(1), "text": "fits"},
        {"id": "long", "to": _number(2), "text": "y" * 51}]})
    ack = hq.wait_ack("long")
    assert ack["accepted"] == 1
    assert [(r["id"], r["code"]) for r in ack["rejected"]] == [("long", "too_long")]
    assert "50" in ack["rejected"][0]["reason"]
    hq.wait_final(["short"], {"sent"}, 30)
    assert daemon.stop() == 0


@pytest.mark.parametrize(("key", "mode"), [
    ("mqtt.password_file", 0o644), ("mqtt.tls_key", 0o640),
    ("security.batch_hmac_key_file", 0o604)])
def test_a_secret_file_open_to_others_stops_startup_naming_the_key(
        tmp_path: Path, pki: Pki, key: str, mode: int) -> None:
    path = secret(tmp_path / "secret", b"secret\n", mode)
    section, name = key.split(".")
    body = f'{name} = "{path}"\n'
    if name == "tls_key":
        body += f'tls_ca = "{pki.ca()}"\ntls_cert = "{pki.cert("gw-a")}"\n'
    conf = tmp_path / "smsgw.toml"
    conf.write_text(f'[gateway]\nid = "gw-a"\ndata_dir = "{tmp_path / "data"}"\n\n'
                    f'[{section}]\n{body}')
    for command in ("check-config", "run"):
        out = subprocess.run([*smsgw_command(), command, "--config", str(conf)],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 78, (command, out.stderr)
        assert key in out.stderr and "chmod 600" in out.stderr
    path.chmod(0o600)
    out = subprocess.run([*smsgw_command(), "check-config", "--config", str(conf)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert os.stat(path).st_mode & 0o077 == 0


def test_signature_is_hmac_sha256_over_ts_newline_payload_and_replays_persist(
        tmp_path: Path) -> None:
    import hashlib
    import hmac

    from daemon.signing import BatchRefused, ReplayGuard, Verifier, sign
    from store.store import Store

    payload = b'{"batch_id": "b", "messages": []}'
    props = dict(sign(payload, b"k", 1_800_000_000))
    assert props == {"smsgw-ts": "1800000000", "smsgw-sig": hmac.new(
        b"k", b"1800000000\n" + payload, hashlib.sha256).hexdigest()}
    now = 1_800_000_010.0
    store = Store(tmp_path)
    verifier = Verifier(b"k", 300, 30, ReplayGuard(store, tmp_path, now, 330))
    with store.transaction():  # the one that answers the batch
        verifier.remember(verifier.verify(payload, list(props.items()), now), now)
    store.close()
    store = Store(tmp_path)  # a restart
    again = Verifier(b"k", 300, 30, ReplayGuard(store, tmp_path, now + 5, 330))
    cases = [({}, "unsigned_batch"), ({"smsgw-ts": "x", "smsgw-sig": "0" * 64}, "bad_signature"),
             ({**props, "smsgw-sig": "0" * 64}, "bad_signature"), (props, "replayed_batch")]
    for properties, code in cases:
        with pytest.raises(BatchRefused) as refused:
            again.verify(payload, list(properties.items()), now + 5)
        assert refused.value.code == code
    # Outside the window the signature is forgotten, and refused for its age instead.
    later = ReplayGuard(store, tmp_path, now + 1000, 330)
    assert not later.seen(props["smsgw-sig"])
    store.close()
