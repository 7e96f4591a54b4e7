"""What control commands act on, and validation of request fields into ControlError."""

from __future__ import annotations

from typing import Any, Protocol, TypeGuard

from modem.sim.errors import ControlError
from modem.sim.pty_port import PtyPort

Request = dict[str, Any]
Reply = dict[str, Any]


class ControlTarget(Protocol):
    """What the control commands act on (the pool)."""

    def port(self, index: int) -> PtyPort: ...

    @property
    def ports(self) -> list[PtyPort]: ...

    def stats(self) -> list[dict[str, object]]: ...


def is_int(value: object) -> TypeGuard[int]:
    """True for a JSON integer (bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def port_of(target: ControlTarget, request: Request) -> PtyPort:
    """The port the request names in "port"."""
    index = request.get("port")
    if not is_int(index):
        raise ControlError('"port" must be an integer')
    return target.port(index)


def int_field(request: Request, name: str, low: int, high: int, default: int | None = None) -> int:
    """Field `name` as an int in low..high; required unless a default is given."""
    value = request.get(name, default)
    if not is_int(value) or not low <= value <= high:
        raise ControlError(f'"{name}" must be an integer in {low}..{high}')
    return int(value)


def choice_field(request: Request, name: str, choices: tuple[str, ...], default: str) -> str:
    """Field `name` as one of `choices`."""
    value = request.get(name, default)
    if value not in choices:
        raise ControlError(f'"{name}" must be one of {list(choices)}')
    return str(value)


def bool_field(request: Request, name: str, default: bool) -> bool:
    """Field `name` as true or false."""
    value = request.get(name, default)
    if not isinstance(value, bool):
        raise ControlError(f'"{name}" must be true or false')
    return value


def int_list_field(request: Request, name: str) -> list[int] | None:
    """Field `name` as a list of integers, or None when absent."""
    value = request.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(is_int(v) for v in value):
        raise ControlError(f'"{name}" must be a list of integers')
    return list(value)


def str_list_field(request: Request, name: str) -> list[str]:
    """Field `name` as a non-empty list of strings."""
    value = request.get(name)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ControlError(f'"{name}" must be a non-empty list of strings')
    return list(value)


def slot_of(port: PtyPort, request: Request) -> int:
    """The SIM slot the request names in "slot"; absent means the port's selected slot."""
    value = request.get("slot")
    if value is None:
        return port.bank.active
    if not is_int(value) or not 0 <= value < len(port.bank):
        raise ControlError(f'"slot" must be an integer in 0..{len(port.bank) - 1}')
    return int(value)


def slot_reply(port: PtyPort, slot: int) -> Reply:
    """{"slot": slot} on a port with several slots; nothing on a single-slot port."""
    return {"slot": slot} if len(port.bank) > 1 else {}
