"""AT handlers for SIM slots, SIM-detect after a switch, and what the network holds per card.

Mixed into SimModem. AT behaviour (K = number of slots, registered only when K > 1):

- AT+CSUS=?  -> +CSUS: (0-<K-1>)      AT+CSUS? -> +CSUS: <slot>   (3GPP 27.007 §8.66)
- AT+CSUS=<slot>: +CME ERROR: 3 while AT+CFUN is 1; the client takes the radio down (CFUN=0/4),
  selects, then AT+CFUN=1. Out of range: +CME ERROR: 4. The selected slot again: OK, no switch.
- AT+QDSIM=<slot> / AT+QDSIM? / AT+QDSIM=? (Quectel only): allowed with the radio on.

A switch (either command, or the GPIO multiplexer via the control socket) leaves the modem
without a SIM for the bank's switch delay: AT+CPIN? and SIM reads give +CME ERROR: 10, AT+CREG?
shows 2 (searching) with the radio on, sends fail with +CMS ERROR: 310. Afterwards every read
shows the new card. An empty slot stays at CME 10, a broken one answers CME 13.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

from modem.sim.atcmd import (
    CME_OPERATION_NOT_ALLOWED,
    CME_OPERATION_NOT_SUPPORTED,
    Info,
    cme,
    int_args,
)
from modem.sim.faults import CardFaults
from modem.sim.modem_base import ModemBase
from modem.sim.slots import SLOT_BROKEN, SLOT_READY, HeldItem, SimCard, SlotBank

if TYPE_CHECKING:
    from collections.abc import Callable

    from modem.sim.device import SimModem

SIM_ABSENT = "absent"
SIM_BROKEN = "broken"
RADIO_ON = 1


class SlotCommands(ModemBase):
    """+CSUS/+QDSIM, the switch delay, and reports/replies held for a card that is switched out."""

    # ----- which card, in what state

    @property
    def sim(self) -> SimCard:
        """The card in the selected slot."""
        return self._bank.active_card

    @property
    def bank(self) -> SlotBank:
        """The port's slots."""
        return self._bank

    def faults_of(self, card: SimCard) -> CardFaults:
        """The card's own conditions, or the port's Faults on a single-slot port."""
        return card.faults or self._faults

    @property
    def card_faults(self) -> CardFaults:
        """Conditions of the selected card."""
        return self.faults_of(self.sim)

    @property
    def switching(self) -> bool:
        """True while SIM-detect settles after a switch (no SIM, searching)."""
        return self._bank.settling

    @property
    def sim_state(self) -> str:
        """What the modem sees in the holder: ready, absent, pin or broken."""
        slot = self._bank.active_slot
        if self._bank.settling or slot.state not in (SLOT_READY, SLOT_BROKEN):
            return SIM_ABSENT
        if slot.state == SLOT_BROKEN:
            return SIM_BROKEN
        return self.card_faults.sim_state

    # ----- AT handlers

    def _slot_command(self, name: str, radio_must_be_off: bool, form: str, args: str) -> Info:
        count = len(self._bank)
        if form == "test":
            return [f"{name}: (0-{count - 1})"]
        if form == "read":
            return [f"{name}: {self._bank.active}"]
        values = int_args(args) if form == "set" else []
        if len(values) != 1 or not 0 <= values[0] < count:
            raise cme(CME_OPERATION_NOT_SUPPORTED)
        if radio_must_be_off and self.settings["cfun"] == RADIO_ON:
            raise cme(CME_OPERATION_NOT_ALLOWED)
        self.select_slot(values[0])
        return []

    def _csus(self, form: str, args: str) -> Info:
        return self._slot_command("+CSUS", True, form, args)

    def _qdsim(self, form: str, args: str) -> Info:
        return self._slot_command("+QDSIM", False, form, args)

    # ----- switching

    def select_slot(self, slot: int) -> bool:
        """Select `slot`; SIM-detect drops for the switch delay. False: already selected."""
        if slot == self._bank.active:
            return False
        self._start_detect(self._bank.select(slot))
        return True

    def card_inserted(self) -> None:
        """A card appeared in the selected slot: the modem reads it after the switch delay."""
        self._start_detect(self._bank.select(self._bank.active))

    def _start_detect(self, generation: int) -> None:
        self._schedule(self._bank.switch_delay_s, partial(self._sim_detected, generation))

    def _sim_detected(self, generation: int) -> None:
        if self._bank.settle(generation):
            self.smsc = self.sms_center  # the new card's EF_SMSP
            self.deliver_held()

    # ----- what the network holds for cards that are switched out

    def attached(self, slot: int) -> bool:
        """True when `slot` is selected, its card present and read (not settling)."""
        bank = self._bank
        return slot == bank.active and not bank.settling and bank.active_slot.state == SLOT_READY

    def hold(self, slot: int, kind: str, deliver: Callable[[SimModem], object]) -> None:
        """Keep `deliver` for the card in `slot` until it is attached, at most the hold time."""
        card = self._bank.slot(slot).card
        item = HeldItem(kind, self.clock() + timedelta(seconds=self._bank.hold_s), deliver)
        card.held.append(item)
        self._schedule(self._bank.hold_s, partial(self._expire, card, item))

    def _expire(self, card: SimCard, item: HeldItem) -> None:
        if any(held is item for held in card.held):
            card.held = [held for held in card.held if held is not item]
            card.held_dropped += 1

    def deliver_held(self) -> int:
        """Hand the selected card what the network holds for it, if attached and registered.

        Items past their hold time are dropped (counted in held_dropped). Returns how many
        were delivered."""
        card = self.sim
        if not card.held or not self.attached(self._bank.active) or not self.on_air:
            return 0
        now = self.clock()
        items, card.held = card.held, []
        delivered = 0
        for item in items:
            if item.expires <= now:
                card.held_dropped += 1
                continue
            item.deliver(self)  # type: ignore[arg-type]  # self is the SimModem
            delivered += 1
        return delivered
