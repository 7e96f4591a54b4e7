"""Per-SIM counters, benches and quota notices: what the sending policy reads and writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from store import events
from store.base import StoreBase
from store.models import Sim

# One statement per send: a counter whose key is another period starts again.
_COUNT_SEND = (
    "INSERT INTO sim (iccid, minute_key, minute_count, hour_key, hour_count, day_key,"
    " day_count, month_key, month_count, sent_total, last_sent_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(iccid) DO UPDATE SET "
    + ", ".join(
        f"{p}_count = CASE WHEN {p}_key IS excluded.{p}_key"
        f" THEN {p}_count + excluded.{p}_count ELSE excluded.{p}_count END,"
        f" {p}_key = excluded.{p}_key" for p in ("minute", "hour", "day", "month"))
    + ", sent_total = sent_total + excluded.sent_total, last_sent_at = excluded.last_sent_at")
_SELECT_COUNTERS = (
    "SELECT iccid, minute_key, minute_count, hour_key, hour_count, day_key, day_count,"
    " month_key, month_count, last_sent_at, blocked_until, quota_key FROM sim")


@dataclass(frozen=True)
class SimCounters:
    """A SIM's counters as stored; a counter whose key is not the current period is zero."""

    iccid: str
    keys: dict[str, str | None]
    counts: dict[str, int]
    last_sent_at: float | None
    blocked_until: float | None
    quota_key: str | None

    def count(self, period: str, current_key: str) -> int:
        return self.counts[period] if self.keys[period] == current_key else 0


PERIODS = ("minute", "hour", "day", "month")


class SimsMixin(StoreBase):
    """Methods Store gains for SIM accounting."""

    def _count_send(self, iccid: str | None, parts: int, now: float,
                    keys: dict[str, str]) -> None:
        if not iccid:
            return
        params: list[Any] = [iccid]
        for period in PERIODS:
            params += [keys[period], parts]
        self._db.execute_sql(_COUNT_SEND, (*params, parts, now))

    def sim_counters(self, iccids: list[str] | None = None) -> dict[str, SimCounters]:
        """The counters of these SIMs (every SIM when None), by ICCID."""
        with self._lock:
            if iccids is None:
                rows = self._db.execute_sql(_SELECT_COUNTERS).fetchall()
            else:
                rows = self._rows_where_in(_SELECT_COUNTERS, "iccid", iccids)
        return {r[0]: SimCounters(
            iccid=r[0], keys=dict(zip(PERIODS, r[1:9:2], strict=True)),
            counts=dict(zip(PERIODS, r[2:9:2], strict=True)), last_sent_at=r[9],
            blocked_until=r[10], quota_key=r[11]) for r in rows}

    def bench_sim(self, iccid: str, until: float, reason: str, port: str, now: float) -> None:
        """Keep a failing SIM out of dispatch until `until`, and tell HQ (sim_blocked)."""
        with self._tx():
            Sim.insert(iccid=iccid).on_conflict_ignore().execute()
            Sim.update(blocked_until=until).where(Sim.iccid == iccid).execute()
            events.add(events.TOPIC_EVENTS, {
                "type": "sim_blocked", "at": events.rfc3339(now), "port": port, "iccid": iccid,
                "until": events.rfc3339(until), "reason": reason})

    def note_quota(self, iccid: str, key: str, port: str, period: str, limit: int,
                   resumes: float, now: float) -> None:
        """Announce once per period that a SIM reached a limit (sim_quota_reached)."""
        with self._tx():
            sim = Sim.get_or_none(Sim.iccid == iccid)
            if sim is None or sim.quota_key == key:
                return
            Sim.update(quota_key=key).where(Sim.iccid == iccid).execute()
            events.add(events.TOPIC_EVENTS, {
                "type": "sim_quota_reached", "at": events.rfc3339(now), "port": port,
                "iccid": iccid, "period": period, "limit": limit,
                "resumes_at": events.rfc3339(resumes)})

    def note_sim(self, iccid: str, imsi: str, port: str, imei: str) -> None:
        """Record where a SIM was last seen."""
        with self._tx():
            Sim.insert(iccid=iccid, imsi=imsi, last_port=port, last_imei=imei).on_conflict(
                conflict_target=[Sim.iccid],
                update={Sim.imsi: imsi, Sim.last_port: port, Sim.last_imei: imei}).execute()

    def sim_counts(self, day_key: str) -> dict[str, int]:
        """SMS parts sent per ICCID in the gateway-local day `day_key`."""
        with self._lock:
            return {s.iccid: (s.day_count if s.day_key == day_key else 0)
                    for s in Sim.select(Sim.iccid, Sim.day_key, Sim.day_count)}
