"""Fixtures: a real mosquitto, the real simulator and the real daemon, all per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.gateway import Daemon, SimulatedPool
from tests.support.hq import Hq


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def pool_factory(tmp_path: Path) -> Iterator[type]:
    pools: list[SimulatedPool] = []

    def make(ports: int = 4, **kwargs: object) -> SimulatedPool:
        pool = SimulatedPool(tmp_path / f"pool{len(pools)}" / "dev", ports, **kwargs)
        pools.append(pool)
        return pool

    yield make  # type: ignore[misc]
    for pool in pools:
        pool.stop()


@pytest.fixture
def daemon_factory(tmp_path: Path, broker: Broker) -> Iterator[type]:
    daemons: list[Daemon] = []

    def make(pool: SimulatedPool, gw: str = "gw-test", extra: str = "",
             modems_extra: str = "") -> Daemon:
        d = Daemon(tmp_path / f"gw{len(daemons)}", broker.port, str(pool.dir / "ttyGSM*"),
                   gw=gw, extra=extra, modems_extra=modems_extra)
        daemons.append(d)
        return d

    yield make  # type: ignore[misc]
    for d in daemons:
        if d.alive:
            d.stop()


@pytest.fixture
def hq(broker: Broker) -> Iterator[Hq]:
    h = Hq(broker.port, "gw-test")
    yield h
    h.close()
