"""Promise 1 and 2 across crashes: SIGKILL the daemon at random moments while it sends."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

from tests.faults.helpers import (
    batch,
    expected_pairs,
    final_states,
    log_tail,
    network_duplicates,
    terminal_problems,
    unique_by_seq,
)
from tests.support.hq import Hq
from tests.support.wait import wait_until

SEED = 20261123
KILLS = 30
SETTLE_S = 3
PORTS = 4
MESSAGES = 500
# Kill points are spread over the run by progress: each kill waits until the network has
# taken a seeded random number of messages, then a random extra moment (which, when two
# points are close, lands it in the next start-up: settling, port opening, intake).
EXTRA_DELAY_S = (0.0, 0.6)


def test_sigkill_at_random_points_loses_and_repeats_nothing(
        pool_factory: Any, daemon_factory: Any, hq: Hq) -> None:
    began = time.monotonic()
    rng = random.Random(SEED)
    pool = pool_factory(PORTS)
    # settle_s: how long a message left `sending` may wait for a status report that
    # proves it went out; short here so the test ends soon after the last kill.
    daemon = daemon_factory(pool, extra=f"\n[send]\nsettle_s = {SETTLE_S}\n")
    daemon.start()
    hq.wait_online()
    b = batch("crash", "k", MESSAGES)
    hq.publish("outbox", b)
    ids = set(expected_pairs(b))

    kill_log: list[tuple[float, int]] = []  # (delay, network size at the kill)
    targets = sorted(rng.sample(range(1, MESSAGES - 10), KILLS))
    for target in targets:
        wait_until(lambda t=target: len(pool.network()) >= t, 60,
                   f"{target} messages on the network")
        delay = rng.uniform(*EXTRA_DELAY_S)
        time.sleep(delay)  # the fault's random timing, not a wait for a condition
        daemon.kill()
        kill_log.append((delay, len(pool.network())))
        daemon.start()

    def settled() -> bool:
        return not any(i for i in ids if i not in final_states(hq, ids)
                       or final_states(hq, ids)[i]["state"] not in
                       {"sent", "failed", "uncertain", "expired", "cancelled"})

    try:
        wait_until(lambda: len(final_states(hq, ids)) == len(ids) and settled(), 120,
                   "every message to reach a terminal state")
    except AssertionError:
        raise AssertionError(f"not settled; daemon log tail:\n{log_tail(daemon)}") from None
    assert daemon.stop() == 0
    duration = time.monotonic() - began

    acks = unique_by_seq([a for a in hq.on("ack") if a.get("batch_id") == "crash"])
    finals = Counter(s["state"] for s in final_states(hq, ids).values())
    dups = network_duplicates(pool)
    network = pool.network()
    kills_while_sending = sum(1 for i, (_, n) in enumerate(kill_log)
                              if n < MESSAGES and (i == 0 or n > 0))
    print(f"\ncrash figures: kills={KILLS} ports={PORTS} finals={dict(finals)} "
          f"network={len(network)} acks={[(a['accepted'], a['duplicates']) for a in acks]} "
          f"duration={duration:.1f}s kills_before_network_complete={kills_while_sending} "
          f"network_at_kills={[n for _, n in kill_log]}")

    assert sum(a["accepted"] for a in acks) == MESSAGES, acks
    assert terminal_problems(hq, ids) == []
    assert dups == {}, f"sent twice: {dups}"
    expected = expected_pairs(b)
    on_network = {(m["to"], m["text"]) for m in network}
    assert on_network <= set(expected.values())
    sent_ids = {i for i, s in final_states(hq, ids).items() if s["state"] == "sent"}
    assert {expected[i] for i in sent_ids} <= on_network, "HQ heard sent, network did not"
    assert finals["uncertain"] <= KILLS * PORTS
    assert set(finals) <= {"sent", "uncertain"}, finals
