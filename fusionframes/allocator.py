"""Keep freed memory inside the process, so large activations are not page-faulted in again op after op.

PyTorch's CPU tensors come from ``malloc``. glibc serves every block above its mmap threshold (128 kB, rising
with use to at most 32 MB) with a fresh mapping that goes back to the kernel on ``free``, and trims the heap top
as soon as a little is free; every large activation is then faulted in page by page and zeroed by the kernel
anew. Measured on this project's 2-core machine for one fps-high generation: 3–5 million page faults → under
100 thousand, 1.1–1.4× faster over three paired runs (decoding 1.2–1.5×) for up to 1.18× the peak resident memory
(``python benchmarks/allocator.py``).
The price: a process keeps what it freed (up to the trim threshold) instead of returning it. The setting is
process-wide, so the ``fusionframes`` command applies it and library users opt in by calling
:func:`keep_freed_memory`.
"""

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)

enabled = False


def keep_freed_memory(trim_threshold: int = 1 << 30) -> bool:
    """Serve every block from the heap (no per-block mappings) and keep up to ``trim_threshold`` bytes of freed
    heap for reuse. glibc only; returns whether it took effect (False elsewhere, where nothing changes)."""
    global enabled
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the running process's C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # musl's mallopt is a stub that returns 0: that, too, reads as "not applied".
    enabled = bool(mallopt(M_TRIM_THRESHOLD, min(trim_threshold, 2**31 - 1))) and bool(mallopt(M_MMAP_MAX, 0))
    return enabled
