"""Shared pieces of the AT interpreter: final-result failures, argument parsing, error codes."""

from __future__ import annotations

from collections.abc import Callable

Info = list[str]
Handler = Callable[[str, str], "Info | None"]  # (form, args) -> info lines; None = no final yet

# 27.005 / 27.007 error codes the simulator uses.
CME_OPERATION_NOT_ALLOWED = 3
CME_OPERATION_NOT_SUPPORTED = 4
CME_SIM_NOT_INSERTED = 10
CME_SIM_PIN_REQUIRED = 11
CME_SIM_FAILURE = 13
CME_NO_NETWORK_SERVICE = 30
CMS_OPERATION_NOT_ALLOWED = 302
CMS_INVALID_PDU_PARAMETER = 304
CMS_SIM_NOT_INSERTED = 310
CMS_INVALID_MEMORY_INDEX = 321
CMS_NO_NETWORK_SERVICE = 331

CME_TEXT = {
    CME_OPERATION_NOT_ALLOWED: "operation not allowed",
    CME_OPERATION_NOT_SUPPORTED: "operation not supported",
    CME_SIM_NOT_INSERTED: "SIM not inserted",
    CME_SIM_PIN_REQUIRED: "SIM PIN required",
    CME_SIM_FAILURE: "SIM failure",
    CME_NO_NETWORK_SERVICE: "no network service",
}


class Failure(Exception):
    """A command's final result is an error; kind is "plain", "cme" or "cms"."""

    def __init__(self, kind: str, code: int = 0) -> None:
        super().__init__(kind, code)
        self.kind = kind
        self.code = code


def plain() -> Failure:
    """A bare ERROR whatever AT+CMEE says."""
    return Failure("plain")


def cme(code: int) -> Failure:
    """+CME ERROR: code (ERROR under CMEE=0)."""
    return Failure("cme", code)


def cms(code: int) -> Failure:
    """+CMS ERROR: code (ERROR under CMEE=0)."""
    return Failure("cms", code)


def split_commands(body: str) -> list[str]:
    """Split the text after "AT" at ';' outside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in body:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p]


def int_args(args: str) -> list[int]:
    """Parse "2,1,0,2" into ints; raise Failure(plain) on anything else."""
    try:
        return [int(a) for a in args.split(",")] if args.strip() else []
    except ValueError:
        raise plain() from None


def quoted(args: str) -> list[str]:
    """Parse '"ME","ME"' into ['ME', 'ME']."""
    return [a.strip().strip('"').upper() for a in args.split(",")]
