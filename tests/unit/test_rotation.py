"""daemon/rotation: which card a multi-slot port uses, as a plain function of a clock."""

from __future__ import annotations

import pytest

from daemon.rotation import Decision, Rotation, Slot, choose_slot

T0 = 1_800_000_000.0  # any fixed time: the clock is an argument
A, B, C = "8986000000000000001", "8986000000000000002", "8986000000000000003"


def _slots() -> list[Slot]:
    return [Slot(0, A), Slot(1, B), Slot(2, C)]


def _choose(rotation: Rotation, now: float, *, sent: int = 0, since: float = T0,
            used: dict[str, int] | None = None,
            held: dict[str, str] | None = None) -> Decision | None:
    slots = _slots()
    counts = used if used is not None else {A: 5, B: 1, C: 3}
    holds = held or {}
    return choose_slot(slots[0], slots, holds.get, lambda i: counts.get(i, 0), rotation,
                       sent, since, now)


@pytest.mark.parametrize(("rotation", "now", "sent", "expected"), [
    (Rotation(), T0 + 86400, 1000, None),  # both off: a free card stays forever
    (Rotation(after_minutes=30), T0 + 29 * 60 + 59, 0, None),
    (Rotation(after_minutes=30), T0 + 30 * 60, 0, Decision(1, "rotation after 30 minutes")),
    (Rotation(after_minutes=0.5), T0 + 30, 0, Decision(1, "rotation after 0.5 minutes")),
    (Rotation(after_messages=10), T0 + 3600, 9, None),
    (Rotation(after_messages=10), T0, 10, Decision(1, "rotation after 10 messages")),
    # whichever measure comes first: messages before minutes
    (Rotation(after_messages=10, after_minutes=30), T0 + 31 * 60, 10,
     Decision(1, "rotation after 10 messages")),
    (Rotation(after_messages=10, after_minutes=30), T0 + 31 * 60, 2,
     Decision(1, "rotation after 30 minutes")),
])
def test_a_free_card_rotates_only_once_its_turn_is_over(
        rotation: Rotation, now: float, sent: int, expected: Decision | None) -> None:
    assert _choose(rotation, now, sent=sent) == expected


def test_the_minutes_count_from_when_the_card_was_selected() -> None:
    rotation = Rotation(after_minutes=10)
    selected_at = T0 + 3600
    assert _choose(rotation, selected_at + 9 * 60, since=selected_at) is None
    assert _choose(rotation, selected_at + 10 * 60, since=selected_at) == Decision(
        1, "rotation after 10 minutes")


def test_a_turn_over_moves_only_towards_a_less_used_card() -> None:
    rotation = Rotation(after_minutes=1)
    assert _choose(rotation, T0 + 60, used={A: 1, B: 1, C: 4}) is None
    assert _choose(rotation, T0 + 60, used={A: 2, B: 7, C: 1}) == Decision(
        2, "rotation after 1 minutes")


def test_a_held_card_leaves_at_once_and_never_for_a_held_one() -> None:
    assert _choose(Rotation(), T0, held={A: "day"}) == Decision(1, "day")
    assert _choose(Rotation(), T0, held={A: "day", B: "hour"}) == Decision(2, "day")
    assert _choose(Rotation(after_minutes=1), T0 + 3600,
                   held={A: "day", B: "hour", C: "benched"}) is None


def test_an_unusable_slot_waits_for_its_retry_time() -> None:
    slots = _slots()
    slots[1].unusable_until = T0 + 100
    slots[2].unusable_until = T0 + 100

    def choose(now: float) -> Decision | None:
        return choose_slot(slots[0], slots, {A: "hour"}.get, lambda i: 0, Rotation(), 0, T0,
                           now)

    assert choose(T0 + 99) is None
    assert choose(T0 + 100) == Decision(1, "hour")
