"""numba's on-disk cache follows every kernel source, not only the kernel's own file.

numba revalidates a cached kernel against its own file only; a helper inlined from
another file, or a constant imported from one, could change under it and the old
machine code would still run. collector/_jit.py keys the cache folder on a digest of
all kernel files and the project modules they import from.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numba

from collector import _jit


def _project(root: Path) -> None:
    """A miniature project: two kernel files, a constants module, an unrelated module."""
    (root / "collector").mkdir()
    (root / "accounting").mkdir()
    (root / "reports").mkdir()
    (root / "collector" / "_jit.py").write_text("import numba\n")
    (root / "accounting" / "usage.py").write_text("METRIC = 1\n")
    (root / "accounting" / "helpers.py").write_text(
        "from accounting._jit import kernel\n\n@kernel\ndef add(a, b):\n    return a + b\n"
    )
    (root / "accounting" / "kernels.py").write_text(
        "from accounting._jit import kernel\nfrom accounting.helpers import add\n"
        "from accounting.usage import METRIC\n"
    )
    (root / "accounting" / "_jit.py").write_text("from collector._jit import kernel\n")
    (root / "reports" / "text.py").write_text("TITLE = 'x'\n")


def test_the_folder_changes_with_any_kernel_source_or_imported_constant(tmp_path):
    _project(tmp_path)
    base = tmp_path / "cache"
    first = _jit.kernel_cache_dir(base, tmp_path)
    assert first.parent == base and first.name.startswith("egress-")
    assert _jit.kernel_cache_dir(base, tmp_path) == first  # stable

    (tmp_path / "reports" / "text.py").write_text("TITLE = 'y'\n")  # not a kernel's
    assert _jit.kernel_cache_dir(base, tmp_path) == first

    helper = tmp_path / "accounting" / "helpers.py"
    helper.write_text(helper.read_text().replace("a + b", "a - b"))
    second = _jit.kernel_cache_dir(base, tmp_path)
    assert second != first  # the inlined helper changed: everything compiles afresh

    (tmp_path / "accounting" / "usage.py").write_text("METRIC = 2\n")
    assert _jit.kernel_cache_dir(base, tmp_path) not in (first, second)


def test_the_sources_are_the_kernels_and_their_project_imports():
    root = Path(_jit.__file__).resolve().parents[1]
    names = {p.relative_to(root).as_posix() for p in _jit.kernel_sources(root)}
    assert {
        "accounting/kernels.py",
        "accounting/kernels_inplace.py",
        "accounting/usage.py",  # the metric planes the kernels index with
        "collector/decode/_v5kernel.py",
        "collector/decode/_varlen.py",
    } <= names
    assert "accounting/pipeline.py" not in names


def test_numba_caches_in_the_digest_folder():
    from collector import _gatherkernel

    folder = Path(numba.config.CACHE_DIR)
    assert (
        folder.name
        == _jit.kernel_cache_dir(folder.parent, Path(_jit.__file__).resolve().parents[1]).name
    )
    cache_path = Path(_gatherkernel.gather_rows._cache._cache_path)
    assert folder in cache_path.parents


def test_old_folders_are_pruned(tmp_path):
    """Beyond the newest KEPT_CACHES, folders untouched for a day go; recent ones stay
    (another version may still be running from them)."""
    for age in range(4):
        old = tmp_path / f"egress-old{age}"
        old.mkdir()
        os.utime(old, (1_000_000 + age, 1_000_000 + age))
    for k in range(_jit.KEPT_CACHES + 1):
        (tmp_path / f"egress-recent{k}").mkdir()
    current = tmp_path / "egress-current"
    current.mkdir()
    (tmp_path / "unrelated").mkdir()
    _jit._prune(current)
    left = sorted(p.name for p in tmp_path.iterdir())
    recent = [f"egress-recent{k}" for k in range(_jit.KEPT_CACHES + 1)]
    assert left == sorted(["egress-current", "unrelated", *recent])


def test_without_a_writable_home_numba_keeps_its_own_places(tmp_path):
    """No NUMBA_CACHE_DIR and a home that cannot hold a cache: the kernels still load
    (numba falls back to its own cache places, or none)."""
    home = tmp_path / "home"
    home.write_text("a file, not a folder")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    code = (
        "import numba, numpy as np\n"
        "from collector import _gatherkernel\n"
        "print(repr(numba.config.CACHE_DIR))\n"
    )
    root = Path(_jit.__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "''"
