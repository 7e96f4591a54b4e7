"""Fixtures for the simulator tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modem.sim.pool import SimPool


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[SimPool]:
    """A two-port mixed pool (SIM800 on 0, Quectel on 1) in tmp_path, stopped afterwards."""
    sim = SimPool(2, tmp_path, seed=7)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()
