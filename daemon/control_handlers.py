"""What the daemon answers on its control socket: the technician's `smsgw` commands.

Each handler takes the request object and returns a JSON-able result, or raises
RequestError with a message for the technician. Numbers are masked unless the
request asks to `reveal` them (the socket is only open to the smsgw group).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daemon import __version__, logs
from daemon.batch import BatchLimits, Rejected, mask, normalise_number, parse
from daemon.control import RequestError
from daemon.health import assess, observe
from daemon.quota import blocked
from store import events, views
from store.sims import SimCounters

if TYPE_CHECKING:
    from daemon.gateway import Gateway
    from daemon.ports import PortWorker

Handler = Callable[[dict[str, Any]], Any]
DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
MAX_NUMBERS = 1000
MAX_TEXT = 10_000
USSD_DEFAULT_TIMEOUT_S = 30.0
USSD_MAX_TIMEOUT_S = 120.0
_log = logs.get("control")


def control_handlers(gw: Gateway) -> dict[str, Handler]:
    """The control socket's requests, bound to a gateway."""
    return {
        "status": lambda req: status(gw),
        "leds": lambda req: gw.leds.describe(),
        "sims": lambda req: sims(gw),
        "queue": lambda req: queue_view(gw, req),
        "inbox": lambda req: inbox(gw, req),
        "send": lambda req: send(gw, req),
        "stoplist": lambda req: stoplist(gw, req),
        "stoplist_add": lambda req: stoplist_add(gw, req),
        "stoplist_remove": lambda req: stoplist_remove(gw, req),
        "ussd": lambda req: ussd(gw, req),
    }


# --- reading -----------------------------------------------------------------


def status(gw: Gateway) -> dict[str, Any]:
    """GatewayState plus the broker link, the port paths and the health verdict; a
    multi-SIM port's `sims` are its rows of `smsgw sims` (waiting cards too)."""
    body = gw.state_body(online=gw.mqtt.connected)
    paths = {w.name: w.path for w in list(gw.workers.values())}
    cards: dict[str, list[dict[str, Any]]] = {}
    for row in sims(gw):
        if row["port"] is not None:
            cards.setdefault(row["port"], []).append(row)
    for modem in body["modems"]:
        modem["path"] = paths.get(modem["port"])
        if "sims" in modem:
            modem["sims"] = cards.get(modem["port"], [])
    body["broker"] = {"connected": bool(gw.mqtt.connected),
                      "host": gw.settings.mqtt.host, "port": gw.settings.mqtt.port}
    body["store_error"] = gw.intake.store_error
    body["health"] = assess(observe(gw)).as_dict()
    body["version"] = __version__
    body["gw"] = gw.settings.gateway.id
    return body


def sims(gw: Gateway) -> list[dict[str, Any]]:
    """Every card of every port (active, waiting or unusable) with its counts against its
    limits and what holds it; then the SIMs seen before that no port holds now."""
    now = gw.clock()
    keys = gw.quota.keys(now)
    counters = gw.store.sim_counters()
    seen = {row["iccid"]: row for row in views.sims(gw.store)}
    rows: list[dict[str, Any]] = []
    for worker in sorted(list(gw.workers.values()), key=lambda w: w.name):
        v = worker.view()
        cards = v.slots or [{"slot": None, "iccid": v.iccid, "active": True}]
        for card in cards:
            iccid = card.get("iccid")
            state = ("active" if card["active"] else
                     "unusable" if card.get("unusable") else "waiting")
            if iccid is None and not v.slots:
                state = "unknown"  # the port has not read its card (yet)
            row = {"port": v.port, "port_state": v.state.value, "slot": card["slot"],
                   "state": state, "iccid": iccid, "method": card.get("method")}
            if card["active"]:
                row.update(operator=v.operator, signal=v.signal)
            if card.get("unusable"):
                row.update(held_by="unusable", reason=card["unusable"],
                           held_until=_local_time(gw, card["unusable_until"]))
            rows.append(_with_counts(gw, row, seen.pop(iccid, {}) if iccid else {},
                                     counters, keys, now))
    for iccid, stored in seen.items():
        rows.append(_with_counts(gw, {"port": None, "slot": None, "state": "not in a port",
                                      "iccid": iccid}, stored, counters, keys, now))
    return rows


def _with_counts(gw: Gateway, row: dict[str, Any], stored: dict[str, Any],
                 counters: dict[str, SimCounters], keys: dict[str, str],
                 now: float) -> dict[str, Any]:
    """Add a card's counts against its hour and day limits, what holds it and until when."""
    iccid = row["iccid"] or ""
    sim = counters.get(iccid)
    limits = gw.quota.limits_for(iccid, now)
    row.update(sent_today=sim.count("day", keys["day"]) if sim else 0,
               day_limit=limits.per_day, quota_limit_today=limits.per_day,
               sent_hour=sim.count("hour", keys["hour"]) if sim else 0,
               hour_limit=limits.per_hour)
    block = blocked(gw.quota, sim, iccid, now, keys) if iccid else None
    if block is not None and "held_by" not in row:
        row.update(held_by=block.period, held_until=_local_time(gw, block.until))
    for key in ("imsi", "sent_total", "last_port", "last_imei"):
        row[key] = stored.get(key)
    return row


def queue_view(gw: Gateway, req: dict[str, Any]) -> dict[str, Any]:
    reveal = _flag(req, "reveal")
    waiting = views.next_waiting(gw.store, _limit(req))
    for row in waiting:
        row["to"] = _show(row["to"], reveal)
    return {"counts": views.state_counts(gw.store), "queue": gw.store.queue_counts(),
            "paused": gw.dispatcher.paused, "next": waiting}


def inbox(gw: Gateway, req: dict[str, Any]) -> list[dict[str, Any]]:
    reveal = _flag(req, "reveal")
    rows = views.last_inbound(gw.store, _limit(req))
    for row in rows:
        row["from"] = _show(row.pop("sender"), reveal)
        if not reveal:
            row["text"] = f"({len(row['text'])} characters; --reveal shows them)"
    return rows


def stoplist(gw: Gateway, req: dict[str, Any]) -> list[dict[str, Any]]:
    reveal = _flag(req, "reveal")
    rows = gw.store.stoplist()
    for row in rows:
        row["number"] = _show(row["number"], reveal)
    return rows


# --- acting ------------------------------------------------------------------


def send(gw: Gateway, req: dict[str, Any]) -> dict[str, Any]:
    """A local test message through HQ's own validation and queue; batch_id local-<time>."""
    to, text = req.get("to"), req.get("text")
    if not isinstance(to, str) or not isinstance(text, str) or len(text) > MAX_TEXT:
        raise RequestError("send needs a number (to) and a text of at most "
                           f"{MAX_TEXT} characters")
    now = gw.clock()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}"
    batch_id = f"local-{stamp}"
    payload = json.dumps({"batch_id": batch_id,
                          "messages": [{"id": batch_id, "to": to, "text": text}]})
    s = gw.settings
    limits = BatchLimits(s.gateway.default_region, s.send.max_parts, s.send.default_priority)
    parsed = parse(payload.encode(), limits, now)
    outcome = gw.store.accept_batch(parsed.batch_id, parsed.messages, parsed.rejected, now)
    rejected = list(parsed.rejected)
    if parsed.messages and not outcome.accepted and not outcome.duplicates:
        # The store refused it inside its commit: the only such reason is the stop-list.
        rejected.append({"id": batch_id, "code": "opted_out",
                         "reason": "the number is on the stop-list"})
    gw.dispatcher.wake()
    gw.publisher.wake()
    _log.info("local_send", batch_id=batch_id, to=mask(parsed.messages[0].to)
              if parsed.messages else None, accepted=outcome.accepted)
    return {"id": batch_id, "batch_id": batch_id, "accepted": outcome.accepted,
            "duplicates": outcome.duplicates, "rejected": rejected}


def stoplist_add(gw: Gateway, req: dict[str, Any]) -> dict[str, Any]:
    outcome = gw.store.stoplist_add(_numbers(gw, req), gw.clock())
    gw.publisher.wake()
    _log.info("local_stoplist_add", **outcome)
    return dict(outcome)


def stoplist_remove(gw: Gateway, req: dict[str, Any]) -> dict[str, Any]:
    removed = gw.store.stoplist_remove(_numbers(gw, req))
    _log.info("local_stoplist_remove", removed=removed)
    return {"removed": removed}


def ussd(gw: Gateway, req: dict[str, Any]) -> dict[str, Any]:
    """Dial a USSD code on a port's own thread, between its sends."""
    code = req.get("code")
    if not isinstance(code, str) or not code:
        raise RequestError("ussd needs a code, e.g. *100#")
    timeout = req.get("timeout", USSD_DEFAULT_TIMEOUT_S)
    if not isinstance(timeout, int | float) or not 0 < timeout <= USSD_MAX_TIMEOUT_S:
        raise RequestError(f"timeout must be 0..{USSD_MAX_TIMEOUT_S} seconds")
    worker = find_worker(gw, req.get("port"))
    if worker.state.value not in ("ready", "sending"):
        raise RequestError(f"{worker.name} is {worker.state.value}: it cannot dial now")
    try:
        answer = worker.call(lambda modem: modem.ussd(code, float(timeout)), float(timeout) + 5)
    except Exception as e:  # ModemError, TimeoutError: the technician needs the words
        raise RequestError(f"{worker.name}: {code}: {e}") from e
    return {"port": worker.name, "iccid": worker.iccid, "code": code, "answer": answer,
            "at": events.rfc3339(gw.clock())}


# --- helpers -----------------------------------------------------------------


def _local_time(gw: Gateway, epoch: float) -> str:
    """RFC 3339 in the gateway's zone (`limits.timezone`), the one its quota periods end in."""
    return gw.quota.local(epoch).isoformat(timespec="seconds")


def find_worker(gw: Gateway, port: Any) -> PortWorker:
    """The worker named `port` (e.g. ttyGSM0) or holding the path `port`."""
    if not isinstance(port, str) or not port:
        raise RequestError("a port name or path is needed")
    for worker in list(gw.workers.values()):
        if port in (worker.name, worker.path):
            return worker
    known = ", ".join(sorted(w.name for w in gw.workers.values())) or "none"
    raise RequestError(f"no port {port!r} (ports: {known})")


def _numbers(gw: Gateway, req: dict[str, Any]) -> list[str]:
    raw = req.get("numbers")
    if (not isinstance(raw, list) or not raw or len(raw) > MAX_NUMBERS
            or not all(isinstance(n, str) for n in raw)):
        raise RequestError(f"numbers must be a list of 1..{MAX_NUMBERS} phone numbers")
    out = []
    for number in raw:
        try:
            out.append(normalise_number(number, gw.settings.gateway.default_region))
        except Rejected as e:
            raise RequestError(f"{number}: {e.reason}") from e
    return out


def _limit(req: dict[str, Any]) -> int:
    limit = req.get("limit", DEFAULT_LIMIT)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= MAX_LIMIT:
        raise RequestError(f"limit must be 1..{MAX_LIMIT}")
    return limit


def _flag(req: dict[str, Any], key: str) -> bool:
    return req.get(key) is True


def _show(number: str | None, reveal: bool) -> str | None:
    if number is None:
        return None
    return number if reveal else mask(number)
