"""Keep freed memory inside the process, so large activations are not page-faulted in again op after op.

PyTorch's CPU tensors come from ``malloc``. glibc serves every block above its mmap threshold (128 kB, rising
with use to at most 32 MB) with a fresh mapping that goes back to the kernel on ``free``, and trims the heap top
as soon as a little is free; every large activation is then faulted in page by page and zeroed by the kernel
anew. Measured on this project's 2-core machine: 220,000 page faults per 8-frame MoVQ decode, and decoding 1.5×
faster once freed blocks are kept (``benchmarks/results/allocator.md``). The fix is process-wide, so the CLI
applies it and library users opt in by calling :func:`keep_freed_memory`.
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
    except (OSError, AttributeError):  # a libc without mallopt (musl)
        return False
    enabled = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
    return enabled
