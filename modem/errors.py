"""The modem layer's own errors: nothing above modem/ sees pyserial or gsmmodem types."""

from __future__ import annotations


class ModemError(Exception):
    """Base of every error a modem port reports."""


class ModemTimeout(ModemError, TimeoutError):
    """The modem did not answer a command in time."""


class ModemGone(ModemError, ConnectionError):
    """The serial port is closed, unplugged or its reader thread died."""


class CommandRejected(ModemError):
    """The modem answered ERROR (or an unknown error form) to a command."""


class CmeError(CommandRejected):
    """+CME ERROR: equipment or SIM failure (27.007 §9.2)."""

    def __init__(self, command: str, code: int) -> None:
        super().__init__(f"+CME ERROR: {code} on {command}")
        self.code = code


class CmsError(CommandRejected):
    """+CMS ERROR: network or message service failure (27.005 §3.2.5)."""

    def __init__(self, command: str, code: int) -> None:
        super().__init__(f"+CMS ERROR: {code} on {command}")
        self.code = code


class SimNotReady(ModemError):
    """The SIM is missing, locked by a PIN, or not ready."""
