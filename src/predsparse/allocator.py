"""Keep freed memory in the process instead of returning it to the kernel (glibc's malloc, Linux).

A training step allocates its activations and gradients afresh (autograd needs new tensors), a few of
them 1 MB or more. glibc serves such blocks with mmap, or trims the heap top when they are freed, so
the next step faults the same pages in again, zeroed by the kernel: on a SparseLinear step of
1024x1024 at 0.78 %, batch 256, 370 page faults and 0.4 ms of a 1.1 ms step, in one process; none in
another that happened to keep its heap (`benchmarks/sparse_linear.py` times every method in one process,
after this call). Fixing the two thresholds (mallopt) stops glibc's adjustment of them: blocks up to
32 MB come from the heap, and freed ones stay there for the next step. The cost is that memory once
used stays counted in the process's resident size until it exits.

`predsparse train` calls it before training and the benchmarks before timing; importing predsparse does
not, so a program that imports the library keeps its allocator as it was.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_THRESHOLD = 1024 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds as above; False (nothing changed) where the C library is not
    glibc or refuses them."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
