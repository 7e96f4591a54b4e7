"""The TOML configuration, parsed once into frozen dataclasses.

Unknown keys, wrong types and impossible values raise ConfigError naming the
key; `smsgw run` turns that into exit status 78 (EX_CONFIG), which the systemd
unit does not restart.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

EX_CONFIG = 78
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
DEFAULT_CONFIG = "/etc/smsgw/smsgw.toml"
_GATEWAY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ConfigError(ValueError):
    """The configuration cannot be used; `key` names the culprit (e.g. "mqtt.port")."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config: {key}: {problem}")
        self.key = key


def _check(pred: Callable[[Any], bool], problem: str) -> dict[str, Any]:
    return {"check": (pred, problem)}


def _region_ok(value: str) -> bool:
    return value in phonenumbers.SUPPORTED_REGIONS


_COUNT = _check(lambda v: v >= 0, "must be >= 0 (0 = no limit)")


@dataclass(frozen=True)
class GatewaySettings:
    id: str = field(metadata=_check(lambda v: bool(_GATEWAY_ID.fullmatch(v)),
                                    "must match [A-Za-z0-9_-]{1,64}"))
    data_dir: str = "/var/lib/smsgw"
    default_region: str = field(default="CN", metadata=_check(
        _region_ok, "must be an ISO 3166 region phonenumbers knows, e.g. CN, RU, GB"))
    log_level: str = field(default="info", metadata=_check(
        lambda v: v in ("debug", "info", "warning", "error"),
        "must be debug, info, warning or error"))
    control_socket: str = ""  # default: {data_dir}/control.sock
    # Tests and demos only: a file holding seconds to add to the wall clock.
    clock_offset_file: str = ""


@dataclass(frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = field(default=1883, metadata=_check(lambda v: 0 < v < 65536, "must be 1..65535"))
    username: str = ""
    password_file: str = ""
    # systemd LoadCredential= name: the password is read from $CREDENTIALS_DIRECTORY/<name>
    password_credential: str = ""
    keepalive: int = field(default=30, metadata=_check(lambda v: 5 <= v <= 3600,
                                                       "must be 5..3600 seconds"))
    session_expiry_s: int = field(default=7 * 86400, metadata=_check(
        lambda v: v >= 86400, "must be at least 86400 (a day): batches wait at the broker"))
    fleet_group: str = field(default="", metadata=_check(
        lambda v: v == "" or bool(_GATEWAY_ID.fullmatch(v)), "must match [A-Za-z0-9_-]{1,64}"))
    reconnect_max_s: int = field(default=60, metadata=_check(lambda v: 1 <= v <= 3600,
                                                             "must be 1..3600"))
    # TLS: on when tls_ca or tls_cert is set. tls_ca pins the broker's CA (empty: the
    # system store); tls_cert + tls_key are this gateway's client certificate.
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    # Skips the broker host name check (never the CA check): for brokers reached by IP.
    tls_insecure: bool = False

    def __post_init__(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("mqtt.tls_key" if self.tls_cert else "mqtt.tls_cert",
                              "tls_cert and tls_key must be given together")
        for key, path in (("mqtt.tls_ca", self.tls_ca), ("mqtt.tls_cert", self.tls_cert)):
            if path and not Path(path).is_file():
                raise ConfigError(key, f"{path} is not a readable file")
        check_secret_file("mqtt.password_file", self.password_file)
        check_secret_file("mqtt.tls_key", self.tls_key)

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca or self.tls_cert)


MIB = 1024 * 1024


@dataclass(frozen=True)
class SecuritySettings:
    # When set, every batch must carry a valid HMAC-SHA256 (daemon/signing.py).
    batch_hmac_key_file: str = ""
    max_batch_age_s: int = field(default=300, metadata=_check(lambda v: 1 <= v <= 86400,
                                                              "must be 1..86400 seconds"))
    max_clock_skew_s: int = field(default=30, metadata=_check(lambda v: 0 <= v <= 3600,
                                                              "must be 0..3600 seconds"))
    max_payload_bytes: int = field(default=16 * MIB, metadata=_check(
        lambda v: 1024 <= v <= 256 * MIB, "must be 1024..268435456 bytes"))
    max_messages_per_batch: int = field(default=100_000, metadata=_check(
        lambda v: 1 <= v <= 1_000_000, "must be 1..1000000"))
    max_text_chars: int = field(default=2000, metadata=_check(lambda v: 1 <= v <= 100_000,
                                                              "must be 1..100000"))

    def __post_init__(self) -> None:
        key = "security.batch_hmac_key_file"
        check_secret_file(key, self.batch_hmac_key_file)
        if self.batch_hmac_key_file and not Path(self.batch_hmac_key_file).read_bytes().strip():
            raise ConfigError(key, f"{self.batch_hmac_key_file} is empty")


def check_secret_file(key: str, path: str) -> None:
    """A secret file must exist and be readable by its owner only (mode 0600 or 0400)."""
    if not path:
        return
    try:
        mode = Path(path).stat().st_mode
    except OSError as e:
        raise ConfigError(key, f"{path} cannot be read ({e.strerror})") from e
    if not Path(path).is_file():
        raise ConfigError(key, f"{path} is not a file")
    if mode & 0o077:
        raise ConfigError(key, f"{path} is open to group or others (mode {mode & 0o777:o}); "
                          f"chmod 600 {path}")


PIN_FACTORIES = ("auto", "mock", "lgpio", "rpigpio", "pigpio", "native")
MAX_SELECT_LINES = 5  # 32 cards, the most a port may have
SIMULATED_PORT = re.compile(r"ttyGSM(\d+)$")
_BCM = _check(lambda v: 0 <= v <= 27, "must be a BCM pin 0..27")


@dataclass(frozen=True)
class SlotMuxSettings:
    """One GPIO SIM multiplexer in front of one single-slot modem."""

    port: str = field(metadata=_check(lambda v: bool(v), "must be the port's path or a glob"))
    # BCM pins of the select inputs, least significant bit first: slot n is n in binary.
    select_pins: tuple[int, ...] = field(metadata=_check(
        lambda v: 1 <= len(v) <= MAX_SELECT_LINES and len(set(v)) == len(v)
        and all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 27 for p in v),
        f"must be 1..{MAX_SELECT_LINES} different BCM pins 0..27, least significant first"))
    detect_pin: int = field(metadata=_BCM)
    # True: driving the pin high tells the modem "no card" (an open-drain transistor
    # pulling SIM_DET down, as wired in hardware/README.md); false: the pin drives
    # SIM_DET directly and low means "no card".
    detect_active_high: bool = True
    enable_pin: int = field(default=-1, metadata=_check(
        lambda v: v == -1 or 0 <= v <= 27, "must be a BCM pin 0..27, or -1 for none"))
    slots: int = field(default=0, metadata=_check(
        lambda v: v == 0 or 2 <= v <= 32, "must be 2..32 (0 = every select code)"))

    @property
    def cards(self) -> int:
        """How many slots the multiplexer switches between."""
        return self.slots or 2 ** len(self.select_pins)

    def pins(self) -> list[tuple[str, int]]:
        """(key, BCM pin) of every line it drives."""
        lines = [("select_pins", p) for p in self.select_pins]
        lines.append(("detect_pin", self.detect_pin))
        if self.enable_pin >= 0:
            lines.append(("enable_pin", self.enable_pin))
        return lines


@dataclass(frozen=True)
class ModemSettings:
    ports: tuple[str, ...] = field(default=(), metadata=_check(
        lambda v: all(isinstance(p, str) and p for p in v), "must be a list of paths or globs"))
    baudrate: int = field(default=115200, metadata=_check(
        lambda v: v in (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600),
        "must be a standard baud rate"))
    rescan_s: float = field(default=5.0, metadata=_check(lambda v: 0.2 <= v <= 600,
                                                         "must be 0.2..600 seconds"))
    cmgs_timeout_s: float = field(default=120.0, metadata=_check(
        lambda v: 1 <= v <= 600, "must be 1..600 seconds (networks take up to 120 s)"))
    reopen_backoff_s: float = field(default=2.0, metadata=_check(lambda v: 0.1 <= v <= 600,
                                                                 "must be 0.1..600"))
    max_backoff_s: float = field(default=60.0, metadata=_check(lambda v: 0.1 <= v <= 3600,
                                                               "must be 0.1..3600"))
    quarantine_s: float = field(default=300.0, metadata=_check(lambda v: 1 <= v <= 86400,
                                                               "must be 1..86400"))
    # Ports with several SIM slots (issue: rotate SIMs inside a port).
    slot_method: str = field(default="auto", metadata=_check(
        lambda v: v in ("auto", "csus", "qdsim", "none"), "must be auto, csus, qdsim or none"))
    slot_count: int = field(default=2, metadata=_check(lambda v: 1 <= v <= 16,
                                                       "must be 1..16 (used with qdsim)"))
    switch_timeout_s: float = field(default=90.0, metadata=_check(
        lambda v: 1 <= v <= 600, "must be 1..600 seconds"))
    bad_slot_retry_s: float = field(default=3600.0, metadata=_check(
        lambda v: 1 <= v <= 86400, "must be 1..86400 seconds"))
    rotate_after_messages: int = field(default=0, metadata=_check(
        lambda v: v >= 0, "must be >= 0 (0 = switch only when a card is held)"))
    rotate_after_minutes: float = field(default=0.0, metadata=_check(
        lambda v: 0 <= v <= 7 * 24 * 60, "must be 0..10080 minutes (0 = off)"))
    # GPIO SIM multiplexers (daemon/mux.py): a port matching an entry switches by GPIO.
    slot_mux: tuple[SlotMuxSettings, ...] = ()
    slot_pin_factory: str = field(default="auto", metadata=_check(
        lambda v: v in (*PIN_FACTORIES, "simulator"),
        "must be auto, mock, lgpio, rpigpio, pigpio, native or simulator"))
    # Tests and demos only: with slot_pin_factory = "simulator", the simulated pool's
    # DIR; the mux pins then drive its `mux_select` control command.
    slot_simulator_dir: str = ""

    def __post_init__(self) -> None:
        if self.slot_pin_factory == "simulator" and not self.slot_simulator_dir:
            raise ConfigError("modems.slot_simulator_dir",
                              'is required with slot_pin_factory = "simulator"')
        seen: dict[int, str] = {}
        for i, mux in enumerate(self.slot_mux):
            key = f"modems.slot_mux[{i}]"
            if self.slot_pin_factory == "simulator" and not SIMULATED_PORT.search(mux.port):
                raise ConfigError(key + ".port", "with the simulator pin factory it must name "
                                  f"one simulated port, DIR/ttyGSM<n> (got {mux.port!r})")
            codes = 2 ** len(mux.select_pins)
            if mux.slots > codes:
                raise ConfigError(key + ".slots", f"{mux.slots} cards need more than "
                                  f"{len(mux.select_pins)} select lines (they pick {codes})")
            for name, pin in mux.pins():
                if pin in seen:
                    raise ConfigError(f"{key}.{name}", f"BCM pin {pin} is already "
                                      f"{seen[pin]}")
                seen[pin] = f"{key}.{name}"

    def mux_pins(self) -> dict[int, str]:
        """Every BCM pin the multiplexers use, with the key that names it."""
        return {pin: f"modems.slot_mux[{i}].{name}"
                for i, mux in enumerate(self.slot_mux) for name, pin in mux.pins()}


@dataclass(frozen=True)
class QueueSettings:
    high_water: int = field(default=100_000, metadata=_check(lambda v: v >= 1, "must be >= 1"))
    validate_in_child: bool = True  # big batches: daemon/validator.py


@dataclass(frozen=True)
class SendSettings:
    max_parts: int = field(default=10, metadata=_check(lambda v: 1 <= v <= 255,
                                                       "must be 1..255"))
    default_priority: int = field(default=5, metadata=_check(lambda v: 0 <= v <= 9,
                                                             "must be 0..9"))
    settle_s: float = field(default=300.0, metadata=_check(lambda v: v >= 0, "must be >= 0"))
    grace_s: float = field(default=10.0, metadata=_check(lambda v: v >= 0, "must be >= 0"))
    max_attempts: int = field(default=3, metadata=_check(lambda v: 1 <= v <= 20,
                                                         "must be 1..20"))
    retry_backoff_s: float = field(default=30.0, metadata=_check(lambda v: 0 <= v <= 86400,
                                                                 "must be 0..86400"))
    per_recipient_24h: int = field(default=0, metadata=_COUNT)
    bench_after_failures: int = field(default=3, metadata=_check(lambda v: 1 <= v <= 100,
                                                                 "must be 1..100"))
    bench_s: float = field(default=1800.0, metadata=_check(lambda v: 1 <= v <= 7 * 86400,
                                                           "must be 1..604800 seconds"))


@dataclass(frozen=True)
class ReceiveSettings:
    scan_s: float = field(default=120.0, metadata=_check(lambda v: 1 <= v <= 3600,
                                                        "must be 1..3600 seconds"))
    reassembly_timeout_s: float = field(default=300.0, metadata=_check(
        lambda v: 1 <= v <= 86400, "must be 1..86400 seconds"))
    optout_keywords: tuple[str, ...] = field(
        default=("STOP", "UNSUBSCRIBE", "СТОП", "ОТПИСАТЬСЯ", "TD", "退订"),
        metadata=_check(lambda v: all(isinstance(k, str) and k.strip() for k in v),
                        "must be a list of non-empty strings"))
    optout_confirmation: str = ""
    inactive_after: int = field(default=3, metadata=_check(lambda v: 1 <= v <= 100,
                                                           "must be 1..100"))


def _zone_ok(value: str) -> bool:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _clock_ok(value: str) -> bool:
    return value == "" or bool(_HHMM.fullmatch(value))


def _date_ok(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


_OVERRIDE = _check(lambda v: v is None or (isinstance(v, int | float)
                                           and not isinstance(v, bool) and v >= 0),
                   "must be a number >= 0 (0 = no limit)")


@dataclass(frozen=True)
class SimLimitSettings:
    """Per-ICCID overrides; a key left out keeps the [limits] default."""

    per_minute: int | None = field(default=None, metadata=_OVERRIDE)
    per_hour: int | None = field(default=None, metadata=_OVERRIDE)
    per_day: int | None = field(default=None, metadata=_OVERRIDE)
    per_month: int | None = field(default=None, metadata=_OVERRIDE)
    min_gap_s: float | None = field(default=None, metadata=_OVERRIDE)


@dataclass(frozen=True)
class HolidaySettings:
    start: str = field(metadata=_check(_date_ok, "must be a date like 2027-02-05"))
    end: str = field(metadata=_check(_date_ok, "must be a date like 2027-02-20"))
    per_minute: int = field(default=0, metadata=_COUNT)
    per_hour: int = field(default=500, metadata=_COUNT)
    per_day: int = field(default=2000, metadata=_COUNT)
    per_month: int = field(default=0, metadata=_COUNT)
    min_gap_s: float = field(default=0.0, metadata=_check(lambda v: v >= 0, "must be >= 0"))


@dataclass(frozen=True)
class LimitsSettings:
    timezone: str = field(default="Asia/Shanghai", metadata=_check(
        _zone_ok, "must be an IANA time zone such as Asia/Shanghai"))
    per_minute: int = field(default=0, metadata=_COUNT)
    per_hour: int = field(default=200, metadata=_COUNT)
    per_day: int = field(default=1000, metadata=_COUNT)
    per_month: int = field(default=0, metadata=_COUNT)
    min_gap_s: float = field(default=0.0, metadata=_check(lambda v: v >= 0, "must be >= 0"))
    sim: dict[str, SimLimitSettings] = field(default_factory=dict)
    holiday: tuple[HolidaySettings, ...] = ()


@dataclass(frozen=True)
class QuietHoursSettings:
    start: str = field(default="", metadata=_check(_clock_ok, 'must be "HH:MM" or ""'))
    end: str = field(default="", metadata=_check(_clock_ok, 'must be "HH:MM" or ""'))


@dataclass(frozen=True)
class RouteSettings:
    prefix: str = field(metadata=_check(lambda v: bool(re.fullmatch(r"\+[0-9]{1,15}", v)),
                                        'must be "+" and digits, e.g. "+86138"'))
    iccids: tuple[str, ...] = ()
    operators: tuple[str, ...] = ()
    fallback: bool = True


@dataclass(frozen=True)
class LedSettings:
    enabled: bool = False
    pin_factory: str = field(default="auto", metadata=_check(
        lambda v: v in PIN_FACTORIES, "must be auto, mock, lgpio, rpigpio, pigpio or native"))
    heartbeat_pin: int = field(default=17, metadata=_BCM)
    broker_pin: int = field(default=27, metadata=_BCM)
    pool_pin: int = field(default=22, metadata=_BCM)
    activity_pin: int = field(default=23, metadata=_BCM)
    fault_pin: int = field(default=24, metadata=_BCM)


@dataclass(frozen=True)
class Settings:
    gateway: GatewaySettings
    mqtt: MqttSettings = MqttSettings()
    modems: ModemSettings = ModemSettings()
    queue: QueueSettings = QueueSettings()
    send: SendSettings = SendSettings()
    receive: ReceiveSettings = ReceiveSettings()
    leds: LedSettings = LedSettings()
    limits: LimitsSettings = LimitsSettings()
    quiet_hours: QuietHoursSettings = QuietHoursSettings()
    routing: tuple[RouteSettings, ...] = ()
    security: SecuritySettings = SecuritySettings()

    def __post_init__(self) -> None:
        if not self.leds.enabled:
            return
        muxes = self.modems.mux_pins()
        for name in ("heartbeat", "broker", "pool", "activity", "fault"):
            pin = getattr(self.leds, f"{name}_pin")
            if pin in muxes:
                raise ConfigError(muxes[pin], f"BCM pin {pin} is already leds.{name}_pin")

    @property
    def data_dir(self) -> Path:
        return Path(self.gateway.data_dir)

    @property
    def control_socket(self) -> Path:
        return Path(self.gateway.control_socket or self.data_dir / "control.sock")


def load(path: str | Path) -> Settings:
    """Read and check the TOML file at `path`."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError("(file)", f"{path} does not exist") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError("(file)", f"{path} is not valid TOML: {e}") from e
    return parse(raw)


def parse(raw: dict[str, Any]) -> Settings:
    """Build Settings from a parsed TOML document."""
    return _build(Settings, raw, "")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(prefix.rstrip(".") or "(top)", "must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(prefix + key, f"unknown key (known: {', '.join(fields)})")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = prefix + name
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if isinstance(hints[name], type) and dataclasses.is_dataclass(hints[name]):
                    values[name] = _build(hints[name], {}, key + ".")
                    continue
                raise ConfigError(key, "is required")
            continue
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[name] = _build(hint, raw[name], key + ".")
            continue
        value = _coerce(hint, raw[name], key)
        check = f.metadata.get("check")
        if check and not check[0](value):
            raise ConfigError(key, f"{check[1]} (got {raw[name]!r})")
        values[name] = value
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(key, f"must be a list (got {type(value).__name__})")
        item = args[0] if args else None
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            return tuple(_build(item, v, f"{key}[{i}].") for i, v in enumerate(value))
        return tuple(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"must be a table (got {type(value).__name__})")
        item = args[1]
        return {k: _build(item, v, f"{key}.{k}.") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(key, f"must be an integer (got {value!r})")
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false (got {value!r})")
    if not isinstance(value, hint):
        raise ConfigError(key, f"must be a {hint.__name__} (got {type(value).__name__})")
    return value
