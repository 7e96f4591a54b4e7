"""Control commands staging field conditions: inbound SMS, reports, operator, radio, SIM, noise."""

from __future__ import annotations

import re

from modem.sim.control_args import (
    ControlTarget,
    Reply,
    Request,
    bool_field,
    choice_field,
    int_field,
    int_list_field,
    port_of,
    slot_of,
    slot_reply,
    str_list_field,
)
from modem.sim.deliver import REF_MODULO, gsm7_codes
from modem.sim.device import SimModem
from modem.sim.errors import ControlError
from modem.sim.faults import REPORT_OUTCOMES, SIM_STATES, CardFaults, Faults, ReportPolicy
from modem.sim.inbound import InboundSms, plan
from modem.sim.sms_commands import STORE_MEMORIES

MAX_TEXT_CHARS = 10_000
MAX_DELAY_S = 3600.0
MAX_SENDS = 1_000_000
MAX_CMS_CODE = 511
MAX_CSQ, CSQ_UNKNOWN = 31, 99
MAX_CREG = 5
MAX_NOISE_LINES = 100
MAX_GARBAGE_OCTETS = 4096
MAX_USSD_CHARS = 182  # 24.080: a USSD string of 160 octets holds 182 GSM-7 characters
_ADDRESS = re.compile(r"\+?\d{1,20}")
MAX_ALPHANUMERIC_SENDER = 11  # 23.040: at most 11 GSM-7 characters


def _sender(request: Request) -> str:
    sender = request.get("from")
    if not isinstance(sender, str) or not sender:
        raise ControlError('"from" must be a phone number or an alphanumeric sender')
    if _ADDRESS.fullmatch(sender):
        return sender
    if len(sender) > MAX_ALPHANUMERIC_SENDER or gsm7_codes(sender) is None:
        raise ControlError('"from" must be digits, +digits or up to 11 GSM-7 characters')
    return sender


def _inbound(request: Request, default_reference: int) -> InboundSms:
    text = request.get("text")
    if not isinstance(text, str) or not 0 < len(text) <= MAX_TEXT_CHARS:
        raise ControlError(f'"text" must be a string of 1..{MAX_TEXT_CHARS} characters')
    ref_bits = request.get("ref_bits", 8)
    if ref_bits not in REF_MODULO:
        raise ControlError('"ref_bits" must be 8 or 16')
    order = int_list_field(request, "order")
    return InboundSms(
        sender=_sender(request),
        text=text,
        encoding=choice_field(request, "encoding", ("auto", "gsm7", "ucs2"), "auto"),
        ref_bits=ref_bits,
        reference=int_field(request, "reference", 0, REF_MODULO[ref_bits] - 1, default_reference),
        order=tuple(order) if order is not None else None,
        drop=frozenset(int_list_field(request, "drop") or ()),
        repeat=frozenset(int_list_field(request, "repeat") or ()),
    )


def inject_sms(target: ControlTarget, request: Request) -> Reply:
    """Deliver an SMS from the network: store each part, announce it with +CMTI if asked.

    Addressed to the card in "slot" (default: the selected one). While that card is switched
    out (or being read after a switch) the network holds the SMS: reply "held": true."""
    port = port_of(target, request)
    slot = slot_of(port, request)
    sms = _inbound(request, port.next_reference)
    notify = bool_field(request, "notify", True)
    memory = request.get("memory")
    if memory is not None and memory not in STORE_MEMORIES:
        raise ControlError(f'"memory" must be one of {list(STORE_MEMORIES)}')

    def deliver(modem: SimModem) -> Reply:
        if not modem.on_air:
            raise ControlError(f"port {port.index} is not registered: the network cannot deliver")
        try:
            parts, sequence = plan(sms, modem.clock(), modem.sms_center)
        except ValueError as e:
            raise ControlError(str(e)) from None
        indexes = [modem.receive_sms(parts[n - 1], memory, notify) for n in sequence]
        stored = [i for i in indexes if i is not None]
        return {
            "port": port.index, **slot_reply(port, slot), "parts": len(parts), "indexes": stored,
            "refused": len(indexes) - len(stored), "reference": sms.reference,
            "memory": memory or modem.cpms[2],
        }  # fmt: skip

    def deliver_or_hold(modem: SimModem) -> Reply:
        if modem.attached(slot):
            return deliver(modem)
        try:  # refuse a bad plan now, not when the card comes back
            parts, _ = plan(sms, modem.clock(), modem.sms_center)
        except ValueError as e:
            raise ControlError(str(e)) from None
        modem.hold(slot, "sms", deliver)
        return {
            "port": port.index, **slot_reply(port, slot), "parts": len(parts), "indexes": [],
            "refused": 0, "reference": sms.reference, "memory": memory, "held": True,
        }  # fmt: skip

    reply = port.with_modem(deliver_or_hold)
    port.next_reference = (sms.reference + 1) % REF_MODULO[sms.ref_bits]
    return reply


def reports(target: ControlTarget, request: Request) -> Reply:
    """Set the status-report policy for future sends of the card in "slot" (default: the
    selected one) on one port, or on every port when "port" is absent."""
    outcome = choice_field(request, "outcome", REPORT_OUTCOMES, "delivered")
    delay = request.get("delay_s", 0.0)
    if (
        isinstance(delay, bool)
        or not isinstance(delay, int | float)
        or not 0 <= delay <= MAX_DELAY_S
    ):
        raise ControlError(f'"delay_s" must be a number in 0..{MAX_DELAY_S}')
    ports = target.ports if request.get("port") is None else [port_of(target, request)]
    policy = ReportPolicy(outcome, float(delay))
    slots = [slot_of(port, request) for port in ports]  # validate every port before changing any
    for port, slot in zip(ports, slots, strict=True):
        port.configure_card(slot, lambda f: setattr(f, "reports", policy))
    reply: Reply = {"ports": [p.index for p in ports], "outcome": outcome, "delay_s": float(delay)}
    if request.get("slot") is not None:
        reply["slot"] = request["slot"]
    return reply


def report_for(target: ControlTarget, request: Request) -> Reply:
    """Emit one status report for TP-MR "mr" of the card in "slot" now, with TP-ST "status"
    (delivered_as "held" while that card is switched out)."""
    port = port_of(target, request)
    slot = slot_of(port, request)
    mr = int_field(request, "mr", 0, 255)
    status = int_field(request, "status", 0, 255)
    routed = port.with_modem(lambda m: m.report_to(slot, mr, status))
    return {"port": port.index, **slot_reply(port, slot), "mr": mr, "status": status, **routed}


def block_after(target: ControlTarget, request: Request) -> Reply:
    """Let "sends" more sends through, then answer every AT+CMGS with +CMS ERROR: "code"."""
    port = port_of(target, request)
    slot = slot_of(port, request)
    sends = int_field(request, "sends", 0, MAX_SENDS)
    code = int_field(request, "code", 0, MAX_CMS_CODE, 21)
    port.configure_card(slot, lambda f: f.block(sends, code))
    blocked = port.card_faults(slot).blocked
    return {
        "port": port.index, **slot_reply(port, slot), "sends": sends, "code": code,
        "blocked": blocked,
    }  # fmt: skip


def unblock(target: ControlTarget, request: Request) -> Reply:
    """Lift an operator block (of the card in "slot", default the selected one)."""
    port = port_of(target, request)
    slot = slot_of(port, request)
    port.configure_card(slot, CardFaults.unblock)
    return {"port": port.index, **slot_reply(port, slot), "blocked": False}


def ussd(target: ControlTarget, request: Request) -> Reply:
    """Set what the operator answers to a USSD code (e.g. *100#) dialled from the card."""
    port = port_of(target, request)
    slot = slot_of(port, request)
    text = request.get("text")
    if not isinstance(text, str) or not 0 < len(text) <= MAX_USSD_CHARS or any(
            c in text for c in '"\r\n'):
        raise ControlError(f'"text" must be 1..{MAX_USSD_CHARS} characters, one line, no \'"\'')
    port.configure_card(slot, lambda f: setattr(f, "ussd_answer", text))
    return {"port": port.index, **slot_reply(port, slot), "text": text}


def radio(target: ControlTarget, request: Request) -> Reply:
    """Set signal (+CSQ) and registration (+CREG <stat>); sends need stat 1 or 5 and a signal."""
    port = port_of(target, request)
    csq = int_field(request, "csq", 0, CSQ_UNKNOWN, port.faults.csq)
    if MAX_CSQ < csq < CSQ_UNKNOWN:
        raise ControlError(f'"csq" must be 0..{MAX_CSQ} or {CSQ_UNKNOWN}')
    creg = int_field(request, "creg", 0, MAX_CREG, port.faults.creg)

    def apply(faults: Faults) -> None:
        faults.csq, faults.creg = csq, creg

    port.configure(apply)
    port.retry_held()  # registered again: the network retries what it held
    return {"port": port.index, "csq": csq, "creg": creg, "registered": port.faults.registered}


def sim(target: ControlTarget, request: Request) -> Reply:
    """Set the state of the card in "slot" (default the selected one): ready, absent (CME 10)
    or waiting for its PIN."""
    port = port_of(target, request)
    slot = slot_of(port, request)
    state = choice_field(request, "state", SIM_STATES, "ready")
    port.configure_card(slot, lambda f: setattr(f, "sim_state", state))
    port.retry_held()
    return {"port": port.index, **slot_reply(port, slot), "state": state}


def noise(target: ControlTarget, request: Request) -> Reply:
    """Write unsolicited lines now (mid-command if a send is waiting for the network)."""
    port = port_of(target, request)
    lines = str_list_field(request, "lines")
    if len(lines) > MAX_NOISE_LINES or any("\r" in x or "\n" in x for x in lines):
        raise ControlError(f'"lines" must be at most {MAX_NOISE_LINES} lines without CR/LF')
    try:
        data = "".join(f"\r\n{line}\r\n" for line in lines).encode("latin-1")
    except UnicodeEncodeError:
        raise ControlError('"lines" must be Latin-1 text, as modems print') from None
    port.write_raw(data)
    return {"port": port.index, "lines": len(lines)}


def garbage(target: ControlTarget, request: Request) -> Reply:
    """Write raw bytes (e.g. non-UTF-8 line noise) followed by CR LF."""
    port = port_of(target, request)
    text = request.get("hex")
    try:
        data = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        data = b""
    if not 0 < len(data) <= MAX_GARBAGE_OCTETS:
        raise ControlError(f'"hex" must be 1..{MAX_GARBAGE_OCTETS} octets of hex')
    port.write_raw(data + b"\r\n")
    return {"port": port.index, "octets": len(data)}
