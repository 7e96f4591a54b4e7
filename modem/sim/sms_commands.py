"""AT handlers for SMS settings and storage, and what the network pushes in; mixed into SimModem."""

from __future__ import annotations

from modem.sim.atcmd import (
    CME_OPERATION_NOT_SUPPORTED,
    CMS_INVALID_MEMORY_INDEX,
    CMS_OPERATION_NOT_ALLOWED,
    CMS_SIM_NOT_INSERTED,
    Info,
    cme,
    cms,
    int_args,
    plain,
    quoted,
)
from modem.sim.deliver import EncodedPdu
from modem.sim.modem_base import ModemBase
from modem.sim.storage import DELFLAG_STATS, STAT_ALL, STAT_REC_UNREAD, Memory

READ_MEMORIES = ("SM", "ME", "SR")  # <mem1>: read and delete
STORE_MEMORIES = ("SM", "ME")  # <mem2>, <mem3>: write and receive
CHARSETS = ("IRA", "GSM", "UCS2", "HEX", "PCCP", "PCDN", "8859-1")
CRLF = "\r\n"
# +CNMI <ds> routing of status reports.
DS_NONE, DS_INLINE, DS_STORED = 0, 1, 2


class SmsCommands(ModemBase):
    """+CSCA/+CSMP/+CSCS/+CNMI/+CPMS, +CMGL/+CMGR/+CMGD, and inbound SMS and report routing."""

    def memory(self, name: str) -> Memory:
        """Return the memory called `name` ("SM" lives on the SIM, "ME"/"SR" in the modem)."""
        return {"SM": self.sim.sm, "ME": self._memories.me, "SR": self._memories.sr}[name]

    def _usable(self, name: str) -> Memory:
        if name == "SM" and self.sim_state != "ready":
            raise cms(CMS_SIM_NOT_INSERTED)
        return self.memory(name)

    def _unsolicited(self, *lines: str) -> None:
        # Written at once, whatever the client is doing: real modems do not wait for idle.
        self._emit("".join(CRLF + line + CRLF for line in lines).encode("latin-1"))

    # ----- settings

    def _csca(self, form: str, args: str) -> Info:
        if form == "read":
            return [f'+CSCA: "{self.smsc}",145']
        if form == "test":
            return []
        if form != "set" or not args.strip():
            raise cms(CMS_OPERATION_NOT_ALLOWED)
        self.smsc = args.split(",")[0].strip().strip('"')
        return []

    def _csmp(self, form: str, args: str) -> Info:
        if form == "read":
            return ["+CSMP: " + ",".join(str(v) for v in self.csmp)]
        if form == "test":
            return []
        values = int_args(args) if form == "set" else []
        if len(values) != 4 or not all(0 <= v <= 255 for v in values):
            raise plain()
        self.csmp = (values[0], values[1], values[2], values[3])
        return []

    def _cscs(self, form: str, args: str) -> Info:
        if form == "test":
            return ["+CSCS: (" + ",".join(f'"{c}"' for c in CHARSETS) + ")"]
        if form == "read":
            return [f'+CSCS: "{self.cscs}"']
        chosen = quoted(args) if form == "set" else []
        if len(chosen) != 1 or chosen[0] not in CHARSETS:
            raise cme(CME_OPERATION_NOT_SUPPORTED)
        self.cscs = chosen[0]
        return []

    def _cnmi(self, form: str, args: str) -> Info:
        if form == "read":
            return ["+CNMI: " + ",".join(str(v) for v in self.cnmi)]
        if form == "test":
            ds = ",".join(str(d) for d in range(self.make.cnmi_max_ds + 1))
            return [f"+CNMI: (0-3),(0-3),(0,2),({ds}),(0,1)"]
        values = int_args(args) if form == "set" else []
        if not 1 <= len(values) <= 5:
            raise plain()
        values += [0] * (5 - len(values))
        # SIM800 knows only ds=0/1 and answers a plain ERROR to ds=2, like the real one.
        if values[3] > self.make.cnmi_max_ds or values[0] > 3 or values[1] > 3:
            raise plain()
        self.cnmi = (values[0], values[1], values[2], values[3], values[4])
        return []

    def _cpms(self, form: str, args: str) -> Info:
        if form == "test":
            reads = ",".join(f'"{m}"' for m in READ_MEMORIES)
            stores = ",".join(f'"{m}"' for m in STORE_MEMORIES)
            return [f"+CPMS: ({reads}),({stores}),({stores})"]
        if form == "read":
            shown = []
            for name in self.cpms:
                mem = self.memory(name)
                shown.append(f'"{name}",{mem.used},{mem.capacity}')
            return ["+CPMS: " + ",".join(shown)]
        chosen = quoted(args) if form == "set" else []
        allowed = (READ_MEMORIES, STORE_MEMORIES, STORE_MEMORIES)
        if not 1 <= len(chosen) <= 3 or any(m not in allowed[i] for i, m in enumerate(chosen)):
            raise cms(CMS_OPERATION_NOT_ALLOWED)
        for name in chosen:
            self._usable(name)
        merged = (*chosen, *self.cpms[len(chosen) :])
        self.cpms = (merged[0], merged[1], merged[2])
        counts = [f"{self.memory(m).used},{self.memory(m).capacity}" for m in self.cpms]
        return ["+CPMS: " + ",".join(counts)]

    # ----- storage

    def _pdu_mode(self) -> None:
        if self.settings["cmgf"] != 0:
            raise cms(CMS_OPERATION_NOT_ALLOWED)  # text-mode reading is not simulated

    def _cmgl(self, form: str, args: str) -> Info:
        if form == "test":
            return ["+CMGL: (0-4)"]
        if form not in ("set", "exec"):
            raise plain()
        self._pdu_mode()
        values = int_args(args) if form == "set" else [STAT_REC_UNREAD]
        if len(values) != 1 or not STAT_REC_UNREAD <= values[0] <= STAT_ALL:
            raise cms(CMS_OPERATION_NOT_ALLOWED)
        info: Info = []
        for index, stored in self._usable(self.cpms[0]).listing(values[0]):
            info += [f"+CMGL: {index},{stored.stat},,{stored.tpdu_length}", stored.pdu]
        return info

    def _cmgr(self, form: str, args: str) -> Info:
        if form == "test":
            return []
        if form != "set":
            raise plain()
        self._pdu_mode()
        values = int_args(args)
        if len(values) != 1:
            raise plain()
        stored = self._usable(self.cpms[0]).read(values[0])
        if stored is None:
            raise cms(CMS_INVALID_MEMORY_INDEX)
        return [f"+CMGR: {stored.stat},,{stored.tpdu_length}", stored.pdu]

    def _cmgd(self, form: str, args: str) -> Info:
        mem = self._usable(self.cpms[0])
        if form == "test":
            return [f"+CMGD: ({','.join(str(i) for i in sorted(mem.slots))}),(0-4)"]
        values = int_args(args) if form == "set" else []
        if not 1 <= len(values) <= 2:
            raise plain()
        index, delflag = values[0], values[1] if len(values) == 2 else 0
        if delflag != 0 and delflag not in DELFLAG_STATS:
            raise cms(CMS_OPERATION_NOT_ALLOWED)
        if delflag == 0 and not 1 <= index <= mem.capacity:
            raise cms(CMS_INVALID_MEMORY_INDEX)
        mem.delete(index, delflag)
        return []

    # ----- what the network pushes in

    def receive_sms(self, pdu: EncodedPdu, memory: str | None, notify: bool) -> int | None:
        """Store one delivered part (in <mem3> unless named) and announce it; None when full."""
        name = memory or self.cpms[2]
        index = self.memory(name).store(pdu.hex, pdu.tpdu_length)
        if index is None:
            self._faults.refused_full += 1
            return None
        if notify and self.cnmi[1] != 0:  # <mt>=0: the modem never indicates new messages
            self._unsolicited(f'+CMTI: "{name}",{index}')
        return index

    def receive_report(self, pdu: EncodedPdu) -> dict[str, object]:
        """Route one status report by +CNMI <ds>: inline +CDS, stored +CDSI, or dropped."""
        ds = self.cnmi[3]
        if ds == DS_INLINE:
            self._unsolicited(f"+CDS: {pdu.tpdu_length}" + CRLF + pdu.hex)
            self.card_faults.reports_sent += 1
            return {"delivered_as": "cds"}
        if ds == DS_STORED:
            index = self._memories.sr.store(pdu.hex, pdu.tpdu_length)
            if index is None:
                self._faults.refused_full += 1
                return {"delivered_as": "refused_full"}
            self._unsolicited(f'+CDSI: "SR",{index}')
            self.card_faults.reports_sent += 1
            return {"delivered_as": "cdsi", "index": index}
        return {"delivered_as": "none"}  # ds=0: the modem routes no reports at all
