"""glibc malloc tuning (daemon/memory.py)."""

from __future__ import annotations

import subprocess
import sys

MEASURE = """
import ctypes, sys
from daemon.memory import tune_malloc
tuned = tune_malloc() if sys.argv[1] == "tuned" else None

def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4

# A big payload freed, then a smaller one kept alive beside small objects, then freed:
# with glibc's dynamic threshold the second lands in the heap and stays resident.
first = bytearray(12_000_000); first[::4096] = b"x" * len(first[::4096]); del first
base = rss_kb()
second = bytearray(10_000_000); second[::4096] = b"x" * len(second[::4096])
pins = [bytes(64) for _ in range(20_000)]  # small blocks allocated after it, above it
del second
print(tuned, rss_kb() - base)
"""


def _grown_kb(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", MEASURE, mode], capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0], int(out[1])


def test_a_freed_big_buffer_goes_back_to_the_kernel_once_tuned() -> None:
    tuned, grown = _grown_kb("tuned")
    assert tuned == "True", "glibc's mallopt is expected on Raspberry Pi OS and Debian"
    assert grown < 4_000, f"a freed 10 MB buffer stayed resident ({grown} KB)"


def test_without_the_tuning_glibc_keeps_it() -> None:
    """The reason for the module: the default does keep it (if not, the module is moot)."""
    _, grown = _grown_kb("default")
    assert grown > 8_000, f"glibc's default returned the buffer ({grown} KB grown)"
