"""The project's numba options, in one place (accounting/_jit.py uses the same ones).

Only modules whose names start with an underscore and end in ``kernel(s)`` (or
``_varlen``) import this: they are loaded on the first decode, never at ``import
collector``, so importing the collector (and ``egress --help``) stays numba-free.
``cache=True`` keeps compiled machine code on disk between runs.
"""

from __future__ import annotations

import numba

JIT_OPTIONS = {"nogil": True, "cache": True, "fastmath": False}


def kernel(func):
    """Compile ``func`` with the project's numba options."""
    return numba.njit(**JIT_OPTIONS)(func)


def inline_kernel(func):
    """A small helper compiled into each caller (numba IR inlining): no call overhead,
    which matters for per-flow helpers taking several arrays."""
    return numba.njit(inline="always", **JIT_OPTIONS)(func)
