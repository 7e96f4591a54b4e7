"""The box's five LEDs, driven through gpiozero (it and daemon/mux.py alone touch it).

| LED       | shows                                                                 |
|-----------|-----------------------------------------------------------------------|
| heartbeat | blinks (0.1 s on, 0.9 s off) while the main loop runs; off = wedged   |
| broker    | on = connected to the broker; fast blink = reconnecting               |
| pool      | on = every modem ready; slow blink = some ready; off = none           |
| activity  | a short flash when a message is sent or received                      |
| fault     | N short blinks then a pause; N is the worst fault's code (health.py)  |

The main loop calls `update(gw)` every tick; it only chooses patterns. A small
`leds` thread owned by the panel turns patterns into pin levels (`render`), so a
blink code keeps its rhythm whatever the main loop is doing. Tests call `show`
and `render` with their own times.

With `[leds] enabled = false` the panel holds no gpiozero object and gpiozero is
not even imported.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon import logs
from daemon.config import LedSettings
from daemon.health import Fault, FaultWatch, Health, Pool, assess, observe

RENDER_S = 0.05  # pin refresh; shorter than every step of every pattern
HEARTBEAT_STALE_S = 2.0  # no update from the main loop for this long: heartbeat goes dark
ACTIVITY_FLASH_S = 0.15
CODE_ON_S = 0.25  # one short blink of a fault code
CODE_OFF_S = 0.35
CODE_PAUSE_S = 1.6  # between two repeats of a code: long enough to count again
PI_MODEL_FILE = Path("/proc/device-tree/model")
# gpiozero's own preference order on a Pi.
REAL_FACTORIES = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory"),
    "native": ("gpiozero.pins.native", "NativeFactory"),
}
LED_NAMES = ("heartbeat", "broker", "pool", "activity", "fault")


@dataclass(frozen=True)
class Pattern:
    """A cycle of (lit, seconds) steps, repeated from the moment it is shown."""

    name: str
    steps: tuple[tuple[bool, float], ...]

    @property
    def period(self) -> float:
        return sum(s for _, s in self.steps)

    def lit(self, elapsed: float) -> bool:
        """Whether the LED is on `elapsed` seconds after the pattern started."""
        t = elapsed % self.period
        for level, seconds in self.steps:
            if t < seconds:
                return level
            t -= seconds
        return self.steps[-1][0]


ON = Pattern("on", ((True, 1.0),))
OFF = Pattern("off", ((False, 1.0),))
FAST_BLINK = Pattern("fast_blink", ((True, 0.1), (False, 0.1)))
SLOW_BLINK = Pattern("slow_blink", ((True, 1.0), (False, 1.0)))
HEARTBEAT = Pattern("heartbeat", ((True, 0.1), (False, 0.9)))
FLASH = Pattern("flash", ((True, ACTIVITY_FLASH_S), (False, 1.0)))


def code_pattern(n: int) -> Pattern:
    """N short blinks, then a pause: the fault with code N."""
    steps: list[tuple[bool, float]] = []
    for i in range(n):
        steps.append((True, CODE_ON_S))
        steps.append((False, CODE_PAUSE_S if i == n - 1 else CODE_OFF_S))
    return Pattern(f"code_{n}", tuple(steps))


def broker_pattern(connected: bool) -> Pattern:
    return ON if connected else FAST_BLINK


def pool_pattern(pool: Pool) -> Pattern:
    return {Pool.ALL_READY: ON, Pool.DEGRADED: SLOW_BLINK, Pool.NONE: OFF}[pool]


def fault_pattern(health: Health) -> Pattern:
    worst = health.worst
    return code_pattern(worst.fault.value) if worst else OFF


class LedPanel:
    """The five LEDs; a no-op without gpiozero objects when disabled."""

    def __init__(self, settings: LedSettings, clock: Callable[[], float] = time.monotonic,
                 factory: Any = None) -> None:
        self._settings = settings
        self._clock = clock
        self._log = logs.get("leds")
        self._lock = threading.Lock()
        self._devices: dict[str, Any] = {}
        self._patterns: dict[str, tuple[Pattern, float]] = {}
        self._fault: Fault | None = None
        self._activity: Any = None
        self._activity_until = float("-inf")
        self._updated_at = float("-inf")
        self._failed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch = FaultWatch(logs.get("health"))
        self.factory_name = "none"
        if not settings.enabled:
            return
        if factory is None:
            factory, self.factory_name = choose_factory(settings.pin_factory, self._log)
        else:
            self.factory_name = type(factory).__name__
        self._devices = _make_leds(settings, factory)
        now = clock()
        for name in LED_NAMES:
            self._patterns[name] = (OFF, now)

    @property
    def enabled(self) -> bool:
        return bool(self._devices)

    # --- from the main loop ---------------------------------------------------

    def update(self, gw: Any) -> None:
        """From the main loop: log fault changes and choose patterns; never raises.

        The journal's fault_raised / fault_cleared events come from here whether or
        not LEDs are wired, so `journalctl -u smsgw` and the fault LED always agree.
        """
        try:
            from store.views import activity_marker

            health = assess(observe(gw))
            self._watch.note(health, self._clock())
            if not self.enabled:
                return
            self.show(health, bool(gw.mqtt.connected), activity_marker(gw.store))
            if self._thread is None:
                self.start()
        except Exception:
            if not self._failed:
                self._log.exception("led_update_failed")
                self._failed = True

    def show(self, health: Health, broker_connected: bool, activity: Any = None,
             now: float | None = None) -> None:
        """Set every LED's pattern; `activity` is any marker that changes when traffic moves."""
        if not self.enabled:
            return
        now = self._clock() if now is None else now
        worst = health.worst
        with self._lock:
            self._updated_at = now
            self._set("heartbeat", HEARTBEAT, now)
            self._set("broker", broker_pattern(broker_connected), now)
            self._set("pool", pool_pattern(health.pool), now)
            self._set("fault", fault_pattern(health), now)
            if activity is not None and self._activity is not None and activity != self._activity:
                self._activity_until = now + ACTIVITY_FLASH_S
                self._patterns["activity"] = (FLASH, now)
            if activity is not None:
                self._activity = activity
            fault = worst.fault if worst else None
        if fault is not self._fault:
            self._log.info("fault_led", fault=fault.label if fault else None,
                           code=fault.value if fault else 0)
            self._fault = fault

    def _set(self, name: str, pattern: Pattern, now: float) -> None:
        """Keep the phase of a pattern already shown, so a code is not restarted every tick."""
        current, _since = self._patterns[name]
        if current != pattern:
            self._patterns[name] = (pattern, now)

    # --- the leds thread --------------------------------------------------------

    def render(self, now: float | None = None) -> dict[str, bool]:
        """Drive every pin to its level at `now`; returns the levels."""
        if not self.enabled:
            return {}
        now = self._clock() if now is None else now
        levels: dict[str, bool] = {}
        with self._lock:
            for name in LED_NAMES:
                pattern, since = self._effective(name, now)
                levels[name] = pattern.lit(now - since)
        for name, lit in levels.items():
            device = self._devices[name]
            if bool(device.value) != lit:
                device.value = lit
        return levels

    def _effective(self, name: str, now: float) -> tuple[Pattern, float]:
        """The pattern shown now: a stale heartbeat and an old flash are dark."""
        pattern, since = self._patterns[name]
        if name == "heartbeat" and now - self._updated_at > HEARTBEAT_STALE_S:
            return OFF, since
        if name == "activity" and now >= self._activity_until:
            return OFF, since
        return pattern, since

    def start(self) -> None:
        """Start the `leds` thread (the main loop's first update does it)."""
        if not self.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="leds", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(RENDER_S):
            try:
                self.render()
            except Exception:
                self._log.exception("led_render_failed")
                return

    def close(self) -> None:
        """Stop the thread, turn every LED off and release the pins."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        for device in self._devices.values():
            try:
                device.off()
                device.close()
            except Exception:
                self._log.exception("led_close_failed")
        self._devices = {}

    # --- for `smsgw leds` and the tests ----------------------------------------

    def describe(self) -> dict[str, Any]:
        """Every LED's pin, pattern and level now; the fault LED also names its fault."""
        if not self.enabled:
            return {"enabled": False, "factory": self.factory_name, "leds": {}}
        now = self._clock()
        with self._lock:
            out: dict[str, Any] = {}
            for name in LED_NAMES:
                pattern, _ = self._effective(name, now)
                out[name] = {"pin": getattr(self._settings, f"{name}_pin"),
                             "pattern": pattern.name,
                             "lit": bool(self._devices[name].value)}
            fault = self._fault
        out["fault"]["code"] = fault.value if fault else 0
        out["fault"]["fault"] = fault.label if fault else None
        return {"enabled": True, "factory": self.factory_name, "leds": out}


def _make_leds(settings: LedSettings, factory: Any) -> dict[str, Any]:
    from gpiozero import LED

    return {name: LED(getattr(settings, f"{name}_pin"), pin_factory=factory)
            for name in LED_NAMES}


def on_a_pi() -> bool:
    try:
        return "Raspberry Pi" in PI_MODEL_FILE.read_text(errors="replace")
    except OSError:
        return False


def choose_factory(name: str, log: Any, event: str = "led_pin_factory") -> tuple[Any, str]:
    """The pin factory `name` asks for ([leds] pin_factory, [modems] slot_pin_factory);
    the mock when a real one cannot load. The choice is logged as `event`."""
    import importlib

    from gpiozero.pins.mock import MockFactory

    if name == "mock":
        log.info(event, factory="mock", reason="configured")
        return MockFactory(), "mock"
    if name == "auto" and not on_a_pi():
        log.info(event, factory="mock", reason="not a Raspberry Pi")
        return MockFactory(), "mock"
    candidates = list(REAL_FACTORIES) if name == "auto" else [name]
    errors = []
    for candidate in candidates:
        module, cls = REAL_FACTORIES[candidate]
        try:
            factory = getattr(importlib.import_module(module), cls)()
        except Exception as e:  # ImportError, BadPinFactory, no /dev/gpiomem access...
            errors.append(f"{candidate}: {e}")
            continue
        log.info(event, factory=candidate, reason=f"configured {name}")
        return factory, candidate
    log.error(event, factory="mock", reason="no real pin factory works", errors=errors)
    return MockFactory(), "mock"
