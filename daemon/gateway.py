"""Wires the parts together and runs the main loop.

Threads and who owns them (all started and stopped here):
- main thread: this loop — port rescans, GatewayState, HQ commands, shutdown;
- one `port-*` thread per modem (daemon/ports.py), the only caller of its modem;
- `dispatcher`: claims queued messages for idle ports;
- `intake`: validates and commits batches, then acks them;
- `publisher`: drains the event outbox to MQTT;
- paho's two network threads: callbacks only enqueue.
"""

from __future__ import annotations

import glob
import queue
import threading
import time
from collections.abc import Callable
from datetime import date
from datetime import time as dt_time
from typing import Any
from zoneinfo import ZoneInfo

from daemon import __version__, logs
from daemon.batch import BatchLimits
from daemon.commands import handle_command
from daemon.config import Settings
from daemon.control import ControlServer
from daemon.control_handlers import control_handlers
from daemon.dispatcher import Dispatcher, SendPolicy
from daemon.failures import Ladder
from daemon.intake import Intake, batch_verifier, input_limits
from daemon.leds import LedPanel
from daemon.mqtt import Incoming, MqttLink
from daemon.mux import MuxBoard
from daemon.optout import OptOutMatcher
from daemon.port_types import PortConfig
from daemon.ports import PortWorker
from daemon.publisher import Publisher
from daemon.quota import Holiday, Limits, QuotaPolicy
from daemon.receiver import ReceivePolicy
from daemon.schedule import QuietHours, Route
from daemon.sdnotify import Notifier
from daemon.slots import SlotConfig
from daemon.validator import Validator
from store import events
from store.base import StoreUnavailable
from store.store import Store

STATE_INTERVAL_S = 30.0
LOOP_TICK_S = 1.0  # commands wake it at once; this paces state, LEDs and rescans
SHUTDOWN_FLUSH_S = 3.0
PARTIALS_CHECK_S = 5.0  # fine against a reassembly timeout of minutes
STORE_WARN_EVERY_S = 60.0
STALL_S = 60.0  # a thread whose loop has not turned for this long is wedged


def quota_policy(settings: Settings) -> QuotaPolicy:
    """Per-SIM limits from [limits]; a per-SIM key left out keeps the default."""
    lim = settings.limits
    default = Limits(lim.per_minute, lim.per_hour, lim.per_day, lim.per_month, lim.min_gap_s)
    per_sim = {}
    for iccid, o in lim.sim.items():
        per_sim[iccid] = Limits(*(
            getattr(default, k) if getattr(o, k) is None else getattr(o, k)
            for k in ("per_minute", "per_hour", "per_day", "per_month", "min_gap_s")))
    holidays = tuple(Holiday(date.fromisoformat(h.start), date.fromisoformat(h.end), Limits(
        h.per_minute, h.per_hour, h.per_day, h.per_month, h.min_gap_s)) for h in lim.holiday)
    return QuotaPolicy(ZoneInfo(lim.timezone), default, per_sim, holidays)


def send_policy(settings: Settings, quota: QuotaPolicy) -> SendPolicy:
    """Quiet hours, the per-recipient cap and routes from the configuration."""
    q = settings.quiet_hours
    quiet = (QuietHours(dt_time.fromisoformat(q.start), dt_time.fromisoformat(q.end))
             if q.start and q.end else None)
    routes = tuple(Route(r.prefix, r.iccids, r.operators, r.fallback) for r in settings.routing)
    return SendPolicy(quota, quiet, settings.send.per_recipient_24h, routes)


class Gateway:
    """The daemon: `run()` blocks until `stop()` and returns the exit status."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.log = logs.get("gateway").bind(gw=settings.gateway.id)
        self.store = Store(settings.data_dir)
        self.started_at = clock()
        self.workers: dict[str, PortWorker] = {}
        self._stop = threading.Event()
        self._commands: queue.Queue[Incoming] = queue.Queue()
        self._settle_deadline: float | None = None
        self._store_warned_at = 0.0
        self.notifier = Notifier()
        self._ready_sent = False
        self._watchdog_at = 0.0
        self._state_due = float("inf")  # nothing is published before we are online
        self._state_dirty = threading.Event()
        self._rescan_at = 0.0
        gw = settings.gateway.id
        self.quota = quota_policy(settings)
        self.dispatcher = Dispatcher(self.store, lambda: list(self.workers.values()), clock,
                                     send_policy(settings, self.quota))
        self.publisher = Publisher(self.store, gw)
        self.mqtt = MqttLink(
            settings.mqtt, gw, will={"online": False, "gw": gw},
            on_batch=self._on_batch, on_command=self._commands.put,
            on_puback=self.publisher.on_puback, on_online=self._on_online)
        limits = BatchLimits(settings.gateway.default_region, settings.send.max_parts,
                        settings.send.default_priority)
        r = settings.receive
        self._receive_policy = ReceivePolicy(
            default_region=settings.gateway.default_region, scan_s=r.scan_s,
            matcher=OptOutMatcher(r.optout_keywords), confirmation_text=r.optout_confirmation,
            inactive_after=r.inactive_after)
        self._partials_at = 0.0
        m = settings.modems
        self.muxes = MuxBoard(m, logs.get("mux"))
        s = settings.send
        self._port_config = PortConfig(
            m.baudrate, m.cmgs_timeout_s, Ladder(
                base_backoff_s=m.reopen_backoff_s, max_backoff_s=m.max_backoff_s,
                quarantine_s=m.quarantine_s),
            self.quota, max_attempts=s.max_attempts, retry_backoff_s=s.retry_backoff_s,
            bench_after_failures=s.bench_after_failures, bench_s=s.bench_s,
            slots=SlotConfig(m.slot_method, m.slot_count, m.switch_timeout_s,
                             m.bad_slot_retry_s, m.rotate_after_messages,
                             m.rotate_after_minutes, self.muxes.mux_for))
        self.leds = LedPanel(settings.leds)
        self.control = ControlServer(settings.control_socket, control_handlers(self))
        self.intake = Intake(self.store, limits, settings.queue.high_water, clock,
                             ack=self.mqtt.ack_batch, on_committed=self._on_committed,
                             input_limits=input_limits(settings),
                             verifier=batch_verifier(settings, self.store, clock()),
                             validator=Validator() if settings.queue.validate_in_child else None)

    # --- lifecycle ----------------------------------------------------------

    def stop(self) -> None:
        """Ask `run()` to shut down (signal handlers call this)."""
        self._stop.set()

    def run(self) -> int:
        self.store.run_started = self.clock()
        self._settle_deadline = time.monotonic() + self.settings.send.settle_s
        self._settle(final=self.settings.send.settle_s == 0)
        self.publisher.start(self.mqtt)
        if self.intake.validator is not None:
            self.intake.validator.warm_up()
        self.intake.start()
        self.dispatcher.start()
        self._rescan()
        self.mqtt.start()
        self.control.start()
        self.log.info("started", version=__version__, ports=len(self.workers))
        try:
            while not self._stop.is_set():
                try:
                    self._tick()
                except StoreUnavailable as e:
                    # Disk full or I/O error: state and replies wait on disk space; the
                    # intake keeps batches at the broker; status and LEDs say so.
                    self._store_trouble(str(e))
                except Exception:  # the main loop must outlive any bug in one tick
                    self.log.exception("main_loop_error")
                    self._stop.wait(LOOP_TICK_S)
        finally:
            self._shutdown()
        return 0

    def _tick(self) -> None:
        try:
            item = self._commands.get(timeout=LOOP_TICK_S)
        except queue.Empty:
            item = None
        if item is not None:
            reply = handle_command(self, item.payload)
            if reply is not None:
                self.store.add_event(events.TOPIC_REPLY, reply)
                self.publisher.wake()
        now = time.monotonic()
        if now >= self._rescan_at:
            self._rescan()
        if now >= self._partials_at:
            self._flush_partials()
        if self._settle_deadline is not None and now >= self._settle_deadline:
            self._settle(final=True)
        # The loop tick debounces bursts of port changes into one state message.
        if self._state_dirty.is_set() or now >= self._state_due:
            self.publish_state()
        self._systemd(now)
        self.leds.update(self)

    def _store_trouble(self, error: str) -> None:
        now = time.monotonic()
        if now >= self._store_warned_at:
            self.log.error("store_unavailable", error=error)
            self._store_warned_at = now + STORE_WARN_EVERY_S
        self._stop.wait(LOOP_TICK_S)

    def _systemd(self, now: float) -> None:
        """READY once the store and the broker are up; WATCHDOG only while every thread works."""
        if not self._ready_sent and self.mqtt.connected:
            self.notifier.notify("READY=1")
            self._ready_sent = True
        if self.notifier.watchdog_s and now >= self._watchdog_at:
            self._watchdog_at = now + self.notifier.watchdog_s / 2
            stalled = self.stalled_threads(now)
            if stalled:
                self.log.error("watchdog_withheld", stalled=stalled)
            else:
                self.notifier.notify("WATCHDOG=1")

    def stalled_threads(self, now: float) -> list[str]:
        """Threads that show no progress: a wedged daemon should be restarted by systemd."""
        limit = STALL_S
        stalled = [name for name, part in (("dispatcher", self.dispatcher),
                                            ("publisher", self.publisher),
                                            ("intake", self.intake))
                   if now - part.last_progress > limit]
        port_limit = self.settings.modems.cmgs_timeout_s + STALL_S  # a send may take this long
        for worker in self.workers.values():
            if not worker.alive or now - worker.last_progress > port_limit:
                stalled.append(worker.name)
        return stalled

    def _shutdown(self) -> None:
        self.log.info("stopping", grace_s=self.settings.send.grace_s)
        self.notifier.notify("STOPPING=1")
        self.control.stop()
        self.leds.close()
        self.intake.stop()
        self.mqtt.stop_intake()
        self.dispatcher.stop()
        deadline = time.monotonic() + self.settings.send.grace_s
        for worker in self.workers.values():
            worker.stop()
        for worker in self.workers.values():
            if not worker.join(max(0.0, deadline - time.monotonic())):
                self.log.warning("send_unfinished_at_exit", port=worker.name)
        self.muxes.close()
        self.dispatcher.join(1.0)
        self.intake.join(1.0)
        try:
            self.store.add_event(events.TOPIC_STATE, self.state_body(online=False), retain=True)
        except StoreUnavailable as e:  # a full disk must not turn a stop into a crash
            self.log.error("store_unavailable", error=str(e))
        if not self.publisher.drain(SHUTDOWN_FLUSH_S):
            self.log.warning("events_left_for_next_start",
                             unpublished=self.store.unpublished_count())
        self.publisher.stop()
        self.publisher.join(1.0)
        self.mqtt.stop()
        self.store.close()
        self.log.info("stopped")

    # --- ports --------------------------------------------------------------

    def _rescan(self) -> None:
        """Start a worker for every port path the globs match now (hot-plug)."""
        self._rescan_at = time.monotonic() + self.settings.modems.rescan_s
        m = self.settings.modems
        for pattern in m.ports:
            for path in sorted(glob.glob(pattern)) or ([] if glob.has_magic(pattern)
                                                        else [pattern]):
                if path in self.workers:
                    continue
                worker = PortWorker(path, self._port_config, self.store, self.clock,
                                    self._port_changed, self._receive_policy,
                                    self.publisher.wake, self.dispatcher.settle_and_take)
                self.workers[path] = worker
                worker.start()
                self.log.info("port_added", port=worker.name, path=path)

    def _settle(self, final: bool) -> None:
        """Settle what an earlier run left `sending`; `final` gives up waiting for proof."""
        counts = self.store.settle_in_flight(self.clock(), final)
        if final:
            self._settle_deadline = None
        if counts["sent"] or counts["uncertain"] or counts["waiting"]:
            self.log.warning("settled_in_flight", final=final, **counts)
            self.publisher.wake()

    def _flush_partials(self) -> None:
        """Publish multipart replies whose missing parts did not come in time."""
        self._partials_at = time.monotonic() + PARTIALS_CHECK_S
        timeout = self.settings.receive.reassembly_timeout_s
        now = self.clock()
        if self.store.flush_partials(now - timeout, now):
            self.publisher.wake()

    def _port_changed(self, significant: bool) -> None:
        self.dispatcher.wake()
        self.publisher.wake()
        if significant:
            self._state_dirty.set()

    # --- MQTT side ----------------------------------------------------------

    def _on_batch(self, item: Incoming) -> None:
        self.intake.submit(item)

    def _on_committed(self) -> None:
        self.dispatcher.wake()
        self.publisher.wake()

    def _on_online(self) -> None:
        """Subscribed to the outbox: now HQ may be told we are online."""
        self._state_dirty.set()

    def publish_state(self) -> None:
        self._state_dirty.clear()
        self._state_due = time.monotonic() + STATE_INTERVAL_S
        self.store.add_event(events.TOPIC_STATE, self.state_body(online=self.mqtt.connected),
                             retain=True)
        self.publisher.wake()

    def state_body(self, online: bool) -> dict[str, Any]:
        """The GatewayState payload (without gw/seq)."""
        now = self.clock()
        sent = self.store.sim_counts(self.quota.keys(now)["day"])
        held = self.dispatcher.quota_blocked
        modems: list[dict[str, Any]] = []
        for worker in self.workers.values():
            v = worker.view()
            iccid = v.iccid or ""
            modems.append({"port": v.port, "state": v.state.value, "imei": v.imei,
                           "imsi": v.imsi, "iccid": v.iccid, "operator": v.operator,
                           "signal": v.signal, "registered": v.registered,
                           "sent_today": sent.get(iccid, 0),
                           "quota_limit_today": self.quota.limits_for(iccid, now).per_day,
                           "held_by": held.get(iccid), "last_error": v.last_error})
            if v.slots:
                modems[-1]["sims"] = [dict(s, sent_today=sent.get(s["iccid"] or "", 0),
                                           day_limit=self.quota.limits_for(
                                               s["iccid"] or "", now).per_day)
                                      for s in v.slots]
        return {"online": online, "version": __version__,
                "started_at": events.rfc3339(self.started_at),
                "queue": self.store.queue_counts(),
                "unpublished": self.store.unpublished_count(),
                "paused": self.dispatcher.paused, "modems": modems}
