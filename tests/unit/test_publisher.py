"""daemon/publisher: a store that refuses writes (a full disk) is waited out, not a bug."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from daemon import publisher as publisher_module
from daemon.publisher import Publisher
from store.base import StoreUnavailable
from store.store import Store
from tests.support.wait import wait_until

FULL = "database or disk is full"
RETRY_S = 0.05  # the test's pause between retries (the daemon's is seconds)
WAIT_S = 10.0


@dataclass(frozen=True)
class Row:
    seq: int
    topic: str
    body: str
    retain: bool


class FakeStore:
    """The publisher's side of the store; `failing` names the calls that raise `error` now."""

    def __init__(self, bodies: int) -> None:
        self._lock = threading.Lock()
        self.rows: dict[int, Row] = {}
        self.last_seq = 0
        self.failing: set[str] = set()
        self.error: Exception = StoreUnavailable(FULL)
        self.failures = 0
        for _ in range(bodies):
            self.add()

    def add(self) -> None:
        with self._lock:
            self.last_seq += 1
            seq = self.last_seq
            self.rows[seq] = Row(seq, "status", json.dumps({"n": seq}), False)

    def _check(self, call: str) -> None:
        if call in self.failing:
            self.failures += 1
            raise self.error

    def pending_events(self, after_seq: int, limit: int) -> list[Row]:
        self._check("pending_events")
        with self._lock:
            return [self.rows[s] for s in sorted(self.rows) if s > after_seq][:limit]

    def delete_events(self, seqs: list[int]) -> None:
        self._check("delete_events")
        with self._lock:
            for seq in seqs:
                self.rows.pop(seq, None)

    def unpublished_count(self) -> int:
        with self._lock:
            return len(self.rows)


class FakeSender:
    """The MQTT side: every publish is acknowledged at once, as a live broker does."""

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []
        self.publisher: Publisher | None = None

    def publish_event(self, topic_suffix: str, payload: str, retain: bool) -> int:
        self.published.append(json.loads(payload))
        mid = len(self.published)
        assert self.publisher is not None
        self.publisher.on_puback(mid)
        return mid

    def seqs(self) -> list[int]:
        return [p["seq"] for p in self.published]


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as entries:
        yield entries


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch, logged: list[dict[str, Any]],
            ) -> Iterator[tuple[Publisher, FakeStore, FakeSender]]:
    monkeypatch.setattr(publisher_module, "STORE_RETRY_S", RETRY_S)
    store = FakeStore(3)
    pub = Publisher(cast(Store, store), "gw-test")
    sender = FakeSender()
    sender.publisher = pub
    yield pub, store, sender
    pub.stop()
    pub.join(WAIT_S)
    assert not pub._thread.is_alive()


def _start(pub: Publisher, sender: FakeSender) -> None:
    pub.start(sender)
    pub.wake()  # as the daemon does once the broker is connected


def _tracebacks(logged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Log events that carry a traceback."""
    return [e for e in logged if "exc_info" in e or "exception" in e]


def _named(logged: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in logged if e["event"] == event]


def test_a_full_disk_delays_the_deletes_with_one_line_and_no_traceback(
        running: tuple[Publisher, FakeStore, FakeSender],
        logged: list[dict[str, Any]]) -> None:
    pub, store, sender = running
    store.failing = {"delete_events"}
    _start(pub, sender)
    # What is already on disk still goes out; only forgetting it waits for space.
    wait_until(lambda: sender.seqs() == [1, 2, 3], WAIT_S, "the stored rows published")
    wait_until(lambda: store.failures >= 3, WAIT_S, "the deletes retried")
    assert pub._thread.is_alive()
    assert store.unpublished_count() == 3
    assert pub.drain(WAIT_S)  # acknowledged, so a stop now would not wait for them

    store.failing = set()
    wait_until(lambda: store.unpublished_count() == 0, WAIT_S, "the rows deleted")
    store.add()
    pub.wake()
    wait_until(lambda: sender.seqs() == [1, 2, 3, 4], WAIT_S, "a new row published")

    (error,) = _named(logged, "store_unavailable")
    assert error["log_level"] == "error" and error["error"] == FULL
    assert len(_named(logged, "store_writable_again")) == 1
    assert _tracebacks(logged) == []


def test_a_store_that_cannot_be_read_is_published_from_once_it_recovers(
        running: tuple[Publisher, FakeStore, FakeSender],
        logged: list[dict[str, Any]]) -> None:
    pub, store, sender = running
    store.failing = {"pending_events"}
    _start(pub, sender)
    wait_until(lambda: store.failures >= 3, WAIT_S, "the reads retried")
    assert pub._thread.is_alive() and sender.published == []

    store.failing = set()
    wait_until(lambda: sender.seqs() == [1, 2, 3], WAIT_S, "the rows published")
    wait_until(lambda: store.unpublished_count() == 0, WAIT_S, "the rows deleted")
    assert [p["gw"] for p in sender.published] == ["gw-test"] * 3
    assert len(_named(logged, "store_unavailable")) == 1
    assert _tracebacks(logged) == []


def test_a_bug_still_logs_its_traceback(
        running: tuple[Publisher, FakeStore, FakeSender],
        logged: list[dict[str, Any]]) -> None:
    pub, store, sender = running
    store.failing = {"pending_events"}
    store.error = RuntimeError("a bug")
    _start(pub, sender)
    failed = wait_until(lambda: _named(logged, "publish_failed"), WAIT_S, "publish_failed")
    assert failed[0]["exc_info"] is True
    assert _named(logged, "store_unavailable") == []


def test_acknowledged_rows_left_on_a_full_disk_at_stop_are_one_line(
        running: tuple[Publisher, FakeStore, FakeSender],
        logged: list[dict[str, Any]]) -> None:
    pub, store, sender = running
    store.failing = {"delete_events"}
    _start(pub, sender)
    wait_until(lambda: sender.seqs() == [1, 2, 3], WAIT_S, "the stored rows published")
    pub.stop()
    pub.join(WAIT_S)
    assert not pub._thread.is_alive()
    assert _named(logged, "publish_final_flush_failed") == []
    _began, at_stop = _named(logged, "store_unavailable")  # one when it began, one at stop
    assert at_stop["acknowledged"] == 3 and at_stop["log_level"] == "error"
    assert _tracebacks(logged) == []
