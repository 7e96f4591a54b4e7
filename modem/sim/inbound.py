"""Plans an inbound SMS the way an SMSC delivers it: parts, their order, losses and repeats."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from modem.sim.deliver import REF_MODULO, EncodedPdu, choose_encoding, deliver_parts


@dataclass(frozen=True)
class InboundSms:
    """What inject_sms asked for, validated."""

    sender: str
    text: str
    encoding: str = "auto"
    ref_bits: int = 8
    reference: int = 0
    order: tuple[int, ...] | None = None
    drop: frozenset[int] = frozenset()
    repeat: frozenset[int] = frozenset()


def delivery_sequence(
    total: int, order: tuple[int, ...] | None, drop: frozenset[int], repeat: frozenset[int]
) -> list[int]:
    """Return the 1-based part numbers in delivery order; raise ValueError on a bad plan."""
    numbers = set(range(1, total + 1))
    sequence = list(order) if order is not None else sorted(numbers)
    if sorted(sequence) != sorted(numbers):
        raise ValueError(f'"order" must list each of the {total} parts exactly once')
    for name, chosen in (("drop", drop), ("repeat", repeat)):
        if not chosen <= numbers:
            raise ValueError(f'"{name}" names parts outside 1..{total}')
    result = []
    for number in sequence:
        if number in drop:
            continue
        # A repeated part arrives again right after itself, as an SMSC retry would.
        result += [number, number] if number in repeat else [number]
    return result


def plan(sms: InboundSms, when: datetime, smsc: str) -> tuple[list[EncodedPdu], list[int]]:
    """Encode every part and return (parts, part numbers in delivery order)."""
    encoding = choose_encoding(sms.text, sms.encoding)
    reference = sms.reference % REF_MODULO[sms.ref_bits]
    parts = deliver_parts(sms.sender, sms.text, when, encoding, sms.ref_bits, reference, smsc)
    return parts, delivery_sequence(len(parts), sms.order, sms.drop, sms.repeat)
