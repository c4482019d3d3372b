"""All numba options in one place, so every kernel compiles the same way.

``cache=True`` writes compiled machine code next to the module (or under
``NUMBA_CACHE_DIR``) so a CLI run does not pay the JIT cost each time.
"""

from __future__ import annotations

import numba

JIT_OPTIONS = {"nogil": True, "cache": True, "fastmath": False}


def kernel(func):
    """Compile ``func`` with the project's numba options."""
    return numba.njit(**JIT_OPTIONS)(func)


PARALLEL_OPTIONS = {**JIT_OPTIONS, "parallel": True}


def parallel_kernel(func):
    """Compile ``func`` with the project's options plus ``parallel=True`` (for ``numba.prange``).

    Parallel kernels must give the same result whatever the thread count: each iteration of a
    ``prange`` loop writes its own output slot, and reductions happen afterwards in a fixed order.
    """
    return numba.njit(**PARALLEL_OPTIONS)(func)
