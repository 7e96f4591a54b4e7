"""The card slots of one multi-SIM port: discovery, the rotation decision, the switch.

Runs on the port's own thread (it talks to the modem). Identity follows the card:
after a switch the ICCID is read again, so quotas, counters, benches and report
matching stay with the card wherever it sits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from daemon.mux import SimMux
from daemon.quota import QuotaPolicy, blocked
from daemon.rotation import Decision, Rotation, Slot, choose_slot
from modem.errors import ModemError, ModemGone, SimNotReady
from modem.port import ModemInfo, ModemPort
from store import events
from store.store import Store


@dataclass(frozen=True)
class SlotConfig:
    method: str  # "auto", "csus", "qdsim" or "none"
    count: int  # slots when the method cannot list them (qdsim)
    switch_timeout_s: float
    bad_slot_retry_s: float
    rotate_after_messages: int
    rotate_after_minutes: float = 0.0
    # The GPIO multiplexer wired to the port at a path (daemon/mux.py), if any: such a
    # port switches by GPIO ("gpio") whatever `method` says.
    mux_for: Callable[[str], SimMux | None] | None = None

    @property
    def rotation(self) -> Rotation:
        return Rotation(self.rotate_after_messages, self.rotate_after_minutes)


class SlotKeeper:
    """Owned by one PortWorker."""

    def __init__(self, modem: ModemPort, port: str, config: SlotConfig, store: Store,
                 quota: QuotaPolicy, clock: Callable[[], float], log: Any) -> None:
        self._modem = modem
        self._port = port
        self._config = config
        self._store = store
        self._quota = quota
        self._clock = clock
        self._log = log
        self._method = "none"
        self._slots: list[Slot] = []
        self._active: Slot | None = None
        self._sent_since_switch = 0
        self._active_since = 0.0  # clock() when the active card was selected
        self._mux: SimMux | None = None

    @property
    def multi(self) -> bool:
        return len(self._slots) > 1 and self._active is not None

    def discover(self, info: ModemInfo) -> None:
        """After (re)opening: learn the slots (AT+CSUS=? or config) and which one is active."""
        method = self._config.method
        indexes: list[int] = []
        mux = self._config.mux_for(self._modem.path) if self._config.mux_for else None
        if mux is not None:
            method, indexes = "gpio", list(range(mux.cards))
        elif method in ("auto", "csus"):
            indexes = self._modem.slots()
            method = "csus" if indexes else "none"
        elif method == "qdsim":
            indexes = list(range(self._config.count))
        if len(indexes) < 2:
            self._slots, self._active, self._method = [], None, "none"
            return
        if [s.index for s in self._slots] != indexes:
            self._slots = [Slot(i) for i in indexes]  # a different modem: forget the old map
        self._method, self._mux = method, mux
        current = mux.active if mux is not None else self._modem.active_slot(method)
        active = next((s for s in self._slots if s.index == current), self._slots[0])
        if active is not self._active:
            self._active_since = self._clock()
        self._active = active
        self._active.iccid = info.iccid
        self._log.info("sim_slots", slots=indexes, active=self._active.index, method=method)

    def note_sent(self) -> None:
        self._sent_since_switch += 1

    def view(self) -> list[dict[str, Any]]:
        """Every slot for the state report: its card, whether it is active, why it is skipped."""
        now = self._clock()
        return [{"slot": s.index, "iccid": s.iccid, "active": s is self._active,
                 "method": self._method,
                 "unusable": s.reason if s.unusable_until > now else None,
                 "unusable_until": s.unusable_until if s.unusable_until > now else None}
                for s in self._slots]

    def maybe_switch(self, announce: Callable[[str], None]) -> ModemInfo | None:
        """Switch when the active card may not send and another may; the new identity, or None.

        `announce(reason)` is called before the switch starts (the port leaves service).
        Raises ModemGone when the port is lost on the way.
        """
        if not self.multi or self._active is None:
            return None
        now = self._clock()
        counters = self._store.sim_counters()
        keys = self._quota.keys(now)

        def held(iccid: str) -> str | None:
            block = blocked(self._quota, counters.get(iccid), iccid, now, keys)
            return block.period if block and not block.is_pacing else None

        def used(iccid: str) -> int:
            sim = counters.get(iccid)
            return sim.count("day", keys["day"]) if sim else 0

        decision = choose_slot(self._active, self._slots, held, used, self._config.rotation,
                               self._sent_since_switch, self._active_since, now)
        if decision is None:
            return None
        announce(f"switching to slot {decision.slot}: {decision.reason}")
        return self._switch(decision)

    def _switch(self, decision: Decision) -> ModemInfo | None:
        assert self._active is not None
        before = self._active
        target = next(s for s in self._slots if s.index == decision.slot)
        started = time.monotonic()
        try:
            info = self._select(target.index)
            if info.iccid == before.iccid:
                raise SimNotReady(f"the modem still shows slot {before.index}'s card")
        except ModemGone:
            raise
        except ModemError as e:
            self._skip(target, str(e))
            # Back to the card we had, so the port is not left without one.
            return self._select(before.index)
        took = time.monotonic() - started
        target.iccid = info.iccid
        self._active = target
        self._sent_since_switch = 0
        now = self._clock()
        self._active_since = now
        self._log.info("sim_switched", slot=target.index, from_iccid=before.iccid,
                       to_iccid=info.iccid, reason=decision.reason, method=self._method,
                       took_s=round(took, 1))
        self._store.add_event(events.TOPIC_EVENTS, {
            "type": "sim_switched", "at": events.rfc3339(now), "port": self._port,
            "slot": target.index, "from_iccid": before.iccid, "iccid": info.iccid,
            "reason": decision.reason, "method": self._method, "took_s": round(took, 1)})
        return info

    def _select(self, slot: int) -> ModemInfo:
        """Make `slot` the modem's card (a command, or the multiplexer) and read it."""
        if self._mux is not None:
            self._mux.select(slot)
            return self._modem.await_card(slot, self._config.switch_timeout_s)
        return self._modem.switch_slot(slot, self._method, self._config.switch_timeout_s)

    def _skip(self, slot: Slot, reason: str) -> None:
        """An empty or failing slot: report it and leave it alone for bad_slot_retry_s."""
        now = self._clock()
        slot.unusable_until = now + self._config.bad_slot_retry_s
        slot.reason = reason
        self._log.warning("sim_slot_unusable", slot=slot.index, reason=reason)
        self._store.add_event(events.TOPIC_EVENTS, {
            "type": "sim_slot_unusable", "at": events.rfc3339(now), "port": self._port,
            "slot": slot.index, "reason": reason,
            "retry_at": events.rfc3339(slot.unusable_until)})
