"""A batch over 1 MB is validated in a child process (daemon/validator.py): HQ sees the
same BatchAck and the same statuses as when the daemon validates it itself."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.hq import Hq
from tests.support.wait import wait_until

MESSAGES = 12_000  # ~1.2 MB with the template's vars: over the child's threshold
TEMPLATE = "尊敬的{name}，您的积分{points}分将于{date}到期。回复TD退订"


def _big_batch(batch_id: str) -> dict[str, Any]:
    messages: list[Any] = [
        {"id": f"{batch_id}-{i}", "to": f"+86138{i:08d}",
         "vars": {"name": "林瓊", "points": i, "date": "11月30日"}} for i in range(MESSAGES)]
    messages[10] = {"id": f"{batch_id}-bad", "to": "12345", "vars": {
        "name": "x", "points": 1, "date": "y"}}
    messages[20] = {"id": f"{batch_id}-1", "to": "+8613800000001", "vars": {
        "name": "x", "points": 1, "date": "y"}}  # the same id twice: a duplicate
    messages[30] = {"id": f"{batch_id}-novar", "to": "+8613800000030", "vars": {}}
    messages[40] = {"id": f"{batch_id}-stopped", "to": "+8613900000040",
                    "vars": {"name": "x", "points": 1, "date": "y"}}
    messages[-1] = ["not", "an", "object"]
    return {"batch_id": batch_id, "template": TEMPLATE, "messages": messages}


@pytest.mark.parametrize("in_child", [True, False])
def test_a_big_batch_gets_the_same_verdict_either_way(
        pool_factory: Any, daemon_factory: Any, hq: Hq, in_child: bool) -> None:
    pool = pool_factory(1)
    extra = "" if in_child else "\n[queue]\nvalidate_in_child = false\n"
    daemon = daemon_factory(pool, extra=extra)
    daemon.start()
    hq.wait_online()
    hq.publish("cmd", {"cmd_id": "p", "cmd": "pause"})
    hq.publish("cmd", {"cmd_id": "s", "cmd": "stoplist_add", "numbers": ["+8613900000040"]})
    wait_until(lambda: len(hq.on("reply")) == 2, 10, "pause and stoplist_add")

    hq.publish("outbox", _big_batch("big"))
    ack = hq.wait_ack("big", timeout=120)
    assert ack["accepted"] == MESSAGES - 5
    assert ack["duplicates"] == 1
    assert sorted((r["id"], r["code"]) for r in ack["rejected"]) == [
        ("#11999", "bad_message"), ("big-bad", "invalid_number"),
        ("big-novar", "template_var_missing"), ("big-stopped", "opted_out")]
    line = wait_until(lambda: next((ln for ln in daemon.log().splitlines()
                                    if "event='batch_accepted'" in ln), None), 10, "the log")
    assert re.search(r"validated_by='(\w+)'", line).group(1) == (  # type: ignore[union-attr]
        "child" if in_child else "intake")

    # One `queued` status per accepted message, each with its own seq, in order.
    queued = wait_until(lambda: (q := [s for s in hq.on("status") if s["state"] == "queued"])
                        and len(q) == MESSAGES - 5 and q, 60, "every queued status")
    assert len({s["id"] for s in queued}) == MESSAGES - 5
    seqs = [s["seq"] for s in queued]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert ack["seq"] < seqs[0]

    hq.publish("outbox", _big_batch("big"))  # again: every accepted id is a duplicate
    again = wait_until(lambda: [a for a in hq.on("ack") if a.get("batch_id") == "big"][1:], 120,
                       "the second BatchAck")[0]
    assert (again["accepted"], again["duplicates"]) == (0, MESSAGES - 4)
