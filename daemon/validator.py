"""Big batches are validated in a child process while the intake thread commits them.

Validation is pure Python (JSON, phonenumbers, templates) and the SQLite insert
needs the GIL back after every row, so in one process the two only take turns:
a 100,000-message batch costs their sum. A child process validates chunk k+1
on another core while the intake commits chunk k, in the one transaction that
is acknowledged at the end; the daemon never holds the whole decoded batch.

Children come from a fork server started at boot from a clean interpreter
(multiprocessing's "forkserver"): forking the threaded daemon itself could copy
a lock some other thread holds. Anything that goes wrong in the child makes the
intake validate in-process instead; nothing is lost, it is only slower.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from daemon.batch import BadBatch, BatchLimits, decode, parse_chunks, read_header
from daemon.limits import InputLimits, check_texts, count_messages
from daemon.signing import BatchRefused
from store.intake import NewMessage

BIG_PAYLOAD_BYTES = 1_000_000  # ~10,000 messages: below, a child costs more than it saves
CHUNK_MESSAGES = 5_000
JOIN_S = 5.0
SILENCE_S = 20.0  # a chunk takes well under a second; this is a stuck or starved child


class ValidatorFailed(RuntimeError):
    """The child died or broke the protocol: validate in-process instead."""


@dataclass(frozen=True)
class Verdict:
    """The child's first answer: the batch id, or why the whole batch is refused."""

    batch_id: str | None
    bad: BadBatch | None = None
    refused: BatchRefused | None = None


Chunk = tuple[list[NewMessage], list[dict[str, str]]]


def _child(conn: Connection, limits: BatchLimits, input_limits: InputLimits | None,
           now: float) -> None:
    """In the child: read the payload, then send ("batch", id) | ("bad", ...) |
    ("refused", ...), chunks, ("end",)."""
    batch_id = None
    try:
        payload = conn.recv_bytes()
        doc = decode(payload)
        del payload
        found = doc.get("batch_id")
        batch_id = found if isinstance(found, str) else None
        if input_limits is not None:
            count_messages(doc, input_limits)
        header = read_header(doc, limits)
        del doc
        conn.send(("batch", header.batch_id))
        for chunk in parse_chunks(header, limits, now, CHUNK_MESSAGES):
            if input_limits is not None:
                chunk = check_texts(chunk, input_limits)
            # Plain tuples: pickling NewMessage (a NamedTuple) costs 3x as much.
            conn.send(("chunk", [tuple(m) for m in chunk.messages], chunk.rejected))
        conn.send(("end",))
    except BadBatch as e:
        conn.send(("bad", e.reason, e.batch_id))
    except BatchRefused as e:
        conn.send(("refused", e.code, e.reason, batch_id))
    finally:
        conn.close()


class Validator:
    """Owns the fork server; `validate` is called from the intake thread only."""

    def __init__(self) -> None:
        self._ctx = multiprocessing.get_context("forkserver")
        # The server imports these once; each child starts with them loaded. With
        # "__main__" (the smsgw script) too, a child does not import the CLI again.
        self._ctx.set_forkserver_preload(["__main__", "daemon.validator"])
        self._ready = threading.Event()

    def warm_up(self) -> None:
        """Start the fork server now (~0.3 s), so the first big batch does not wait."""
        def start() -> None:
            try:
                proc = self._ctx.Process(target=_noop, daemon=True)
                proc.start()
                proc.join(JOIN_S)
                self._ready.set()
            except Exception:  # no fork server: big batches are validated in-process
                pass
        threading.Thread(target=start, name="validator-warm-up", daemon=True).start()

    def wanted(self, payload: bytes) -> bool:
        """Worth a child: a big payload, and the fork server is up."""
        return len(payload) >= BIG_PAYLOAD_BYTES and self._ready.is_set()

    @contextmanager
    def validate(self, payload: bytes, limits: BatchLimits, input_limits: InputLimits | None,
                 now: float) -> Iterator[tuple[Verdict, Iterator[Chunk]]]:
        """The verdict on the batch, then its chunks as the child produces them.

        Raises ValidatorFailed (before the verdict, or from the chunk iterator).
        """
        receive, theirs = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_child, args=(theirs, limits, input_limits, now),
                                 name="smsgw-validate", daemon=True)
        try:
            proc.start()
        except Exception as e:
            raise ValidatorFailed(f"could not start the validator: {e!r}") from e
        theirs.close()  # the child holds the only other end: its death is our EOF
        try:
            try:
                # Written from our buffer: the payload is not copied into a pickle.
                receive.send_bytes(payload)
            except OSError as e:
                raise ValidatorFailed(f"the validator did not take the batch: {e!r}") from e
            verdict = _verdict(_recv(receive))
            whole = verdict.bad is None and verdict.refused is None
            yield verdict, _chunks(receive) if whole else iter(())
        finally:
            receive.close()
            proc.join(JOIN_S)
            if proc.is_alive():
                proc.kill()
                proc.join(JOIN_S)


def _noop() -> None:
    """A child that does nothing: starting it starts the fork server."""


def _recv(conn: Connection) -> tuple[Any, ...]:
    # The intake holds the store's lock while it waits: a stuck child must not
    # stop every port with it.
    try:
        if not conn.poll(SILENCE_S):
            raise ValidatorFailed(f"the validator said nothing for {SILENCE_S:g} s")
        reply: tuple[Any, ...] = conn.recv()
    except (EOFError, OSError) as e:
        raise ValidatorFailed("the validator ended without an answer") from e
    return reply


def _verdict(reply: tuple[Any, ...]) -> Verdict:
    kind = reply[0]
    if kind == "batch":
        return Verdict(reply[1])
    if kind == "bad":
        return Verdict(reply[2], bad=BadBatch(reply[1], reply[2]))
    if kind == "refused":
        return Verdict(reply[3], refused=BatchRefused(reply[1], reply[2]))
    raise ValidatorFailed(f"unexpected first answer {kind!r}")


def _chunks(conn: Connection) -> Iterator[Chunk]:
    while True:
        reply = _recv(conn)
        if reply[0] == "end":
            return
        if reply[0] != "chunk":
            raise ValidatorFailed(f"unexpected answer {reply[0]!r} among the chunks")
        yield [NewMessage._make(m) for m in reply[1]], reply[2]
