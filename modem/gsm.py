"""The boundary with python-gsmmodem-new and pyserial: the few overrides the library
needs, and the translation of its exceptions into the modem layer's own.

Nothing outside modem/ imports this module.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import serial
from gsmmodem import exceptions as gsm_exc
from gsmmodem.modem import GsmModem

from modem.errors import (
    CmeError,
    CmsError,
    CommandRejected,
    ModemGone,
    ModemTimeout,
    SimNotReady,
)

# 27.007 §9.2.1: 10 not inserted, 11 PIN, 12 PUK, 13 failure, 14 busy, 15 wrong SIM
CME_SIM_TROUBLE = frozenset({10, 11, 12, 13, 15})
READER_TIMEOUT_S = 10.0


class QueueingGsmModem(GsmModem):
    """GsmModem whose unsolicited lines are queued instead of handled on a new thread.

    The library's own handler issues AT commands from its notification thread,
    racing the owner thread; queueing keeps every command on one thread.
    """

    def __init__(self, port: str, baudrate: int, sink: queue.SimpleQueue[list[str]],
                 wake: Callable[[], None]) -> None:
        super().__init__(port, baudrate, smsReceivedCallbackFunc=_ignore,
                         smsStatusReportCallback=_ignore, requestDelivery=True,
                         fatalErrorCallbackFunc=self._port_lost)
        self._sink = sink
        self._wake = wake

    def _port_lost(self, _error: Exception) -> None:
        """The reader hit a serial error (unplug): end any command waiting for an answer now,
        instead of letting it sit out its timeout (up to 120 s for AT+CMGS)."""
        event = self._responseEvent
        if event is not None:
            event.set()
        self._wake()

    # The library's reader blocks in read() up to this long before it looks at `alive`;
    # its default of 1 s woke 64 idle threads 64 times a second. close() cancels the read.
    timeout = READER_TIMEOUT_S

    def _handleModemNotification(self, lines: list[str]) -> None:
        if self._ussdSessionEvent is not None and lines and lines[0].startswith("+CUSD"):
            # The answer sendUssd() waits for; the library's handler only parses and
            # signals, it sends nothing, so it may run here on the reader thread.
            self._handleUssd(lines)
            return
        self._sink.put(list(lines))
        self._wake()


class BufferedReads:
    """A pyserial port whose one-byte reads are served from a buffer.

    python-gsmmodem's reader thread calls read(1) per byte: a select() and a
    read() system call each, most of an idle gateway's CPU. This fills the buffer
    with everything waiting at once; everything else goes to the real port.
    Only the library's reader thread reads, so the buffer needs no lock.
    """

    def __init__(self, port: serial.Serial) -> None:
        self._port = port
        self._buffer = bytearray()

    def read(self, size: int = 1) -> bytes:
        if not self._buffer:
            waiting = self._port.in_waiting
            # Nothing waiting: block for one byte (up to the port's timeout) as before.
            self._buffer += self._port.read(waiting if waiting else 1)
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def inWaiting(self) -> int:  # the library calls it by this old pyserial name
        return len(self._buffer) + int(self._port.in_waiting)

    @property
    def in_waiting(self) -> int:
        return self.inWaiting()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)


def _ignore(*_args: object) -> None:
    """A callback the library wants but that the queueing subclass never calls."""


@contextmanager
def translated(command: str) -> Iterator[None]:
    """Turn pyserial and gsmmodem exceptions into the modem layer's own."""
    try:
        yield
    except gsm_exc.CmsError as e:
        raise CmsError(command, int(e.code)) from e
    except gsm_exc.PinRequiredError as e:
        raise SimNotReady(f"SIM asks for a PIN ({command})") from e
    except gsm_exc.CmeError as e:
        if int(e.code) in CME_SIM_TROUBLE:
            raise SimNotReady(f"+CME ERROR: {e.code} on {command} (SIM missing, locked or "
                              "failed)") from e
        raise CmeError(command, int(e.code)) from e
    except gsm_exc.TimeoutException as e:
        raise ModemTimeout(f"no answer to {command}") from e
    except gsm_exc.CommandError as e:
        raise CommandRejected(f"ERROR on {command}") from e
    except (serial.SerialException, OSError, AttributeError, IndexError) as e:
        # AttributeError: the library touches self.serial after a failed open;
        # IndexError: it reads the last line of an answer cut short by a lost port.
        raise ModemGone(f"{command}: {e}") from e
