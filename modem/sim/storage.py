"""Message memories of a modem and its SIM ("SM", "ME", "SR"), as AT+CPMS/CMGL/CMGR see them."""

from __future__ import annotations

from dataclasses import dataclass, field

# <stat> values of 27.005 3.1 in PDU mode.
STAT_REC_UNREAD = 0
STAT_REC_READ = 1
STAT_STO_UNSENT = 2
STAT_STO_SENT = 3
STAT_ALL = 4

# AT+CMGD <delflag>: which stats each flag deletes (0 = only the given index).
DELFLAG_STATS = {
    1: {STAT_REC_READ},
    2: {STAT_REC_READ, STAT_STO_SENT},
    3: {STAT_REC_READ, STAT_STO_SENT, STAT_STO_UNSENT},
    4: {STAT_REC_UNREAD, STAT_REC_READ, STAT_STO_SENT, STAT_STO_UNSENT},
}

SM_CAPACITY = 30  # SIM cards hold 10-50; 30 is a typical SIM of the field
ME_CAPACITY = 100
SR_CAPACITY = 50


@dataclass
class Stored:
    """One stored PDU: hex with SMSC, its TPDU length and its <stat>."""

    pdu: str
    tpdu_length: int
    stat: int = STAT_REC_UNREAD


@dataclass
class Memory:
    """One memory: indexes 1..capacity, each empty or holding one PDU."""

    name: str
    capacity: int
    slots: dict[int, Stored] = field(default_factory=dict)

    @property
    def used(self) -> int:
        """Number of occupied indexes."""
        return len(self.slots)

    def store(self, pdu: str, tpdu_length: int) -> int | None:
        """Put an unread PDU at the lowest free index and return it; None when full."""
        for index in range(1, self.capacity + 1):
            if index not in self.slots:
                self.slots[index] = Stored(pdu, tpdu_length)
                return index
        return None

    def read(self, index: int) -> Stored | None:
        """Return the PDU at `index` (marking it read, as AT+CMGR does) or None if empty."""
        stored = self.slots.get(index)
        if stored is not None and stored.stat == STAT_REC_UNREAD:
            result = Stored(stored.pdu, stored.tpdu_length, stored.stat)
            stored.stat = STAT_REC_READ
            return result
        return stored

    def listing(self, stat: int) -> list[tuple[int, Stored]]:
        """Return (index, PDU with its stat before reading) matching `stat`; mark unread as read."""
        result = []
        for index in sorted(self.slots):
            stored = self.slots[index]
            if stat in (STAT_ALL, stored.stat):
                result.append((index, Stored(stored.pdu, stored.tpdu_length, stored.stat)))
                if stored.stat == STAT_REC_UNREAD:
                    stored.stat = STAT_REC_READ
        return result

    def delete(self, index: int, delflag: int = 0) -> None:
        """Delete `index` (delflag 0) or every message whose stat the delflag names."""
        if delflag == 0:
            self.slots.pop(index, None)
            return
        doomed = DELFLAG_STATS[delflag]
        for i in [i for i, s in self.slots.items() if s.stat in doomed]:
            del self.slots[i]


def sim_memory() -> Memory:
    """A fresh SIM card memory ("SM")."""
    return Memory("SM", SM_CAPACITY)


@dataclass
class ModemMemories:
    """The modem's own flash: "ME" for messages, "SR" for status reports; survives replug."""

    me: Memory = field(default_factory=lambda: Memory("ME", ME_CAPACITY))
    sr: Memory = field(default_factory=lambda: Memory("SR", SR_CAPACITY))
