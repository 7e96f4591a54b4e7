"""AT handlers for identity, radio and SIM state; mixed into SimModem."""

from __future__ import annotations

import re

from modem.sim.atcmd import (
    CME_NO_NETWORK_SERVICE,
    CME_OPERATION_NOT_ALLOWED,
    CME_OPERATION_NOT_SUPPORTED,
    CME_SIM_FAILURE,
    CME_SIM_NOT_INSERTED,
    CME_SIM_PIN_REQUIRED,
    Info,
    cme,
    int_args,
    plain,
)
from modem.sim.identity import iccid_ef_hex
from modem.sim.modem_base import ModemBase

# EF_ICCID as read with AT+CRSM=176 (READ BINARY) on file 12258 (0x2FE2), 10 octets.
CRSM_READ_BINARY = 176
EF_ICCID = 12258
CRSM_OK = "144,0"
CRSM_FILE_NOT_FOUND = "106,130"
PLMN_BY_OPERATOR = {"CHINA MOBILE": "46000", "CHN-UNICOM": "46001"}
CREG_NOT_REGISTERED = 0
CREG_SEARCHING = 2
# Commands AT+CLAC adds on a port with several slots.
CLAC_SLOTS = ("AT+CSUS",)
CLAC_QDSIM = ("AT+QDSIM",)
# What the SIM holder shows -> the CME error of SIM reads and AT+CPIN? (None: readable).
SIM_STATE_ERRORS = {"absent": CME_SIM_NOT_INSERTED, "broken": CME_SIM_FAILURE}
# AT+CUSD=<n>[,"<str>"[,<dcs>]] (27.007 §7.15); <n> 0/1 result code off/on, 2 cancel.
CUSD_SET = re.compile(r'([012])(?:,"([^"]*)"(?:,(\d{1,3}))?)?')
CUSD_NO_FURTHER_ACTION = 0  # <m> of the +CUSD result code: the session is over
DCS_GSM7 = 15  # the <dcs> python-gsmmodem and real networks use for text


class InfoCommands(ModemBase):
    """+CGMI-style constants, +CCID/+CRSM/+CNUM, +CSQ/+CREG/+COPS/+CFUN and +CPIN."""

    def _sim_usable(self) -> None:
        """Raise the CME error a modem gives for SIM reads when the card is absent or locked."""
        state = self.sim_state
        if state in SIM_STATE_ERRORS:
            raise cme(SIM_STATE_ERRORS[state])
        if state == "pin":
            raise cme(CME_SIM_PIN_REQUIRED)

    @property
    def on_air(self) -> bool:
        """True when the modem is registered: radio on, SIM ready, network reachable."""
        return (
            self.settings["cfun"] == 1 and self.sim_state == "ready"
            and self._faults.registered
        )  # fmt: skip

    def _constant(self, value: str, form: str, args: str) -> Info:
        if form == "test":
            return []
        if form != "exec":
            raise plain()
        return [value]

    def _cimi(self, form: str, args: str) -> Info:
        if form == "exec":
            self._sim_usable()
        return self._constant(self.sim.identity.imsi, form, args)

    def _ccid(self, form: str, args: str) -> Info:
        if form == "test":
            return []
        if form not in ("exec", "read"):
            raise plain()
        self._sim_usable()
        iccid = self.sim.identity.iccid
        return [f"+CCID: {iccid}" if self.make.ccid_prefixed else iccid]

    def _qccid(self, form: str, args: str) -> Info:
        if form == "test":
            return []
        if form != "exec":
            raise plain()
        self._sim_usable()
        return [f"+QCCID: {self.sim.identity.iccid}"]

    def _crsm(self, form: str, args: str) -> Info:
        if form == "test":
            return []
        if form != "set":
            raise plain()
        values = int_args(args.split(',"')[0])
        if len(values) < 2:
            raise cme(CME_OPERATION_NOT_SUPPORTED)
        self._sim_usable()
        if values[0] == CRSM_READ_BINARY and values[1] == EF_ICCID:
            return [f'+CRSM: {CRSM_OK},"{iccid_ef_hex(self.sim.identity.iccid)}"']
        return [f'+CRSM: {CRSM_FILE_NOT_FOUND},""']

    def _cnum(self, form: str, args: str) -> Info:
        if form == "test":
            return []
        if form != "exec":
            raise plain()
        self._sim_usable()
        number = self.sim.identity.msisdn
        return [f'+CNUM: "","{number}",145'] if number else []

    def _csq(self, form: str, args: str) -> Info:
        if form == "test":
            return ["+CSQ: (0-31,99),(0-7,99)"]
        if form != "exec":
            raise plain()
        return [f"+CSQ: {self._faults.csq if self.settings['cfun'] == 1 else 99},0"]

    def _registration(self, name: str, form: str, args: str) -> Info:
        key = name[1:].lower()
        if form == "test":
            return [f"{name}: (0-2)"]
        if form == "read":
            # Without radio or a ready SIM a modem reports 0 (not registered, not searching);
            # right after a SIM switch it searches (2) until it has read the new card.
            radio = self.settings["cfun"] == 1
            ready = radio and self.sim_state == "ready"
            stat = self._faults.creg if ready else CREG_NOT_REGISTERED
            if radio and self.switching:
                stat = CREG_SEARCHING
            return [f"{name}: {self.settings[key]},{stat}"]
        values = int_args(args) if form == "set" else []
        if len(values) != 1 or values[0] not in (0, 1, 2):
            raise cme(CME_OPERATION_NOT_SUPPORTED)
        self.settings[key] = values[0]
        return []

    def _cops(self, form: str, args: str) -> Info:
        operator = self.sim.identity.operator
        plmn = PLMN_BY_OPERATOR.get(operator, "")
        act = self.make.cops_act
        if form == "test":
            return [f'+COPS: (2,"{operator}","{operator}","{plmn}",{act}),,(0-4),(0-2)']
        if form == "read":
            if not self.on_air:
                return ["+COPS: 0"]
            shown = plmn if self.settings["cops_format"] == 2 else operator
            return [f'+COPS: 0,{self.settings["cops_format"]},"{shown}",{act}']
        values = int_args(args.split(',"')[0]) if form == "set" else []
        if not values or values[0] not in (0, 1, 2, 3, 4):
            raise cme(CME_OPERATION_NOT_SUPPORTED)
        if values[0] == 3:  # only sets the format used by the read form
            if len(values) != 2 or values[1] not in (0, 1, 2):
                raise cme(CME_OPERATION_NOT_SUPPORTED)
            self.settings["cops_format"] = values[1]
        return []

    def _cfun(self, form: str, args: str) -> Info:
        if form == "read":
            return [f"+CFUN: {self.settings['cfun']}"]
        if form == "test":
            return ["+CFUN: (0,1,4),(0,1)"]
        values = int_args(args) if form == "set" else []
        if not values or values[0] not in (0, 1, 4):
            raise cme(CME_OPERATION_NOT_SUPPORTED)
        self.settings["cfun"] = values[0]
        if values[0] == 1 and self.sim.held:
            # After this command's OK: the network retries what it held for the card.
            self._schedule(0.0, self.deliver_held)
        return []

    def _cpin(self, form: str, args: str) -> Info:
        state = self.sim_state
        if state in SIM_STATE_ERRORS and form != "test":
            raise cme(SIM_STATE_ERRORS[state])
        if form == "read":
            return ["+CPIN: SIM PIN" if state == "pin" else "+CPIN: READY"]
        if form == "test":
            return []
        # Entering a PIN is not simulated: the control socket decides the card's state.
        raise cme(CME_OPERATION_NOT_ALLOWED)

    def _cusd(self, form: str, args: str) -> Info:
        """USSD: OK at once, then the network's answer as an unsolicited +CUSD line."""
        if form == "test":
            return ["+CUSD: (0-2)"]
        if form == "read":
            return [f"+CUSD: {self.settings['cusd']}"]
        match = CUSD_SET.fullmatch(args) if form == "set" else None
        if match is None:
            raise cme(CME_OPERATION_NOT_SUPPORTED)
        self.settings["cusd"] = int(match.group(1))
        code = match.group(2)
        if code is None or self.settings["cusd"] == 2:
            return []
        self._sim_usable()
        if not self.on_air:
            raise cme(CME_NO_NETWORK_SERVICE)
        answer = self.card_faults.ussd_answer
        if self.settings["cusd"] == 1:
            line = f'+CUSD: {CUSD_NO_FURTHER_ACTION},"{answer}",{DCS_GSM7}'
            self._schedule(self._latency.draw(), lambda: self._unsolicited(line))
        return []

    def _clac(self, form: str, args: str) -> Info:
        if form != "exec":
            raise plain()
        extra: tuple[str, ...] = ()
        if len(self._bank) > 1:
            extra = CLAC_SLOTS + (CLAC_QDSIM if self.make.has_qdsim else ())
        return [*self.make.clac, *extra]
