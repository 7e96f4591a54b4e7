"""SimPool: N simulated modems on pseudo-terminals plus the control socket; serve() runs one."""

from __future__ import annotations

import random
import signal
import threading
from pathlib import Path
from types import FrameType

import structlog

from modem.sim.control import ControlServer
from modem.sim.device import Latency, SimCard
from modem.sim.errors import PortError
from modem.sim.faults import CardFaults
from modem.sim.identity import modem_imei, sim_identity
from modem.sim.makes import MIXED, make_for_port
from modem.sim.network import Network, Sender, SubmitPart
from modem.sim.pty_port import PtyPort
from modem.sim.slots import DEFAULT_HOLD_S, DEFAULT_SWITCH_DELAY_S, MAX_SLOTS, SlotBank

log = structlog.get_logger(__name__)

MAX_PORTS = 256
MR_MODULO = 256


def _cards(seed: int, index: int, slots: int) -> list[SimCard]:
    """The cards of port `index`: identities from (seed, port, slot), each its own TP-MR start.

    A single card shares the port's Faults (faults=None); several carry their own."""
    cards = []
    for slot in range(slots):
        card = SimCard(sim_identity(seed, index, slot), faults=None if slots == 1 else CardFaults())
        # Start each SIM's TP-MR counter somewhere different, as real cards are.
        mr_seed = f"{seed}:mr:{index}" if slot == 0 else f"{seed}:mr:{index}:{slot}"
        card.next_mr = random.Random(mr_seed).randrange(MR_MODULO)
        cards.append(card)
    return cards


class SimPool:
    """Owns the ports, the network journal and the control socket of one simulated pool."""

    def __init__(
        self,
        ports: int,
        directory: str | Path,
        latency_mean: float = 0.0,
        latency_jitter: float = 0.0,
        make: str = MIXED,
        seed: int = 1,
        slots: int = 1,
        switch_delay_s: float = DEFAULT_SWITCH_DELAY_S,
        hold_s: float = DEFAULT_HOLD_S,
    ) -> None:
        if not 0 < ports <= MAX_PORTS:
            raise ValueError(f"ports must be in 1..{MAX_PORTS}, not {ports}")
        if latency_mean < 0 or latency_jitter < 0:
            raise ValueError("latency mean and jitter must not be negative")
        if not 0 < slots <= MAX_SLOTS:
            raise ValueError(f"slots must be in 1..{MAX_SLOTS}, not {slots}")
        if switch_delay_s < 0 or hold_s < 0:
            raise ValueError("switch delay and hold time must not be negative")
        self._slots = slots
        self._switch_delay_s = switch_delay_s
        self._hold_s = hold_s
        self.directory = Path(directory)
        self.seed = seed
        self._count = ports
        self._make = make
        self._latency = (latency_mean, latency_jitter)
        make_for_port(make, 0)  # reject an unknown make before anything is created
        self.network: Network | None = None
        self.control: ControlServer | None = None
        self._ports: list[PtyPort] = []

    def start(self) -> None:
        """Create DIR, the journal, every port and the control socket."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.network = Network(self.directory)
        mean, jitter = self._latency
        for index in range(self._count):
            make = make_for_port(self._make, index)
            rng = random.Random(f"{self.seed}:latency:{index}")
            cards = _cards(self.seed, index, self._slots)
            bank = SlotBank(cards, self._switch_delay_s, self._hold_s)
            port = PtyPort(
                index, self.directory, make, modem_imei(self.seed, index, make.key), bank,
                self, Latency(mean, jitter, rng),
            )  # fmt: skip
            self._ports.append(port)
            port.plug()
        self.control = ControlServer(self.directory, self)
        self.control.start()
        log.info("sim_pool_started", ports=self._count, slots=self._slots, dir=str(self.directory))

    def stop(self) -> None:
        """Stop the control socket, unplug every port (removing links) and close the journal."""
        if self.control is not None:
            self.control.stop()
            self.control = None
        for port in self._ports:
            port.unplug()
        self._ports = []
        if self.network is not None:
            self.network.close()
            self.network = None
        log.info("sim_pool_stopped", dir=str(self.directory))

    def __enter__(self) -> SimPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # NetworkLink: ports hand parts to the pool, which forwards to the current network.
    def submit(self, sender: Sender, part: SubmitPart, mr: int) -> None:
        """Forward a part to the network (kept on the pool so ports outlive a journal swap)."""
        assert self.network is not None
        self.network.submit(sender, part, mr)

    @property
    def ports(self) -> list[PtyPort]:
        """The ports, by index."""
        return list(self._ports)

    def port(self, index: int) -> PtyPort:
        """Return port `index`; raise PortError if there is none."""
        if not 0 <= index < len(self._ports):
            raise PortError(f"no port {index}; the pool has {len(self._ports)}")
        return self._ports[index]

    def stats(self) -> list[dict[str, object]]:
        """Return each port's identity, state and network counters."""
        result = []
        for port in self._ports:
            row = port.stats()
            if self.network is not None:
                counters = self.network.counters(port.name)
                row.update(pdus=counters.pdus, messages=counters.messages)
            result.append(row)
        return result


def serve(
    ports: int,
    directory: str | Path,
    latency_mean: float = 0.0,
    latency_jitter: float = 0.0,
    make: str = MIXED,
    seed: int = 1,
    stop: threading.Event | None = None,
    slots: int = 1,
    switch_delay_s: float = DEFAULT_SWITCH_DELAY_S,
    hold_s: float = DEFAULT_HOLD_S,
) -> None:
    """Create DIR/ttyGSM0..N-1 and answer AT on them until `stop` is set (or SIGTERM/SIGINT).

    Each port gets `slots` SIM cards (see modem.sim.slots)."""
    stop = stop or threading.Event()
    on_main = threading.current_thread() is threading.main_thread()
    previous: dict[int, object] = {}
    if on_main:

        def _on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("sim_pool_signal", signal=signal.Signals(signum).name)
            stop.set()

        for handled in (signal.SIGTERM, signal.SIGINT):
            previous[handled] = signal.signal(handled, _on_signal)
    pool = SimPool(
        ports, directory, latency_mean, latency_jitter, make, seed, slots, switch_delay_s, hold_s
    )
    try:
        pool.start()
        stop.wait()
    finally:
        pool.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
