"""systemd's notify protocol (sd_notify(3)): one datagram per message to $NOTIFY_SOCKET.

A few lines instead of a dependency: the `sdnotify` package swallows errors,
and a daemon that silently fails to say READY is restarted in a loop.
"""

from __future__ import annotations

import os
import socket

from daemon import logs

_log = logs.get("sdnotify")


class Notifier:
    """Does nothing when not started by systemd with Type=notify."""

    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        # "@" starts an abstract socket name (Linux): the kernel wants a NUL there.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() else 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, state: str) -> None:
        """Send e.g. "READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=..."."""
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall(state.encode())
        except OSError as e:
            _log.error("sd_notify_failed", state=state, error=str(e))
