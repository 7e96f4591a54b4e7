"""Per-SIM sending limits over real calendar periods in the gateway's time zone.

Plain functions of counters, limits and a time: tested without ports or brokers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from store.sims import PERIODS, SimCounters

KEY_FORMATS = {"minute": "%Y-%m-%dT%H:%M", "hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d",
               "month": "%Y-%m"}


@dataclass(frozen=True)
class Limits:
    """Most SMS parts a SIM may send per period (0 = no limit) and the least gap between sends."""

    per_minute: int = 0
    per_hour: int = 0
    per_day: int = 0
    per_month: int = 0
    min_gap_s: float = 0.0

    def of(self, period: str) -> int:
        return int(getattr(self, f"per_{period}"))


@dataclass(frozen=True)
class Holiday:
    """Other limits on the gateway-local dates start..end (inclusive), e.g. Spring Festival."""

    start: date
    end: date
    limits: Limits


@dataclass(frozen=True)
class QuotaPolicy:
    """Default limits, per-ICCID overrides and holiday profiles, in one time zone."""

    tz: ZoneInfo
    default: Limits
    per_sim: dict[str, Limits]
    holidays: tuple[Holiday, ...] = ()

    def limits_for(self, iccid: str, now: float) -> Limits:
        """The limits in force for this SIM at `now` (a per-SIM override beats a holiday)."""
        if iccid in self.per_sim:
            return self.per_sim[iccid]
        today = self.local(now).date()
        for holiday in self.holidays:
            if holiday.start <= today <= holiday.end:
                return holiday.limits
        return self.default

    def local(self, now: float) -> datetime:
        return datetime.fromtimestamp(now, tz=self.tz)

    def keys(self, now: float) -> dict[str, str]:
        """The current period of each kind, as the store tags its counters."""
        local = self.local(now)
        return {p: local.strftime(KEY_FORMATS[p]) for p in PERIODS}


BENCHED = "benched"  # out of dispatch after repeated failures or an operator block
GAP = "gap"  # limits.min_gap_s since its last send: pacing, over in seconds


@dataclass(frozen=True)
class Block:
    """Why a SIM may not send now, and when it may again."""

    period: str  # "minute" ... "month", or GAP or BENCHED
    limit: int
    key: str
    until: float

    @property
    def is_quota(self) -> bool:
        """A calendar limit reached: announced to HQ as sim_quota_reached."""
        return self.period in PERIODS

    @property
    def is_pacing(self) -> bool:
        """Only the gap between sends: no fault, and never worth a card switch."""
        return self.period == GAP


def blocked(policy: QuotaPolicy, counters: SimCounters | None, iccid: str,
            now: float, keys: dict[str, str] | None = None) -> Block | None:
    """The first limit that stops this SIM sending at `now`, or None if it may send.

    `keys` (policy.keys(now)) may be passed in when many SIMs are checked at once.
    """
    if counters is None:
        return None
    if counters.blocked_until and counters.blocked_until > now:
        return Block(BENCHED, 0, BENCHED, counters.blocked_until)
    limits = policy.limits_for(iccid, now)
    keys = keys or policy.keys(now)
    for period in PERIODS:
        limit = limits.of(period)
        if limit and counters.count(period, keys[period]) >= limit:
            return Block(period, limit, f"{period}:{keys[period]}",
                         period_end(policy, period, now))
    if limits.min_gap_s and counters.last_sent_at is not None:
        ready_at = counters.last_sent_at + limits.min_gap_s
        if ready_at > now:
            return Block(GAP, 0, GAP, ready_at)
    return None


def period_end(policy: QuotaPolicy, period: str, now: float) -> float:
    """When the current calendar period ends (DST-correct: computed in local time)."""
    local = policy.local(now)
    if period == "minute":
        start = local.replace(second=0, microsecond=0)
        nxt = start + timedelta(minutes=1)
    elif period == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
        nxt = start + timedelta(hours=1)
    elif period == "day":
        nxt_date = local.date() + timedelta(days=1)
        nxt = datetime(nxt_date.year, nxt_date.month, nxt_date.day, tzinfo=policy.tz)
    else:
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        nxt = datetime(year, month, 1, tzinfo=policy.tz)
    return nxt.timestamp()
