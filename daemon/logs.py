"""structlog set-up: key=value lines on stdout, which journald captures.

A `<N>` syslog prefix on each line lets journald set PRIORITY, so
`journalctl -p warning` works without a journald library.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}
# syslog priorities (RFC 5424) for the journal's PRIORITY field
_SYSLOG = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "critical": 2,
           "exception": 3}


def _syslog_prefix(_logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    event["_prio"] = _SYSLOG.get(method, 6)
    return event


def _render(_logger: Any, _method: str, event: dict[str, Any]) -> str:
    prio = event.pop("_prio", 6)
    return f"<{prio}>" + structlog.processors.KeyValueRenderer(
        key_order=["event"], drop_missing=True)(_logger, _method, event)


def configure(level: str = "info", journal_prefix: bool = True) -> None:
    """Route structlog to stdout at `level`; call once, from daemon/ only."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if journal_prefix:
        processors += [_syslog_prefix, _render]
    else:
        processors.append(structlog.processors.KeyValueRenderer(key_order=["event"]))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    # The libraries log through stdlib logging; keep their chatter out unless debugging.
    logging.basicConfig(level=logging.WARNING if level != "debug" else logging.DEBUG,
                        stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    logging.getLogger("gsmmodem").setLevel(logging.CRITICAL if level != "debug"
                                           else logging.DEBUG)


def get(name: str) -> Any:
    """A logger bound with `component=name`."""
    return structlog.get_logger().bind(component=name)


class StoreOutage:
    """Logs a store that refuses writes once when it starts and once when it ends.

    Threads that retry a commit every few seconds would otherwise fill the journal
    (64 ports: 32 lines a second) while the technician is trying to read it.
    """

    def __init__(self, log: Any) -> None:
        self._log = log
        self._since: float | None = None  # monotonic start of the outage, None if none

    def failed(self, error: str, **fields: Any) -> None:
        """A write failed: logged only if it is the first of this outage."""
        if self._since is None:
            self._since = time.monotonic()
            self._log.error("store_unavailable", error=error, **fields)

    def recovered(self) -> None:
        """A write went through: ends the outage, if there was one."""
        if self._since is not None:
            self._log.info("store_writable_again",
                           waited_s=round(time.monotonic() - self._since, 1))
            self._since = None
