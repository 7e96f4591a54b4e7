"""Which SIM a multi-slot port should use: a plain function of what each slot holds.

Switching costs the port tens of seconds (radio down, card up, registration),
so the policy switches only when the active card may not send (a quota reached,
blocked by the operator, benched), or after `rotate_after_messages` when that
is configured, and never to a card that is itself held.
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


def choose_slot(active: Slot, slots: list[Slot], held: Callable[[str], str | None],
                sent_since_switch: int, rotate_after_messages: int, now: float,
                used_today: Callable[[str], int]) -> Decision | None:
    """The slot to switch to now, or None to stay on `active`.

    `held(iccid)` names what keeps a card from sending ("hour", "benched"...) or is
    None; `used_today(iccid)` gives its count for choosing the least used.
    """
    why = held(active.iccid) if active.iccid else "no card"
    if why is None and not (rotate_after_messages and
                            sent_since_switch >= rotate_after_messages):
        return None
    reason = why or f"rotation after {sent_since_switch} messages"
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
