"""The project's numba options, in one place (accounting/_jit.py uses the same ones).

Only modules whose names start with an underscore and end in ``kernel(s)`` (or
``_varlen``) import this: they are loaded on the first decode, never at ``import
collector``, so importing the collector (and ``egress --help``) stays numba-free.

``cache=True`` keeps compiled machine code on disk between runs. numba checks a cached
kernel against its own source file only, not against the helpers it inlines from other
files (numba issue #1833): after an update that changed only accounting/kernels.py,
accounting/kernels_inplace.py would run its old machine code, with the old lookups.
The cache therefore lives in a folder named after a digest of every kernel source file
(:func:`kernel_cache_dir`), so that any change there compiles everything afresh.
"""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import time
from pathlib import Path

import numba

JIT_OPTIONS = {"nogil": True, "cache": True, "fastmath": False}
KEPT_CACHES = 3  # digest folders kept beside the current one's (older ones are removed)
PRUNE_AGE_SECONDS = 86_400
_PACKAGES = ("collector", "accounting", "reports")


def kernel_sources(root: Path) -> list[Path]:
    """The project's files (under ``root``) that define cached kernels, and the project
    modules they import from: compiled code holds the values of the globals it reads
    (constants such as accounting/usage.py's metric planes), so those count too."""
    kernels = set()
    for package in _PACKAGES:
        for path in (root / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if "_jit import" in text or "cache=True" in text:
                kernels.add(path)
    found = set(kernels)
    for path in kernels:
        found.update(_project_imports(path, root))
    return sorted(found)


def _project_imports(path: Path, root: Path) -> list[Path]:
    """The files of the project modules ``path`` imports names from."""
    files = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or not node.module or node.level:
            continue
        parts = node.module.split(".")
        if parts[0] in _PACKAGES:
            module = root / Path(*parts)
            files += [p for p in (module.with_suffix(".py"), module / "__init__.py") if p.is_file()]
    return files


def kernel_cache_dir(base: Path, root: Path) -> Path:
    """``base``/egress-<digest of the kernel sources under ``root``>."""
    digest = hashlib.sha256()
    for path in kernel_sources(root):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return base / f"egress-{digest.hexdigest()[:16]}"


def _default_base() -> Path:
    """NUMBA_CACHE_DIR when set (the systemd unit sets it), else the user's cache."""
    if numba.config.CACHE_DIR:
        return Path(numba.config.CACHE_DIR)
    home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(home) / "egress" / "numba"


def _prune(current: Path) -> None:
    """Remove the digest folders beside ``current`` beyond the newest KEPT_CACHES, when
    untouched for PRUNE_AGE_SECONDS (another version may still be running from one)."""
    others = [p for p in current.parent.glob("egress-*") if p != current and p.is_dir()]
    others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in others[KEPT_CACHES:]:
        if time.time() - old.stat().st_mtime > PRUNE_AGE_SECONDS:
            shutil.rmtree(old, ignore_errors=True)


def _use_versioned_cache() -> None:
    """Point numba's cache at this source version's folder, before any kernel is defined
    (numba picks a kernel's cache folder when the decorator runs). Where that folder
    cannot be made, numba's own choice stays (it falls back to its usual places)."""
    try:
        folder = kernel_cache_dir(_default_base(), Path(__file__).resolve().parents[1])
        folder.mkdir(parents=True, exist_ok=True)
        _prune(folder)
    except (OSError, RuntimeError):  # RuntimeError: no home directory to be found
        return
    numba.config.CACHE_DIR = str(folder)


_use_versioned_cache()


def kernel(func):
    """Compile ``func`` with the project's numba options."""
    return numba.njit(**JIT_OPTIONS)(func)


def inline_kernel(func):
    """A small helper compiled into each caller (numba IR inlining): no call overhead,
    which matters for per-flow helpers taking several arrays."""
    return numba.njit(inline="always", **JIT_OPTIONS)(func)
