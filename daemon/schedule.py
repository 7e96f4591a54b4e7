"""When a message may go: quiet hours in the recipient's time, per-recipient caps, routes.

Plain functions of a number, a time and settings, tested without ports or brokers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_timezones

DAY_S = 86400.0
ZONE_CACHE = 4096


@dataclass(frozen=True)
class QuietHours:
    """A daily window, in the recipient's local time, when only urgent messages go."""

    start: time
    end: time  # may be earlier than start: the window crosses midnight

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@lru_cache(maxsize=ZONE_CACHE)
def recipient_zones(number: str) -> tuple[ZoneInfo, ...]:
    """Time zones phonenumbers gives for an E.164 number; empty when it does not know."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return ()
    zones = []
    for name in number_timezones.time_zones_for_number(parsed):
        try:
            zones.append(ZoneInfo(name))
        except (ZoneInfoNotFoundError, ValueError):
            continue  # "Etc/Unknown" and the like
    return tuple(zones)


def quiet_until(number: str, now: float, quiet: QuietHours | None) -> float | None:
    """If `now` is inside quiet hours for the recipient, when they end; else None.

    A number spanning several zones (Russia, the USA) counts as quiet while it is
    quiet in any of them: better an hour late than a customer woken at night.
    """
    if quiet is None:
        return None
    ends = [_window_end(now, zone, quiet) for zone in recipient_zones(number)]
    waits = [e for e in ends if e is not None]
    return max(waits) if waits else None


def _window_end(now: float, zone: ZoneInfo, quiet: QuietHours) -> float | None:
    local = datetime.fromtimestamp(now, tz=zone)
    if not quiet.contains(local.time()):
        return None
    end_day = local.date()
    if quiet.start > quiet.end and local.time() >= quiet.start:
        end_day += timedelta(days=1)  # after 21:00: the window ends tomorrow morning
    end = datetime.combine(end_day, quiet.end, tzinfo=zone)
    return end.timestamp()


def cap_until(sent_at: list[float], now: float, cap: int) -> float | None:
    """With `cap` messages per rolling 24 h, when the next may go, or None if it may now."""
    recent = [t for t in sent_at if t > now - DAY_S]
    if cap <= 0 or len(recent) < cap:
        return None
    return sorted(recent)[-cap] + DAY_S


@dataclass(frozen=True)
class Route:
    """Destinations starting with `prefix` prefer these SIMs or operators (on-net is cheaper)."""

    prefix: str
    iccids: tuple[str, ...] = ()
    operators: tuple[str, ...] = ()
    fallback: bool = True  # when no preferred SIM is free: use any (True) or wait (False)

    def prefers(self, iccid: str | None, operator: str | None) -> bool:
        if iccid and iccid in self.iccids:
            return True
        return bool(operator) and (operator or "").casefold() in {
            o.casefold() for o in self.operators}


def route_for(number: str, routes: tuple[Route, ...]) -> Route | None:
    """The route with the longest prefix matching `number`."""
    matching = [r for r in routes if number.startswith(r.prefix)]
    return max(matching, key=lambda r: len(r.prefix)) if matching else None
