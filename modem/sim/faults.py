"""Conditions set from the control socket (faults, operator, radio, SIM, report policy).

CardFaults describe one SIM card and its operator account (state, block, report policy);
Faults add what belongs to the port (queued send failures, signal, registration). A single-slot
port keeps one Faults object for both roles, as before slots existed: its card's `faults` is
None and the port's Faults stands in. Owned by the port (cards by their slot), so they survive
unplug/replug; read by its SimModem under the port's lock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

SIM_STATES = ("ready", "absent", "pin")
REPORT_OUTCOMES = ("none", "delivered", "failed", "pending_then_delivered")
DEFAULT_USSD_ANSWER = "Balance: 12.34 CNY"  # the operator's answer to any USSD code
REGISTERED_STATS = (1, 5)  # +CREG <stat>: registered home / roaming
CSQ_DEFAULT = 21
CSQ_UNKNOWN = 99
CREG_HOME = 1


@dataclass
class ReportPolicy:
    """What happens to a sent part that asked for a status report, and after how long."""

    outcome: str = "none"
    delay_s: float = 0.0


@dataclass
class CardFaults:
    """Conditions of one SIM card and its operator account."""

    block_after: int | None = None  # successful sends the operator allows before blocking
    block_code: int = 21
    sends_ok: int = 0
    sim_state: str = "ready"
    reports: ReportPolicy = field(default_factory=ReportPolicy)
    reports_sent: int = 0
    ussd_answer: str = DEFAULT_USSD_ANSWER

    @property
    def blocked(self) -> bool:
        """True once the operator has blocked the SIM (every send is refused)."""
        return self.block_after is not None and self.sends_ok >= self.block_after

    def block_error(self) -> str | None:
        """The operator's answer to a send now: +CMS ERROR when blocked, else None."""
        return f"+CMS ERROR: {self.block_code}" if self.blocked else None

    def block(self, sends: int, code: int) -> None:
        """Let `sends` more sends through, then refuse every one with +CMS ERROR: `code`."""
        self.block_after, self.block_code, self.sends_ok = sends, code, 0

    def unblock(self) -> None:
        """Lift the operator's block."""
        self.block_after, self.sends_ok = None, 0


@dataclass
class Faults(CardFaults):
    """Faults injected from the control socket; owned by the port, read by its modem."""

    send_errors: deque[str] = field(default_factory=deque)
    csq: int = CSQ_DEFAULT
    creg: int = CREG_HOME
    refused_full: int = 0

    def fail_next(self, error: str, count: int) -> None:
        """Make the next `count` sends answer `error` (a final result line) instead of +CMGS."""
        self.send_errors.extend([error] * count)

    def pop_send_error(self) -> str | None:
        """The next queued fail_next error, or None."""
        return self.send_errors.popleft() if self.send_errors else None

    def take_send_error(self) -> str | None:
        """Return the error line for the send starting now, or None if it should succeed."""
        return self.pop_send_error() or self.block_error()

    @property
    def registered(self) -> bool:
        """True when the radio is attached to a network that can carry SMS."""
        return self.creg in REGISTERED_STATS and self.csq != CSQ_UNKNOWN
