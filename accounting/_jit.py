"""numba options for the accounting kernels: the project's options (collector/_jit.py, the
one place they are defined) plus the parallel variant the billing kernels use."""

from __future__ import annotations

import numba

from collector._jit import JIT_OPTIONS, inline_kernel, kernel

__all__ = ["JIT_OPTIONS", "PARALLEL_OPTIONS", "inline_kernel", "kernel", "parallel_kernel"]

PARALLEL_OPTIONS = {**JIT_OPTIONS, "parallel": True}


def parallel_kernel(func):
    """Compile ``func`` with the project's options plus ``parallel=True`` (for ``numba.prange``).

    Parallel kernels must give the same result whatever the thread count: each iteration of a
    ``prange`` loop writes its own output slot, and reductions happen afterwards in a fixed order.
    """
    return numba.njit(**PARALLEL_OPTIONS)(func)
