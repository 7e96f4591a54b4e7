"""Policies for what went wrong: how a failed send ends, and how a sick port recovers.

Plain functions and small value objects, tested without ports or brokers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from modem.errors import CmsError, ModemError, ModemGone, ModemTimeout

# CMS codes (27.005 §3.2.5, 24.011 annex E, vendors), sorted by whose fault they are.
# Congestion and temporary failures: try again later, maybe elsewhere.
TRANSIENT_CMS = frozenset({38, 41, 42, 47, 98, 111, 500, 512, 513, 514, 515})
# The SIM or its subscription cannot send now (operator block, no service, SIM
# trouble): the message is fine, another SIM should take it.
SIM_CMS = frozenset({21, 50, 69, 310, 311, 312, 313, 316, 317, 318, 330, 331, 332})
# Anything else (unassigned number 1, unknown subscriber 30, bad PDU 304...) is
# final for this message.


class Verdict(StrEnum):
    """What becomes of a message whose send failed."""

    REQUEUE = "requeue"  # provably never reached the network: it may go again
    FAIL = "fail"  # the network refused it, or it used up its attempts
    UNCERTAIN = "uncertain"  # the PDU was written and never answered


@dataclass(frozen=True)
class SendOutcome:
    verdict: Verdict
    code: str
    reason: str
    sim_fault: bool = False  # counts towards benching the SIM
    retry_in_s: float = 0.0  # for REQUEUE: wait this long first


def judge_send_failure(cause: ModemError, parts_done: int, parts: int, maybe_sent: bool,
                       attempts: int, max_attempts: int, backoff_s: float) -> SendOutcome:
    """Decide a failed send's fate from what the modem said and how far it got."""
    if maybe_sent:
        return SendOutcome(Verdict.UNCERTAIN, "modem_timeout",
                           f"{cause}; the network may have it, so it is not sent again",
                           sim_fault=True)
    if parts_done:
        # The first parts are out: sending it again would repeat them.
        return SendOutcome(Verdict.FAIL, "modem_error",
                           f"{cause} after {parts_done} of {parts} parts went out",
                           sim_fault=True)
    code = cause.code if isinstance(cause, CmsError) else None
    if code is not None and code not in TRANSIENT_CMS and code not in SIM_CMS:
        return SendOutcome(Verdict.FAIL, "modem_error", str(cause))
    sim_fault = code in SIM_CMS or code in TRANSIENT_CMS or isinstance(cause, ModemTimeout)
    if attempts >= max_attempts and code is not None and code not in SIM_CMS:
        return SendOutcome(Verdict.FAIL, "modem_error", f"{cause} (after {attempts} attempts)",
                           sim_fault=sim_fault)
    # Never reached the network: again, after a backoff that grows with each try,
    # preferably on another SIM. A port that vanished is no reason to wait.
    delay = 0.0 if isinstance(cause, ModemGone) else backoff_s * 2 ** max(0, attempts - 1)
    return SendOutcome(Verdict.REQUEUE, "", str(cause), sim_fault=sim_fault, retry_in_s=delay)


def port_is_suspect(cause: ModemError) -> bool:
    """After this error the port must be reopened before it sends again."""
    return isinstance(cause, ModemGone | ModemTimeout)


class Step(StrEnum):
    """Rungs of the recovery ladder, gentlest first."""

    REOPEN = "reopen"
    SOFT_RESET = "soft_reset"  # radio off and on: AT+CFUN=0, AT+CFUN=1
    FULL_RESET = "full_reset"  # AT+CFUN=1,1: the modem restarts (USB ones re-enumerate)
    QUARANTINE = "quarantine"  # rest a long while, then start again from the bottom


@dataclass(frozen=True)
class Ladder:
    """How many failed opens each rung gets, and the backoff between attempts."""

    reopen_tries: int = 3
    soft_tries: int = 2
    full_tries: int = 2
    base_backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    quarantine_s: float = 300.0

    def step(self, failures: int) -> Step:
        """The rung for the next attempt after `failures` consecutive failed opens."""
        if failures < self.reopen_tries:
            return Step.REOPEN
        if failures < self.reopen_tries + self.soft_tries:
            return Step.SOFT_RESET
        if failures < self.reopen_tries + self.soft_tries + self.full_tries:
            return Step.FULL_RESET
        return Step.QUARANTINE

    def backoff(self, failures: int) -> float:
        """Seconds to wait before attempt number `failures` + 1."""
        if failures <= 0:
            return 0.0
        if self.step(failures) is Step.QUARANTINE:
            return self.quarantine_s
        return float(min(self.max_backoff_s, self.base_backoff_s * 2 ** (failures - 1)))

    @property
    def rungs(self) -> int:
        return self.reopen_tries + self.soft_tries + self.full_tries
