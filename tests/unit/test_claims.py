"""Claims between the dispatcher and the port workers: every message committed `sending`
is held by exactly one port, or goes back to the queue without using up an attempt.

Real Store on a real SQLite file and real PortWorkers (their threads not started, no
modem: an absent device node), driven step by step to reach the interleavings.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon.dispatcher import Dispatcher, SendPolicy
from daemon.failures import Ladder
from daemon.optout import OptOutMatcher
from daemon.port_types import PortConfig, PortState
from daemon.ports import PortWorker
from daemon.quota import Limits, QuotaPolicy
from daemon.receiver import ReceivePolicy
from daemon.rotation import Slot
from daemon.slots import SlotConfig, SlotKeeper
from modem.port import ModemInfo
from store.base import StoreUnavailable
from store.intake import NewMessage
from store.store import Claimed, Store

NOW = 1_790_000_000.0
QUOTA = QuotaPolicy(ZoneInfo("Asia/Shanghai"), Limits(), {})


def _msg(i: int) -> NewMessage:
    return NewMessage(f"m{i}", "b", f"+86138001380{i:02d}", "hi", "gsm7", 1, 5, None, None,
                      False, False)


def _worker(store: Store, name: str, iccid: str) -> PortWorker:
    w = PortWorker(f"/dev/{name}", PortConfig(115200, 30.0, Ladder(base_backoff_s=0.0), QUOTA),
                   store, lambda: NOW, lambda significant: None,
                   ReceivePolicy("CN", 60.0, OptOutMatcher(), "", 3), lambda: None)
    w._info = ModemInfo(w.path, "imei", iccid, "imsi", "x", "y")
    w._state = PortState.READY
    return w


def _rows(store: Store) -> dict[str, tuple[str, str | None, int]]:
    with sqlite3.connect(store.path) as db:
        return {h: (s, p, a) for h, s, p, a in
                db.execute("SELECT hq_id, state, port, attempts FROM message")}


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store(tmp_path)
    s.accept_batch("b", [_msg(i) for i in range(6)], [], NOW)
    yield s
    s.close()


def _sending(store: Store, first: Claimed, port: PortWorker) -> None:
    port._job = first
    port._state = PortState.SENDING


def test_a_port_claimed_by_one_round_is_not_claimed_again_by_another(store: Store) -> None:
    idle = _worker(store, "ttyIDLE", "iccid-idle")
    finishing = _worker(store, "ttyFIN", "iccid-fin")
    ports = [idle, finishing]
    dispatcher = Dispatcher(store, lambda: ports, lambda: NOW, SendPolicy(QUOTA, None, 0, ()))
    first = store.claim_many([(1, finishing.name, "iccid-fin")], NOW)[0]
    assert first is not None
    _sending(store, first, finishing)
    real_assign = idle.assign
    taken: list[Claimed | None] = []
    worker = threading.Thread(target=lambda: taken.append(dispatcher.settle_and_take(
        finishing, lambda: store.mark_sent(first.id, NOW))))

    def assign_after_another_round(job: Claimed) -> bool:
        # The dispatcher thread between its commit and its hand-over: the worker
        # that just sent starts its own round now; it must wait for the hand-over.
        if not worker.is_alive():
            worker.start()
            worker.join(0.5)
            assert worker.is_alive(), "a round ran between a commit and its hand-over"
        return real_assign(job)

    idle.assign = assign_after_another_round  # type: ignore[method-assign]
    dispatcher._hand_out()
    worker.join(5)
    held = {j.hq_id for j in (idle._job, *taken) if j is not None}
    sending = {h for h, (state, _p, _a) in _rows(store).items() if state == "sending"}
    assert sending == held and len(held) == 2


def test_a_job_waiting_on_a_port_whose_modem_went_away_goes_back_to_the_queue(
        store: Store) -> None:
    gone = _worker(store, "ttyGONE", "iccid-gone")  # no such device node: unplugged
    following = store.claim_many([(1, gone.name, "iccid-gone")], NOW)[0]
    _sending(store, following, gone)
    gone._step()
    assert gone._job is None
    assert _rows(store)["m0"] == ("queued", None, 0)  # the claim used up no attempt


def test_a_port_that_stopped_refuses_a_job_and_the_message_is_queued_again(
        store: Store) -> None:
    stopped = _worker(store, "ttySTOP", "iccid-stop")
    stopped._release_unsent(closing=True)
    dispatcher = Dispatcher(store, lambda: [stopped], lambda: NOW,
                            SendPolicy(QUOTA, None, 0, ()))
    dispatcher._hand_out()
    assert stopped._job is None
    assert all(state == "queued" and attempts == 0
               for state, _p, attempts in _rows(store).values())


def test_a_job_claimed_for_the_card_before_a_switch_is_given_back(store: Store) -> None:
    port = _worker(store, "ttyMULTI", "card-b")  # it switched from card-a meanwhile
    job = store.claim_many([(1, port.name, "card-a")], NOW)[0]
    assert job is not None and job.iccid == "card-a"
    port._job = job
    port._send(job)
    assert _rows(store)["m0"] == ("queued", None, 0)


def test_a_full_disk_inside_the_policy_round_is_reported_as_such(store: Store) -> None:
    finishing = _worker(store, "ttyFIN", "iccid-fin")
    dispatcher = Dispatcher(store, lambda: [finishing], lambda: NOW,
                            SendPolicy(QUOTA, None, 0, ()))
    first = store.claim_many([(1, finishing.name, "iccid-fin")], NOW)[0]
    assert first is not None
    _sending(store, first, finishing)

    def disk_full(*_args: Any) -> Any:
        # What SQLite does on SQLITE_FULL: it rolls the whole transaction back itself.
        store._db.connection().execute("ROLLBACK")
        raise sqlite3.OperationalError("database or disk is full")

    store.claim_many = disk_full  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable, match="database or disk is full"):
        dispatcher.settle_and_take(finishing, lambda: store.mark_sent(first.id, NOW))
    assert store.write_error == "database or disk is full"
    assert _rows(store)["m0"][0] == "sending"  # nothing committed: the worker retries


def test_min_gap_pacing_is_no_reason_to_switch_cards(store: Store) -> None:
    policy = QuotaPolicy(ZoneInfo("Asia/Shanghai"), Limits(min_gap_s=3.0), {})
    store.note_sim("card-a", "imsi-a", "ttyMULTI", "imei")
    first = store.claim_many([(1, "ttyMULTI", "card-a")], NOW)[0]
    assert first is not None
    store.mark_sent(first.id, NOW, policy.keys(NOW))  # card-a sent just now: inside its gap
    keeper = SlotKeeper(None, "ttyMULTI", SlotConfig("csus", 2, 5.0, 60.0, 0),  # type: ignore[arg-type]
                        store, policy, lambda: NOW + 0.01, logging.getLogger("test"))
    a, b = Slot(0, "card-a"), Slot(1, "card-b")
    keeper._slots, keeper._active = [a, b], a
    assert keeper.maybe_switch(lambda reason: None) is None


def test_the_chunks_of_one_batch_keep_its_order(tmp_path: Path) -> None:
    store = Store(tmp_path)
    chunks = [([_msg(i) for i in range(0, 3)], []), ([_msg(i) for i in range(3, 6)], [])]
    store.accept_batch_chunks("big", iter(chunks), NOW)
    assert [c.hq_id for c in store.peek_queued(10)] == [f"m{i}" for i in range(6)]
    store.close()


def test_a_sim_held_by_its_hour_is_not_reported_held_once_the_hour_has_passed(
        store: Store) -> None:
    """The LEDs and the state read the holds between rounds, and rounds stop with the queue."""
    quota = QuotaPolicy(ZoneInfo("Asia/Shanghai"), Limits(per_hour=1), {})
    port = _worker(store, "ttyQ", "iccid-q")
    clock = [NOW]
    dispatcher = Dispatcher(store, lambda: [port], lambda: clock[0],
                            SendPolicy(quota, None, 0, ()))
    first = store.claim_many([(1, port.name, "iccid-q")], NOW)[0]
    assert first is not None
    store.mark_sent(first.id, NOW, quota.keys(NOW))
    port._state = PortState.READY
    dispatcher._hand_out()
    assert port._job is None and dispatcher.quota_blocked == {"iccid-q": "hour"}

    store.cancel_batch("b", NOW)  # nothing left to send: no round will look again
    clock[0] = NOW + 3600
    dispatcher._hand_out()
    assert dispatcher.quota_blocked == {}
