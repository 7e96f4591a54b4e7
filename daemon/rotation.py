"""Which SIM a multi-slot port should use: a plain function of what each slot holds.

Switching costs the port tens of seconds (radio down, card up, registration),
so the policy switches only when the active card may not send (a quota reached,
blocked by the operator, benched), or when `Rotation` says the card has had its
turn (so many messages, so many minutes) and a less used card is free, and never
to a card that is itself held.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Slot:
    """One card slot of a port, as far as the gateway knows it."""

    index: int
    iccid: str | None = None  # None until the card has been seen
    unusable_until: float = 0.0  # empty or failing: skipped until then
    reason: str = ""


@dataclass(frozen=True)
class Decision:
    """Switch to `slot` because of `reason`."""

    slot: int
    reason: str


@dataclass(frozen=True)
class Rotation:
    """When a card that may still send has had its turn (0 = never by that measure)."""

    after_messages: int = 0
    after_minutes: float = 0.0

    def due(self, sent_since_switch: int, active_since: float, now: float) -> str | None:
        """Why the active card's turn is over, or None while it is not."""
        if self.after_messages and sent_since_switch >= self.after_messages:
            return f"rotation after {sent_since_switch} messages"
        if self.after_minutes and now - active_since >= self.after_minutes * 60:
            return f"rotation after {self.after_minutes:g} minutes"
        return None


def choose_slot(active: Slot, slots: list[Slot], held: Callable[[str], str | None],
                used_today: Callable[[str], int], rotation: Rotation,
                sent_since_switch: int, active_since: float, now: float) -> Decision | None:
    """The slot to switch to now, or None to stay on `active`.

    `held(iccid)` names what keeps a card from sending ("hour", "benched"...) or is
    None; `used_today(iccid)` gives its count for choosing the least used;
    `active_since` is when the active card was selected (same clock as `now`).
    """
    why = held(active.iccid) if active.iccid else "no card"
    turn_over = rotation.due(sent_since_switch, active_since, now)
    if why is None and turn_over is None:
        return None
    reason = why or turn_over or ""
    free = [s for s in slots if s.index != active.index and s.unusable_until <= now
            and (s.iccid is None or held(s.iccid) is None)]
    if not free:
        return None  # every card is held: rest on this one until a counter resets
    known = sorted((s for s in free if s.iccid), key=lambda s: used_today(s.iccid or ""))
    unknown = [s for s in free if not s.iccid]
    if why is None and known and active.iccid and \
            used_today(known[0].iccid or "") >= used_today(active.iccid):
        return None  # rotating for balance only pays towards a less used card
    choice = (known or unknown)[0]
    return Decision(choice.index, reason)
