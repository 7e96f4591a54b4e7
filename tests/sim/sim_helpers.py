"""Shared helpers for the simulator tests: PDU builders and polling with a deadline."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from gsmmodem.modem import GsmModem
from gsmmodem.pdu import encodeSmsSubmitPdu

T = TypeVar("T")
DEST = "+8613800138000"
DEST_SEMI_OCTETS = "0D91683108108300F0"  # length 13 digits, TON international, swapped BCD
POLL_INTERVAL_S = 0.02


def wait_for(check: Callable[[], T], timeout: float = 5.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL_INTERVAL_S)


def library_pdus(text: str, reference: int = 0) -> list[tuple[str, int]]:
    """Return (hex PDU, TPDU length) pairs as python-gsmmodem would send them."""
    return [(str(p), p.tpduLength) for p in encodeSmsSubmitPdu(DEST, text, reference=reference)]


def ucs2_pdu(payload: bytes, concat: tuple[int, int, int] | None = None) -> tuple[str, int]:
    """Build an SMS-SUBMIT with UCS2 user data by hand (the library refuses non-BMP text)."""
    first = 0x21  # SMS-SUBMIT, status report requested
    udh = b""
    if concat is not None:
        first |= 0x40
        udh = bytes([5, 0x00, 3, *concat])
    ud = udh + payload
    tpdu = bytes([first, 0]) + bytes.fromhex(DEST_SEMI_OCTETS) + bytes([0, 0x08, len(ud)]) + ud
    return "00" + tpdu.hex().upper(), len(tpdu)


@contextmanager
def connected(path: Path) -> Iterator[GsmModem]:
    """A GsmModem connected on `path` the way the daemon opens ports, closed afterwards."""
    modem = GsmModem(str(path), 115200)
    modem.connect()
    try:
        yield modem
    finally:
        modem.close()


def journal(directory: Path) -> list[dict[str, Any]]:
    """Every record the simulated network has journalled so far."""
    path = directory / "network.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
