"""The command line as a technician meets it: bad configs, a daemon that is not running."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.gateway import smsgw_command

GOOD = '[gateway]\nid = "gw-1"\ndata_dir = "{data}"\n'


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*smsgw_command(), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.parametrize(("extra", "key"), [
    ('\n[mqtt]\nport = "1883"\n', "mqtt.port"),
    ('\n[mqtt]\nport = 70000\n', "mqtt.port"),
    ('\n[mqtt]\nhots = "x"\n', "mqtt.hots"),
    ('\n[modems]\nports = "/dev/ttyUSB0"\n', "modems.ports"),
    ('\n[queue]\nhigh_water = 0\n', "queue.high_water"),
    ('\n[send]\nmax_parts = 1.5\n', "send.max_parts"),
    ('\n[gateway2]\nid = "x"\n', "gateway2"),
])
def test_a_bad_config_stops_start_up_with_78_naming_the_key(
        tmp_path: Path, extra: str, key: str) -> None:
    config = tmp_path / "smsgw.toml"
    config.write_text(GOOD.format(data=tmp_path / "data") + extra)
    result = _run("run", "--config", str(config))
    assert result.returncode == 78
    assert key in result.stderr


def test_a_bad_gateway_id_is_named(tmp_path: Path) -> None:
    config = tmp_path / "smsgw.toml"
    config.write_text('[gateway]\nid = "gw 01!"\n')
    result = _run("run", "--config", str(config))
    assert result.returncode == 78
    assert "gateway.id" in result.stderr


def test_a_config_that_is_not_toml_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "smsgw.toml"
    config.write_text("[gateway\nid=")
    result = _run("check-config", "--config", str(config))
    assert result.returncode == 78
    assert "not valid TOML" in result.stderr


def test_status_says_the_daemon_is_not_running(tmp_path: Path) -> None:
    config = tmp_path / "smsgw.toml"
    config.write_text(GOOD.format(data=tmp_path / "data"))
    result = _run("status", "--config", str(config))
    assert result.returncode == 3
    assert "not running" in result.stderr
