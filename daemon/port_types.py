"""What a port worker is told (PortConfig) and what it shows (PortState, PortView)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from daemon.failures import Ladder
from daemon.quota import QuotaPolicy
from daemon.slots import SlotConfig


class PortState(StrEnum):
    """Where a port is; changed only by `PortWorker._set_state`, which logs it."""

    ABSENT = "absent"
    OPENING = "opening"
    READY = "ready"
    SENDING = "sending"
    FAULT = "fault"
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class PortView:
    """A snapshot of a port for state reports."""

    port: str
    state: PortState
    imei: str | None
    imsi: str | None
    iccid: str | None
    operator: str | None
    signal: int | None
    registered: bool
    last_error: str | None
    slots: list[dict[str, Any]] = field(default_factory=list)  # multi-SIM ports only


@dataclass(frozen=True)
class PortConfig:
    """The per-port settings a worker needs."""

    baudrate: int
    cmgs_timeout_s: float
    ladder: Ladder
    quota: QuotaPolicy  # for the calendar periods the SIM counters count in
    max_attempts: int = 3
    retry_backoff_s: float = 30.0
    bench_after_failures: int = 3
    bench_s: float = 1800.0
    slots: SlotConfig = field(default_factory=lambda: SlotConfig("auto", 2, 90.0, 3600.0, 0))
