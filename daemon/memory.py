"""glibc malloc settings for a long-running daemon with many threads and big, rare buffers.

Two defaults of glibc cost the Pi resident memory it never gets back:
- after the first large block (a 10 MB batch payload) is freed, glibc raises its
  mmap threshold to that size, so later payloads come from the heap, whose top
  cannot shrink past live blocks: a fixed threshold keeps big buffers in mmap,
  returned to the kernel on free;
- every thread may get its own arena (up to 8 per core); 64 ports run 130 threads,
  and each arena keeps its own free memory. The GIL serialises nearly all our
  allocation anyway, so two arenas cost no speed.
Measured on a 100,000-message batch: peak RSS 84-102 MB with the defaults, 72-74 MB
with these (BENCHMARKS.md).
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # <malloc.h>
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's starting value, now kept
ARENA_MAX = 2


def tune_malloc() -> bool:
    """Apply the settings above; False where this libc does not take them."""
    try:
        # The symbols already loaded into this process, libc's among them: no
        # find_library(), which would run ldconfig at every start.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a libc without mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success: both must hold, or the figures above do not.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                and mallopt(M_ARENA_MAX, ARENA_MAX))
