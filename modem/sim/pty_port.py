"""Binds one SimModem to a pseudo-terminal at DIR/ttyGSM{i}; unplug and replug it."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import tty
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import structlog

from modem.sim.device import Action, Faults, Latency, Mode, NetworkLink, SimCard, SimModem
from modem.sim.errors import ControlError
from modem.sim.faults import CardFaults
from modem.sim.makes import Make
from modem.sim.slots import SLOT_READY, SlotBank
from modem.sim.storage import ModemMemories
from modem.sim.timers import TimerThread

log = structlog.get_logger(__name__)

PORT_PREFIX = "ttyGSM"
READ_CHUNK = 4096
# How long a write may wait for a client that does not read before the bytes are dropped
# (a real UART would lose them too); keeps a stuck client from freezing the port thread.
WRITE_STALL_S = 1.0
REFERENCE_SPREAD = 37  # start each port's inbound concatenation references apart

T = TypeVar("T")


def port_name(index: int) -> str:
    """Return the device name of port `index`, e.g. ttyGSM0."""
    return f"{PORT_PREFIX}{index}"


@dataclass
class _Session:
    """Everything that exists only while the port is plugged in."""

    master: int
    slave: int  # kept open so the master never sees EIO when the client closes and reopens
    slave_path: str
    wake_r: int
    wake_w: int
    modem: SimModem
    timers: TimerThread
    reader: threading.Thread


class PtyPort:
    """One simulated serial port. Its SIM slots, faults and latency survive replugging."""

    def __init__(
        self,
        index: int,
        directory: Path,
        make: Make,
        imei: str,
        sim: SimCard | SlotBank,
        network: NetworkLink,
        latency: Latency,
    ) -> None:
        self.index = index
        self.name = port_name(index)
        self.link = directory / self.name
        self.make = make
        self.imei = imei
        self.bank = sim if isinstance(sim, SlotBank) else SlotBank([sim])
        self.faults = Faults()  # the port's; also the card's on a single-slot port
        self.memories = ModemMemories()  # the modem's flash keeps ME/SR across a replug
        self.next_reference = (index * REFERENCE_SPREAD) % 256
        self.hung = False
        self._network = network
        self._latency = latency
        self._state_lock = threading.Lock()  # plug/unplug
        self._io_lock = threading.Lock()  # the modem object and the master fd
        self._session: _Session | None = None

    @property
    def sim(self) -> SimCard:
        """The card in the selected slot."""
        return self.bank.active_card

    def card_faults(self, slot: int) -> CardFaults:
        """Conditions of the card in `slot` (the port's Faults on a single-slot port)."""
        return self.bank.slot(slot).card.faults or self.faults

    @property
    def plugged(self) -> bool:
        """True while the port exists and a client can open it."""
        return self._session is not None

    @property
    def slave_path(self) -> str | None:
        """The /dev/pts path the symlink points at while plugged."""
        session = self._session
        return session.slave_path if session else None

    @property
    def busy(self) -> bool:
        """True while a send on this port is waiting for the network's answer."""
        session = self._session
        return session is not None and session.modem.mode is Mode.BUSY

    def plug(self) -> None:
        """Create the pty, point the symlink at it and start answering; no-op if plugged."""
        with self._state_lock:
            if self._session is not None:
                return
            master, slave = os.openpty()
            # Raw at once: the line discipline must never echo or translate what the client sends.
            tty.setraw(slave)
            os.set_blocking(master, False)
            slave_path = os.ttyname(slave)
            wake_r, wake_w = os.pipe()
            timers = TimerThread(f"sim-{self.name}-timers", self._run_locked)
            self.bank.power_on()  # a modem powering up reads the selected card at once
            modem = SimModem(
                self.make, self.imei, self.bank, self.name, self._network,
                emit=self._write, schedule=timers.schedule,
                latency=self._latency, faults=self.faults, memories=self.memories,
            )  # fmt: skip
            reader = threading.Thread(target=self._read_loop, name=f"sim-{self.name}", daemon=True)
            session = _Session(master, slave, slave_path, wake_r, wake_w, modem, timers, reader)
            self._session = session
            self._point_link(slave_path)
            timers.start()
            reader.start()
            log.info(
                "sim_port_plugged", port=self.name, pts=slave_path, iccid=self.sim.identity.iccid
            )

    def unplug(self) -> None:
        """Remove the symlink and close the pty, as when the USB cable is pulled; no-op if out."""
        with self._state_lock:
            session = self._session
            if session is None:
                return
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
            os.write(session.wake_w, b"x")
            session.reader.join()
            # A send still waiting for the network is lost with the modem: it never answers.
            session.timers.stop()
            with self._io_lock:
                self._session = None
                for fd in (session.master, session.slave, session.wake_r, session.wake_w):
                    os.close(fd)
            log.info("sim_port_unplugged", port=self.name)

    def set_hung(self, on: bool) -> None:
        """While hung, the port swallows input and emits nothing (a browned-out modem)."""
        self.hung = on

    def fail_next(self, error: str, count: int) -> None:
        """Make the next `count` sends on this port answer `error` after the latency."""
        with self._io_lock:
            self.faults.fail_next(error, count)

    def with_modem(self, action: Callable[[SimModem], T]) -> T:
        """Run `action` on the live modem under the port's lock; ControlError if unplugged."""
        with self._io_lock:
            session = self._session
            if session is None:
                raise ControlError(f"port {self.index} is unplugged")
            return action(session.modem)

    def configure(self, action: Callable[[Faults], T]) -> T:
        """Change the port's conditions under its lock (they apply plugged or not)."""
        with self._io_lock:
            return action(self.faults)

    def configure_card(self, slot: int, action: Callable[[CardFaults], T]) -> T:
        """Change the conditions of the card in `slot` under the port's lock."""
        with self._io_lock:
            return action(self.card_faults(slot))

    def select_slot(self, slot: int) -> bool:
        """The GPIO multiplexer: select `slot`, as if the select lines changed and SIM-detect
        dropped (the modem reads the card after the switch delay). False if already selected."""
        with self._io_lock:
            session = self._session
            if session is not None:
                return session.modem.select_slot(slot)
            changed = slot != self.bank.active
            self.bank.select(slot)
            self.bank.power_on()  # unplugged: the card is read when the modem powers up
            return changed

    def set_slot_state(self, slot: int, state: str) -> None:
        """Put a card in `slot` (ready), pull it (empty) or kill it (broken). A card put into
        the selected slot is read after the switch delay, as with SIM hot-swap."""
        with self._io_lock:
            entry = self.bank.slot(slot)
            inserted = state == SLOT_READY and entry.state != SLOT_READY
            entry.state = state
            session = self._session
            if session is not None and inserted and slot == self.bank.active:
                session.modem.card_inserted()

    def retry_held(self) -> int:
        """Let the network retry what it holds for the selected card now; returns how many
        were delivered (0 while unplugged, switched out or unregistered)."""
        with self._io_lock:
            session = self._session
            return session.modem.deliver_held() if session is not None else 0

    def write_raw(self, data: bytes) -> None:
        """Write bytes to the client as if the modem had sent them; ControlError if unplugged."""
        with self._io_lock:
            if self._session is None:
                raise ControlError(f"port {self.index} is unplugged")
            self._write(data)

    def _point_link(self, target: str) -> None:
        # Replace atomically so a client globbing the directory never sees a half-made link.
        tmp = self.link.with_name(f".{self.name}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, self.link)

    def _run_locked(self, action: Action) -> None:
        with self._io_lock:
            if self._session is None:
                return
            try:
                action()
            except Exception:
                log.exception("sim_port_action_failed", port=self.name)

    def _read_loop(self) -> None:
        session = self._session
        assert session is not None
        while True:
            ready, _, _ = select.select([session.master, session.wake_r], [], [])
            if session.wake_r in ready:
                return
            try:
                data = os.read(session.master, READ_CHUNK)
            except BlockingIOError:
                continue
            except OSError as e:  # EIO cannot happen while we hold the slave; log anything else
                log.warning("sim_port_read_failed", port=self.name, error=str(e))
                return
            if not data or self.hung:
                continue
            with self._io_lock:
                try:
                    session.modem.feed(data)
                except Exception:
                    log.exception("sim_port_feed_failed", port=self.name)

    def _write(self, data: bytes) -> None:
        """Send modem output to the client; called with _io_lock held."""
        session = self._session
        if session is None or self.hung:
            return
        view = memoryview(data)
        while view:
            try:
                written = os.write(session.master, view)
            except BlockingIOError:
                _, writable, _ = select.select([], [session.master], [], WRITE_STALL_S)
                if not writable:
                    log.warning("sim_port_output_dropped", port=self.name, octets=len(view))
                    return
                continue
            except OSError as e:
                if e.errno != errno.EIO:
                    log.warning("sim_port_write_failed", port=self.name, error=str(e))
                return
            view = view[written:]

    def stats(self) -> dict[str, object]:
        """Return this port's identity and state for the control socket; the SIM fields are
        those of the card in the selected slot."""
        card = self.card_faults(self.bank.active)
        return {
            "index": self.index,
            "port": self.name,
            "path": str(self.link),
            "make": self.make.key,
            "imei": self.imei,
            "iccid": self.sim.identity.iccid,
            "imsi": self.sim.identity.imsi,
            "operator": self.sim.identity.operator,
            "plugged": self.plugged,
            "hung": self.hung,
            "inbox_used": {
                "SM": self.sim.sm.used, "ME": self.memories.me.used, "SR": self.memories.sr.used,
            },
            "reports_sent": card.reports_sent,
            "blocked": card.blocked,
            "refused_full": self.faults.refused_full,
            "sim": card.sim_state,
            "slots": len(self.bank),
            "active_slot": self.bank.active,
            "switching": self.bank.settling,
            "csq": self.faults.csq,
            "creg": self.faults.creg,
        }  # fmt: skip
