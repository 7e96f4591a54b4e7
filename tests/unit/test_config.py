"""daemon/config: defaults, and every refusal names the key at fault."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from daemon.config import EX_CONFIG, ConfigError, Settings, load, parse

MINIMAL = {"gateway": {"id": "gw-01"}}
FULL = {
    "gateway": {"id": "gw-01", "data_dir": "/tmp/smsgw", "default_region": "RU"},
    "mqtt": {"host": "broker.local", "port": 8883},
    "modems": {"ports": ["/dev/serial/by-path/*-port0"], "baudrate": 115200},
}


def _with(path: str, value: Any, base: dict[str, Any] = MINIMAL) -> dict[str, Any]:
    raw = copy.deepcopy(base)
    section, _, key = path.rpartition(".")
    target = raw.setdefault(section, {}) if section else raw
    target[key] = value
    return raw


def _error_key(raw: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse(raw)
    assert info.value.key in str(info.value)
    return info.value.key


def test_defaults() -> None:
    s = parse(MINIMAL)
    assert isinstance(s, Settings)
    assert (s.gateway.id, s.gateway.data_dir, s.gateway.default_region) == (
        "gw-01", "/var/lib/smsgw", "CN")
    assert (s.mqtt.host, s.mqtt.port) == ("127.0.0.1", 1883)
    assert s.mqtt.session_expiry_s >= 86400
    assert (s.modems.ports, s.modems.baudrate) == ((), 115200)
    assert s.queue.high_water == 100_000
    assert (s.send.max_parts, s.send.default_priority, s.send.settle_s, s.send.grace_s) == (
        10, 5, 300.0, 10.0)
    assert s.data_dir == Path("/var/lib/smsgw")
    assert s.control_socket == Path("/var/lib/smsgw/control.sock")


def test_contract_keys_are_read() -> None:
    s = parse(FULL)
    assert (s.gateway.data_dir, s.gateway.default_region) == ("/tmp/smsgw", "RU")
    assert (s.mqtt.host, s.mqtt.port) == ("broker.local", 8883)
    assert s.modems.ports == ("/dev/serial/by-path/*-port0",)


def test_settings_are_frozen() -> None:
    s = parse(MINIMAL)
    with pytest.raises(AttributeError):
        s.mqtt.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(("path", "value", "attr", "expected"), [
    ("modems.rescan_s", 5, "modems.rescan_s", 5.0),
    ("modems.cmgs_timeout_s", 60, "modems.cmgs_timeout_s", 60.0),
    ("send.settle_s", 0, "send.settle_s", 0.0),
    ("send.grace_s", 2.5, "send.grace_s", 2.5),
    ("mqtt.port", 1, "mqtt.port", 1),
    ("mqtt.port", 65535, "mqtt.port", 65535),
    ("mqtt.keepalive", 5, "mqtt.keepalive", 5),
    ("mqtt.fleet_group", "fleet_A-1", "mqtt.fleet_group", "fleet_A-1"),
    ("gateway.id", "A" * 64, "gateway.id", "A" * 64),
    ("gateway.default_region", "GB", "gateway.default_region", "GB"),
    ("gateway.log_level", "debug", "gateway.log_level", "debug"),
    ("gateway.control_socket", "/run/x.sock", "control_socket", Path("/run/x.sock")),
    ("send.max_parts", 255, "send.max_parts", 255),
    ("send.default_priority", 0, "send.default_priority", 0),
    ("modems.ports", [], "modems.ports", ()),
    ("modems.ports", ["/dev/ttyUSB0", "/dev/ttyUSB1"], "modems.ports",
     ("/dev/ttyUSB0", "/dev/ttyUSB1")),
    ("modems.baudrate", 9600, "modems.baudrate", 9600),
])
def test_accepted_values(path: str, value: Any, attr: str, expected: Any) -> None:
    result: Any = parse(_with(path, value))
    for name in attr.split("."):
        result = getattr(result, name)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(("raw", "key"), [
    # unknown keys
    (_with("bogus", 1), "bogus"),
    (_with("mqtt.bogus", 1), "mqtt.bogus"),
    (_with("gateway.ID", "x"), "gateway.ID"),
    (_with("modems.port", ["/dev/ttyUSB0"]), "modems.port"),
    (_with("send.extra", {"a": 1}), "send.extra"),
    # missing gateway.id
    ({}, "gateway.id"),
    ({"gateway": {}}, "gateway.id"),
    ({"gateway": {"data_dir": "/x"}, "mqtt": {"port": 1883}}, "gateway.id"),
    # a section that is not a table
    (_with("mqtt", 5), "mqtt"),
    (_with("gateway", "gw-01", {}), "gateway"),
    (_with("modems", ["/dev/ttyUSB0"]), "modems"),
    (["gateway"], "(top)"),
    # wrong types
    (_with("gateway.id", 5), "gateway.id"),
    (_with("gateway.data_dir", 1), "gateway.data_dir"),
    (_with("mqtt.host", ["a"]), "mqtt.host"),
    (_with("mqtt.port", "1883"), "mqtt.port"),
    (_with("mqtt.port", 1883.0), "mqtt.port"),
    (_with("mqtt.port", True), "mqtt.port"),
    (_with("send.max_parts", False), "send.max_parts"),
    (_with("queue.high_water", True), "queue.high_water"),
    (_with("modems.rescan_s", "5"), "modems.rescan_s"),
    (_with("modems.rescan_s", True), "modems.rescan_s"),
    (_with("modems.ports", "/dev/ttyUSB0"), "modems.ports"),
    (_with("modems.ports", ["/dev/ttyUSB0", 5]), "modems.ports"),
    (_with("modems.ports", [""]), "modems.ports"),
    # impossible values
    (_with("mqtt.port", 0), "mqtt.port"),
    (_with("mqtt.port", 65536), "mqtt.port"),
    (_with("mqtt.port", -1), "mqtt.port"),
    (_with("mqtt.keepalive", 4), "mqtt.keepalive"),
    (_with("mqtt.session_expiry_s", 3600), "mqtt.session_expiry_s"),
    (_with("mqtt.fleet_group", "a/b"), "mqtt.fleet_group"),
    (_with("modems.baudrate", 12345), "modems.baudrate"),
    (_with("modems.rescan_s", 0.1), "modems.rescan_s"),
    (_with("modems.rescan_s", float("nan")), "modems.rescan_s"),
    (_with("modems.cmgs_timeout_s", 0), "modems.cmgs_timeout_s"),
    (_with("queue.high_water", 0), "queue.high_water"),
    (_with("send.max_parts", 0), "send.max_parts"),
    (_with("send.max_parts", 256), "send.max_parts"),
    (_with("send.default_priority", 10), "send.default_priority"),
    (_with("send.settle_s", -1), "send.settle_s"),
    (_with("send.grace_s", -0.5), "send.grace_s"),
    (_with("gateway.log_level", "DEBUG"), "gateway.log_level"),
    # gateway id is part of every topic
    (_with("gateway.id", ""), "gateway.id"),
    (_with("gateway.id", "A" * 65), "gateway.id"),
    (_with("gateway.id", "gw 01"), "gateway.id"),
    (_with("gateway.id", "gw/01"), "gateway.id"),
    (_with("gateway.id", "gw+"), "gateway.id"),
    (_with("gateway.id", "gw#"), "gateway.id"),
    (_with("gateway.id", "gw-01\n"), "gateway.id"),
    # bad region
    (_with("gateway.default_region", "XX"), "gateway.default_region"),
    (_with("gateway.default_region", "cn"), "gateway.default_region"),
    (_with("gateway.default_region", "CHN"), "gateway.default_region"),
    (_with("gateway.default_region", ""), "gateway.default_region"),
])
def test_errors_name_the_key(raw: Any, key: str) -> None:
    assert _error_key(raw) == key


def test_config_error_is_a_value_error_and_exit_code_is_ex_config() -> None:
    assert issubclass(ConfigError, ValueError)
    assert EX_CONFIG == 78


# --- load(path) -----------------------------------------------------------------

CONTRACT_TOML = """
[gateway]
id = "gw-01"                  # [A-Za-z0-9_-]{1,64}; part of every topic
data_dir = "/var/lib/smsgw"
default_region = "CN"         # ISO 3166 region for numbers written without +CC

[mqtt]
host = "127.0.0.1"
port = 1883

[modems]
ports = ["/dev/serial/by-path/*-port0"]   # paths or globs
baudrate = 115200
"""


def test_load_reads_the_contract_example(tmp_path: Path) -> None:
    path = tmp_path / "smsgw.toml"
    path.write_text(CONTRACT_TOML, encoding="utf-8")
    s = load(path)
    assert (s.gateway.id, s.mqtt.port, s.modems.ports) == (
        "gw-01", 1883, ("/dev/serial/by-path/*-port0",))
    assert load(str(path)) == s


@pytest.mark.parametrize(("text", "key"), [
    (CONTRACT_TOML.replace("port = 1883", 'port = "1883"'), "mqtt.port"),
    (CONTRACT_TOML.replace("port = 1883", "port = 70000"), "mqtt.port"),
    (CONTRACT_TOML.replace("port = 1883", "port = 1883\nretries = 3"), "mqtt.retries"),
    (CONTRACT_TOML.replace('id = "gw-01"', ""), "gateway.id"),
    (CONTRACT_TOML.replace('"CN"', '"ZZ"'), "gateway.default_region"),
    (CONTRACT_TOML + "\n[send]\nrate = 1\n", "send.rate"),
    (CONTRACT_TOML + "\n[queue]\nhigh_water = 1.5\n", "queue.high_water"),
    (CONTRACT_TOML + "\n[modems.extra]\n", "modems.extra"),
    ("[gateway\nid = 1", "(file)"),
    ('gateway = { id = "gw-01" }\ngateway = 1\n', "(file)"),
])
def test_load_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "smsgw.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == key


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "nope.toml")
    assert info.value.key == "(file)"
    assert "nope.toml" in str(info.value)


def test_load_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "smsgw.toml"
    path.write_bytes(b'[gateway]\nid = "\xff\xfe"\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == "(file)"
