"""What is wrong with the gateway, as a technician needs it: named faults, worst first.

`assess(snapshot)` is pure: the LEDs, `smsgw status` and the tests all read the
same verdict. `observe(gw)` takes the snapshot from a running gateway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from daemon.quota import BENCHED
from store.sims import PERIODS

UP_STATES = frozenset({"ready", "sending"})
DOWN_STATES = frozenset({"absent", "fault", "quarantined"})
# +CME ERROR 10..15: SIM not inserted, PIN/PUK required, SIM failure/busy/wrong.
_SIM_TROUBLE = re.compile(r"\bSIM\b|\bPIN\b|\bPUK\b|CME ERROR: 1[0-5]\b", re.IGNORECASE)
_NOT_REGISTERED = re.compile(r"not registered", re.IGNORECASE)
_NO_ANSWER = re.compile(r"no answer|time(d)? ?out", re.IGNORECASE)
# What the dispatcher holds a SIM by that a technician should see: a quota period, or a
# bench (operator block, repeated failures). GAP (limits.min_gap_s) is pacing, not a fault.
HOLDS = frozenset({*PERIODS, BENCHED})


class Fault(Enum):
    """A fault a technician can fix; the value is its LED blink code (and its priority)."""

    DISK_FULL = 1
    NO_BROKER = 2
    MODEM_FAULT = 3
    HUNG_MODEM = 4
    DEAD_SIM = 5
    NO_SIGNAL = 6
    SIM_OVER_QUOTA = 7

    @property
    def label(self) -> str:
        """The fault's name in logs, `smsgw status` and the docs, e.g. "no_broker"."""
        return self.name.lower()


# What the technician should do; hardware/README.md has the longer table.
ADVICE: dict[Fault, str] = {
    Fault.DISK_FULL: "the database cannot be written: free space in gateway.data_dir",
    Fault.NO_BROKER: "the MQTT broker is unreachable: check the network and mqtt.host/port",
    Fault.MODEM_FAULT: "a modem is absent or failing: check its USB cable, hub and power",
    Fault.HUNG_MODEM: "a modem stopped answering: check its power supply; it is being reset",
    Fault.DEAD_SIM: "a SIM is missing, PIN-locked or broken: reseat it, turn its PIN off",
    Fault.NO_SIGNAL: "a modem is not registered on the network: check antenna and coverage",
    Fault.SIM_OVER_QUOTA: "a SIM reached its operator's sending cap: it rests until the cap lifts",
}


class Pool(StrEnum):
    """How much of the modem pool can send."""

    ALL_READY = "all_ready"
    DEGRADED = "degraded"
    NONE = "none"


@dataclass(frozen=True)
class PortSnapshot:
    """What the gateway knows of one port."""

    port: str
    state: str
    last_error: str | None = None
    registered: bool = False
    signal: int | None = None
    held_by: str | None = None  # the dispatcher's hold on its SIM: "hour", "benched"...

    @property
    def over_quota(self) -> bool:
        return self.held_by in HOLDS

    @property
    def detail(self) -> str:
        """Why this port is at fault, for `smsgw status` and the journal."""
        if self.over_quota:
            why = BENCHED if self.held_by == BENCHED else f"at its {self.held_by} limit"
            return f"{self.port}: SIM {why}"
        return f"{self.port}: {self.last_error or self.state}"


@dataclass(frozen=True)
class Snapshot:
    """Everything `assess` looks at."""

    broker_connected: bool
    ports: tuple[PortSnapshot, ...] = ()
    store_error: str | None = None


@dataclass(frozen=True)
class Finding:
    """One fault, the ports it concerns and why it was raised."""

    fault: Fault
    ports: tuple[str, ...] = ()
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"fault": self.fault.label, "code": self.fault.value, "ports": list(self.ports),
                "detail": self.detail, "advice": ADVICE[self.fault]}


@dataclass(frozen=True)
class Health:
    """The verdict: faults worst first (lowest code first) and the pool's state."""

    faults: tuple[Finding, ...]
    pool: Pool
    ready: int = 0
    total: int = 0

    @property
    def worst(self) -> Finding | None:
        return self.faults[0] if self.faults else None

    def as_dict(self) -> dict[str, Any]:
        return {"pool": self.pool.value, "ready": self.ready, "total": self.total,
                "faults": [f.as_dict() for f in self.faults]}


def port_fault(port: PortSnapshot) -> Fault | None:
    """The fault one port shows, or None while it is up (or opening for the first time)."""
    if port.over_quota:
        return Fault.SIM_OVER_QUOTA
    if port.state in UP_STATES:
        return None
    if port.state == "absent":
        return Fault.MODEM_FAULT
    error = port.last_error or ""
    if _SIM_TROUBLE.search(error):
        return Fault.DEAD_SIM
    if _NOT_REGISTERED.search(error):
        return Fault.NO_SIGNAL
    if _NO_ANSWER.search(error):
        return Fault.HUNG_MODEM
    if port.state in DOWN_STATES or error:
        return Fault.MODEM_FAULT
    return None  # opening, no failure yet


def assess(snapshot: Snapshot) -> Health:
    """Name every fault in `snapshot`, worst first, and rate the pool."""
    findings: list[Finding] = []
    if snapshot.store_error:
        findings.append(Finding(Fault.DISK_FULL, detail=snapshot.store_error))
    if not snapshot.broker_connected:
        findings.append(Finding(Fault.NO_BROKER, detail="not connected to the MQTT broker"))
    by_fault: dict[Fault, list[PortSnapshot]] = {}
    for port in snapshot.ports:
        fault = port_fault(port)
        if fault is not None:
            by_fault.setdefault(fault, []).append(port)
    for fault, ports in by_fault.items():
        detail = "; ".join(p.detail for p in ports)
        findings.append(Finding(fault, tuple(p.port for p in ports), detail))
    findings.sort(key=lambda f: f.fault.value)
    ready = sum(1 for p in snapshot.ports if p.state in UP_STATES and not p.over_quota)
    total = len(snapshot.ports)
    if total and ready == total:
        pool = Pool.ALL_READY
    elif ready:
        pool = Pool.DEGRADED
    else:
        pool = Pool.NONE
    return Health(tuple(findings), pool, ready, total)


def observe(gw: Any) -> Snapshot:
    """The snapshot of a running `daemon.gateway.Gateway` (cheap: no database query)."""
    ports = []
    held: dict[str, str] = gw.dispatcher.quota_blocked  # iccid -> period
    for worker in list(gw.workers.values()):
        v = worker.view()
        ports.append(PortSnapshot(port=v.port, state=str(v.state.value),
                                  last_error=v.last_error, registered=v.registered,
                                  signal=v.signal, held_by=held.get(v.iccid or "")))
    return Snapshot(broker_connected=bool(gw.mqtt.connected), ports=tuple(ports),
                    store_error=gw.store.write_error or gw.intake.store_error)


FAULT_DEBOUNCE_S = 3.0  # a fault must last this long to be logged (start-up, a reconnect)


class FaultWatch:
    """Logs `fault_raised` / `fault_cleared` once per change: the journal's view of `assess`."""

    def __init__(self, log: Any, debounce_s: float = FAULT_DEBOUNCE_S) -> None:
        self._log = log
        self._debounce_s = debounce_s
        self._since: dict[Fault, float] = {}  # first seen, not yet logged
        self._raised: set[Fault] = set()

    def note(self, health: Health, now: float) -> None:
        current = {f.fault: f for f in health.faults}
        for fault, finding in current.items():
            if fault in self._raised:
                continue
            first = self._since.setdefault(fault, now)
            if now - first >= self._debounce_s:
                self._raised.add(fault)
                self._log.warning("fault_raised", fault=fault.label, code=fault.value,
                                  ports=",".join(finding.ports) or None,
                                  detail=finding.detail, advice=ADVICE[fault])
        for fault in list(self._since):
            if fault not in current:
                del self._since[fault]
        for fault in sorted(self._raised - set(current), key=lambda f: f.value):
            self._raised.discard(fault)
            self._log.info("fault_cleared", fault=fault.label, code=fault.value)
