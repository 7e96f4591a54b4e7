"""Control commands for SIM slots: list them, switch with the GPIO multiplexer, pull or break
a card, and set the switch delay and the network's hold time (see modem.sim.slots)."""

from __future__ import annotations

from modem.sim.control_args import (
    ControlTarget,
    Reply,
    Request,
    choice_field,
    is_int,
    port_of,
    slot_of,
)
from modem.sim.errors import ControlError
from modem.sim.pty_port import PtyPort
from modem.sim.slots import SLOT_STATES

MAX_TIMING_S = 7 * 24 * 3600.0


def _slot_rows(port: PtyPort) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for index, slot in enumerate(port.bank.slots):
        card, faults = slot.card, port.card_faults(index)
        rows.append({
            "slot": index, "iccid": card.identity.iccid, "imsi": card.identity.imsi,
            "operator": card.identity.operator, "msisdn": card.identity.msisdn,
            "state": slot.state, "sim": faults.sim_state, "active": index == port.bank.active,
            "sends": card.sends, "blocked": faults.blocked, "reports_sent": faults.reports_sent,
            "held": len(card.held), "held_dropped": card.held_dropped,
        })  # fmt: skip
    return rows


def slots(target: ControlTarget, request: Request) -> Reply:
    """Every slot of a port: identity, slot state, card state, active, sends, blocked, held."""
    port = port_of(target, request)
    bank = port.bank
    return {
        "port": port.index, "active_slot": bank.active, "switching": bank.settling,
        "switch_delay_s": bank.switch_delay_s, "hold_s": bank.hold_s, "slots": _slot_rows(port),
    }  # fmt: skip


def _required_slot(port: PtyPort, request: Request) -> int:
    if request.get("slot") is None:
        raise ControlError('"slot" is required')
    return slot_of(port, request)


def mux_select(target: ControlTarget, request: Request) -> Reply:
    """The GPIO SIM multiplexer: select "slot"; the modem sees no SIM for the switch delay."""
    port = port_of(target, request)
    slot = _required_slot(port, request)
    switched = port.select_slot(slot)
    return {"port": port.index, "active_slot": port.bank.active, "switched": switched}


def slot(target: ControlTarget, request: Request) -> Reply:
    """Put a card into "slot" (ready), pull it (empty: CME 10) or break it (broken: CME 13)."""
    port = port_of(target, request)
    index = _required_slot(port, request)
    state = choice_field(request, "state", SLOT_STATES, "ready")
    port.set_slot_state(index, state)
    return {"port": port.index, "slot": index, "state": state}


def _seconds(request: Request, name: str) -> float | None:
    value = request.get(name)
    if value is None:
        return None
    if not (is_int(value) or isinstance(value, float)) or not 0 <= value <= MAX_TIMING_S:
        raise ControlError(f'"{name}" must be a number of seconds in 0..{MAX_TIMING_S:g}')
    return float(value)


def slot_timing(target: ControlTarget, request: Request) -> Reply:
    """Set the switch delay and/or the hold time of one port (every port when "port" is absent).

    A new hold time applies to reports and replies held from now on."""
    ports = target.ports if request.get("port") is None else [port_of(target, request)]
    delay, hold = _seconds(request, "switch_delay_s"), _seconds(request, "hold_s")
    rows = []
    for port in ports:
        if delay is not None:
            port.bank.switch_delay_s = delay
        if hold is not None:
            port.bank.hold_s = hold
        rows.append(
            {"port": port.index, "switch_delay_s": port.bank.switch_delay_s,
             "hold_s": port.bank.hold_s}
        )  # fmt: skip
    return {"ports": rows}
