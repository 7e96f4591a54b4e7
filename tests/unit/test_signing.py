"""Replay protection of signed batches: the intake and a real SQLite store, no broker.

Each test drives the intake thread the way paho does (submit, wait for the ack) and
reads the BatchAcks HQ would hear from the store's outbox.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from daemon import intake
from daemon.batch import BatchLimits
from daemon.config import Settings, parse
from daemon.intake import Intake, batch_verifier
from daemon.mqtt import Incoming
from daemon.signing import LEGACY_SEEN_FILE, sign, signature
from daemon.validator import BIG_PAYLOAD_BYTES, Validator
from store.base import StoreUnavailable
from store.store import Store
from tests.support.wait import wait_until

KEY = b"0123456789abcdef0123456789abcdef"
NOW = 1_800_000_000.0
MAX_AGE_S, MAX_SKEW_S = 300, 30
DEADLINE_S = 20.0


def _settings(tmp_path: Path) -> Settings:
    key_file = tmp_path / "hmac.key"
    if not key_file.exists():
        key_file.write_bytes(KEY + b"\n")
        key_file.chmod(0o600)
    return parse({"gateway": {"id": "gw-01", "data_dir": str(tmp_path / "data")},
                  "security": {"batch_hmac_key_file": str(key_file),
                               "max_batch_age_s": MAX_AGE_S, "max_clock_skew_s": MAX_SKEW_S}})


class Gateway:
    """The store and the intake as the daemon builds them at start-up."""

    def __init__(self, tmp_path: Path, now: float, validator: Validator | None = None) -> None:
        settings = _settings(tmp_path)
        self.now = now
        self.store = Store(settings.data_dir)
        self._acked: list[Incoming] = []
        self.intake = Intake(self.store, BatchLimits("CN", 3), high_water=1_000_000,
                             clock=lambda: self.now, ack=self._acked.append,
                             on_committed=lambda: None,
                             verifier=batch_verifier(settings, self.store, now),
                             validator=validator)
        self.intake.start()

    def publish(self, payload: bytes, ts: int) -> dict[str, Any]:
        """A signed batch as HQ publishes it; the BatchAck it got."""
        before = len(self._acked)
        self.intake.submit(Incoming("smsgw/gw-01/outbox", payload, mid=before, qos=1,
                                    properties=tuple(sign(payload, KEY, ts))))
        wait_until(lambda: len(self._acked) > before, DEADLINE_S, "the broker ack")
        return self.acks()[-1]

    def acks(self) -> list[dict[str, Any]]:
        return [json.loads(e.body) for e in self.store.pending_events(0, 1_000_000)
                if e.topic == "ack"]

    def queued(self) -> int:
        return self.store.unsent_count()

    def stop(self) -> None:
        self.intake.stop()
        self.intake.join(DEADLINE_S)
        self.store.close()


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Start the gateway (again: a restart on the same data_dir)."""
    started: list[Gateway] = []

    def start(now: float = NOW, validator: Validator | None = None) -> Gateway:
        if started:
            started[-1].stop()
        started.append(Gateway(tmp_path, now, validator))
        return started[-1]

    yield start
    started[-1].stop()


def _batch(name: str, n: int = 2) -> bytes:
    return json.dumps({"batch_id": name, "messages": [
        {"id": f"{name}-{i}", "to": f"+86138{i:08d}", "text": f"{name} {i}"}
        for i in range(n)]}).encode()


def _code(ack: dict[str, Any]) -> str | None:
    return ack.get("error", {}).get("code")


def test_a_replayed_batch_is_refused_also_after_a_restart(
        gateways: Callable[..., Gateway]) -> None:
    gw = gateways()
    payload, ts = _batch("b"), int(NOW)
    assert gw.publish(payload, ts)["accepted"] == 2
    assert _code(gw.publish(payload, ts)) == "replayed_batch"
    gw = gateways(NOW + 60)  # the restart: the signature is in the database
    assert _code(gw.publish(payload, ts)) == "replayed_batch"
    # Signed again, the same batch is a new one: its ids count as duplicates.
    again = gw.publish(payload, ts + 60)
    assert (again["accepted"], again["duplicates"]) == (0, 2)
    assert gw.queued() == 2


@pytest.mark.parametrize("payload", [
    b"not json", json.dumps({"batch_id": "b", "messages": "none"}).encode()])
def test_a_signed_batch_answered_bad_batch_is_refused_when_replayed(
        gateways: Callable[..., Gateway], payload: bytes) -> None:
    gw = gateways()
    assert _code(gw.publish(payload, int(NOW))) == "bad_batch"
    gw = gateways(NOW + 1)
    assert _code(gw.publish(payload, int(NOW))) == "replayed_batch"


def test_a_batch_whose_commit_failed_is_taken_when_the_disk_has_room_again(
        gateways: Callable[..., Gateway], monkeypatch: pytest.MonkeyPatch) -> None:
    """Its signature goes with the batch: a batch not stored is no replay on the retry."""
    monkeypatch.setattr(intake, "STORE_RETRY_S", 0.01)
    real = Store.transaction
    failures = [StoreUnavailable("database or disk is full")]

    @contextmanager
    def commit_fails_once(self: Store) -> Iterator[None]:
        with real(self):
            yield
            if failures:  # at COMMIT: SQLite rolls the whole transaction back
                raise failures.pop()

    monkeypatch.setattr(Store, "transaction", commit_fails_once)
    gw = gateways()
    payload, ts = _batch("b"), int(NOW)
    assert gw.publish(payload, ts)["accepted"] == 2
    assert not failures
    assert [_code(a) for a in gw.acks()] == [None]
    assert _code(gw.publish(payload, ts)) == "replayed_batch"
    assert gw.queued() == 2


def test_a_replay_check_the_disk_cannot_answer_keeps_the_batch_for_a_retry(
        gateways: Callable[..., Gateway], monkeypatch: pytest.MonkeyPatch) -> None:
    """An I/O error while looking the signature up is no reason to drop the batch."""
    monkeypatch.setattr(intake, "STORE_RETRY_S", 0.01)
    gw = gateways()
    real = gw.store._db.execute_sql
    failures = [sqlite3.OperationalError("disk I/O error")]

    def read_fails_once(sql: str, params: Any = None) -> Any:
        if failures and sql.startswith("SELECT 1 FROM seen_signature"):
            raise failures.pop()
        return real(sql, params)

    monkeypatch.setattr(gw.store._db, "execute_sql", read_fails_once)
    ack = gw.publish(_batch("b"), int(NOW))
    assert not failures
    assert ack["accepted"] == 2 and [_code(a) for a in gw.acks()] == [None]
    assert gw.queued() == 2


def test_a_big_batch_validated_in_a_child_is_refused_when_replayed(
        gateways: Callable[..., Gateway]) -> None:
    validator = Validator()
    validator.warm_up()
    n = BIG_PAYLOAD_BYTES // 50
    payload = _batch("big", n)
    wait_until(lambda: validator.wanted(payload), DEADLINE_S, "the fork server")
    gw = gateways(validator=validator)
    assert gw.publish(payload, int(NOW))["accepted"] == n
    assert _code(gw.publish(payload, int(NOW))) == "replayed_batch"
    assert gw.queued() == n


def test_a_signature_outside_the_window_is_pruned(
        gateways: Callable[..., Gateway], tmp_path: Path) -> None:
    gw = gateways()
    assert gw.publish(_batch("old"), int(NOW))["accepted"] == 2
    later = NOW + MAX_AGE_S + MAX_SKEW_S + 1
    gw = gateways(later)  # start-up forgets it
    assert _code(gw.publish(_batch("old"), int(NOW))) == "replayed_batch"  # for its age
    assert gw.publish(_batch("new"), int(later))["accepted"] == 2
    with sqlite3.connect(gw.store.path) as db:
        assert db.execute("SELECT count(*) FROM seen_signature").fetchone()[0] == 1


def test_the_seen_signatures_file_of_an_older_version_is_imported_once(
        gateways: Callable[..., Gateway], tmp_path: Path) -> None:
    """An upgrade inside the window does not let HQ's last batches in again."""
    fresh, expired = _batch("fresh"), _batch("expired")
    ts_fresh, ts_expired = int(NOW) - 10, int(NOW) - MAX_AGE_S - MAX_SKEW_S - 5
    data = tmp_path / "data"
    data.mkdir()
    legacy = data / LEGACY_SEEN_FILE
    legacy.write_text(f"{ts_expired} {signature(expired, KEY, ts_expired)}\n"
                      f"{ts_fresh} {signature(fresh, KEY, ts_fresh)}\n"
                      f"{ts_fresh} {signature(fresh, KEY, ts_fresh)[:20]}")  # torn mid-append
    gw = gateways()
    assert not legacy.exists()
    assert _code(gw.publish(fresh, ts_fresh)) == "replayed_batch"
    gw = gateways(NOW + 1)  # the file is gone: the database alone remembers it
    assert _code(gw.publish(fresh, ts_fresh)) == "replayed_batch"
    assert gw.publish(_batch("other"), int(NOW))["accepted"] == 2
    assert gw.queued() == 2
    with sqlite3.connect(gw.store.path) as db:
        assert db.execute("SELECT count(*) FROM seen_signature").fetchone()[0] == 2
