"""Signed batches: HMAC-SHA256 over the exact payload bytes and a timestamp.

Wire format (MQTT 5 user properties on the PUBLISH, so the payload bytes are untouched):
    smsgw-ts  = the signing time, whole seconds since the Unix epoch, in decimal ASCII
    smsgw-sig = lower-case hex HMAC-SHA256(key, ts + "\\n" + payload)
The key is the key file's bytes with surrounding whitespace removed.

A signature is accepted once: the signatures of answered batches are kept in the store
(`ReplayGuard`), in the transaction that answers the batch, for as long as their
timestamp is inside the accepted window, so a replay after a restart is still caught.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from store.store import Store

TS_PROPERTY = "smsgw-ts"
SIG_PROPERTY = "smsgw-sig"
SIG_HEX_LENGTH = 64
TS_MAX_DIGITS = 12
# Where versions before the store kept them: imported once at start-up, then removed.
LEGACY_SEEN_FILE = "seen-signatures"


class BatchRefused(ValueError):
    """A batch refused before it is read: `code` is the BatchAck error code."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def read_key(path: str | Path) -> bytes:
    """The HMAC key: the file's bytes without surrounding whitespace (never logged)."""
    key = Path(path).read_bytes().strip()
    if not key:
        raise ValueError(f"{path} is empty")
    return key


def signature(payload: bytes, key: bytes, ts: int) -> str:
    """Hex HMAC-SHA256 over `ts` + "\\n" + `payload`."""
    return hmac.new(key, str(ts).encode("ascii") + b"\n" + payload, hashlib.sha256).hexdigest()


def sign(payload: bytes, key: bytes, ts: int) -> list[tuple[str, str]]:
    """The user properties HQ puts on the PUBLISH of `payload`."""
    return [(TS_PROPERTY, str(ts)), (SIG_PROPERTY, signature(payload, key, ts))]


@dataclass(frozen=True)
class Verified:
    """A batch whose signature holds: remember it in the commit that answers the batch."""

    ts: int
    sig: str


class Verifier:
    """Checks signature, age and replay of incoming batches (the intake thread only)."""

    def __init__(self, key: bytes, max_age_s: int, max_skew_s: int, guard: ReplayGuard) -> None:
        self._key = key
        self._max_age_s = max_age_s
        self._max_skew_s = max_skew_s
        self._guard = guard

    def verify(self, payload: bytes, properties: Sequence[tuple[str, str]],
               now: float) -> Verified:
        """Raise BatchRefused (unsigned_batch, bad_signature, replayed_batch) or return."""
        props = dict(properties)
        ts_text, sig = props.get(TS_PROPERTY), props.get(SIG_PROPERTY)
        if ts_text is None or sig is None:
            raise BatchRefused("unsigned_batch", f"this gateway takes only signed batches "
                               f"(user properties {TS_PROPERTY} and {SIG_PROPERTY})")
        if not (ts_text.isascii() and ts_text.isdigit() and len(ts_text) <= TS_MAX_DIGITS):
            raise BatchRefused("bad_signature", f"{TS_PROPERTY} must be epoch seconds")
        ts = int(ts_text)
        expected = signature(payload, self._key, ts)
        if len(sig) != SIG_HEX_LENGTH or not hmac.compare_digest(expected, sig.lower()):
            raise BatchRefused("bad_signature", "the signature does not match the payload")
        if ts < now - self._max_age_s:
            raise BatchRefused("replayed_batch", f"signed {int(now - ts)} s ago; at most "
                               f"{self._max_age_s} s are accepted")
        if ts > now + self._max_skew_s:
            raise BatchRefused("replayed_batch", f"signed {int(ts - now)} s in the future; "
                               f"clocks may differ by at most {self._max_skew_s} s")
        if self._guard.seen(expected):
            raise BatchRefused("replayed_batch", "this signed batch was received before")
        return Verified(ts, expected)

    def remember(self, verified: Verified, now: float) -> None:
        """Refuse this signature from now on; call inside the commit that answers the batch."""
        self._guard.remember(verified.sig, verified.ts, now - self._max_age_s - self._max_skew_s)


class ReplayGuard:
    """Signatures of answered batches inside the window, kept in the store."""

    def __init__(self, store: Store, data_dir: Path, now: float, window_s: float) -> None:
        """Import the file an older version kept in `data_dir`, then forget expired ones."""
        self._store = store
        legacy = data_dir / LEGACY_SEEN_FILE
        store.remember_signatures(_read_legacy(legacy), now - window_s)
        # Only once its signatures are committed: a crash before this imports it again.
        legacy.unlink(missing_ok=True)
        legacy.with_suffix(".tmp").unlink(missing_ok=True)  # its compaction's leftover

    def seen(self, sig: str) -> bool:
        return self._store.signature_seen(sig)

    def remember(self, sig: str, ts: int, oldest: float) -> None:
        """Record `sig` in the caller's transaction; drops those whose ts is before `oldest`."""
        self._store.remember_signatures([(sig, ts)], oldest)


def _read_legacy(path: Path) -> Iterator[tuple[str, int]]:
    """(signature, ts) of each whole "ts sig" line of an older version's file."""
    if not path.exists():
        return
    for line in path.read_text(encoding="ascii", errors="replace").splitlines():
        parts = line.split()  # a line torn by a power cut mid-append is skipped
        if len(parts) == 2 and parts[0].isdigit() and len(parts[1]) == SIG_HEX_LENGTH:
            yield parts[1], int(parts[0])
