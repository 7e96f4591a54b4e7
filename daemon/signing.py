"""Signed batches: HMAC-SHA256 over the exact payload bytes and a timestamp.

Wire format (MQTT 5 user properties on the PUBLISH, so the payload bytes are untouched):
    smsgw-ts  = the signing time, whole seconds since the Unix epoch, in decimal ASCII
    smsgw-sig = lower-case hex HMAC-SHA256(key, ts + "\\n" + payload)
The key is the key file's bytes with surrounding whitespace removed.

A signature is accepted once: seen signatures are kept on disk (`ReplayGuard`) for as
long as their timestamp is inside the accepted window, so a replay after a restart is
still caught.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TS_PROPERTY = "smsgw-ts"
SIG_PROPERTY = "smsgw-sig"
SIG_HEX_LENGTH = 64
TS_MAX_DIGITS = 12
SEEN_FILE = "seen-signatures"
# Rewrite the seen-signatures file when it holds this many more lines than live entries.
COMPACT_SLACK = 1000


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
    """A batch whose signature holds: remember `sig` once the batch is handled."""

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
        self._guard.remember(verified.sig, verified.ts, now - self._max_age_s - self._max_skew_s)


class ReplayGuard:
    """Signatures seen inside the window, kept in an append-only file in data_dir."""

    def __init__(self, directory: Path, now: float, window_s: float) -> None:
        self._path = directory / SEEN_FILE
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}
        self._lines = 0
        directory.mkdir(parents=True, exist_ok=True)
        if self._path.exists():
            for line in self._path.read_text(encoding="ascii", errors="replace").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[0].isdigit():  # a torn last line is skipped
                    self._seen[parts[1]] = int(parts[0])
                    self._lines += 1
        self._forget(now - window_s)
        self._compact()

    def seen(self, sig: str) -> bool:
        with self._lock:
            return sig in self._seen

    def remember(self, sig: str, ts: int, oldest: float) -> None:
        """Append and fsync; drops signatures whose ts is before `oldest`."""
        with self._lock:
            self._seen[sig] = ts
            with open(self._path, "a", encoding="ascii") as f:
                f.write(f"{ts} {sig}\n")
                f.flush()
                os.fsync(f.fileno())
            self._lines += 1
            self._forget(oldest)
            if self._lines > len(self._seen) + COMPACT_SLACK:
                self._compact()

    def _forget(self, oldest: float) -> None:
        for sig in [s for s, ts in self._seen.items() if ts < oldest]:
            del self._seen[sig]

    def _compact(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        with open(tmp, "w", encoding="ascii") as f:
            f.writelines(f"{ts} {sig}\n" for sig, ts in self._seen.items())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)
        self._lines = len(self._seen)
