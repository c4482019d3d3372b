"""Project structure rules: layering, cheap start-up, and helpful --help everywhere."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from reports.cli import main

REPO = Path(__file__).resolve().parent.parent


def test_layers_reports_accounting_collector():
    """reports may import accounting and collector; accounting may import collector; never up."""
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run(
        [lint, "--config", str(REPO / "pyproject.toml")], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_collector_imports_only_stdlib_and_numpy():
    """Importing any collector module is cheap; numba kernels (``_jit``, ``_*kernel*``,
    ``_varlen``) load lazily on the first decode."""
    code = (
        "import sys, importlib, pkgutil, collector\n"
        "for m in pkgutil.walk_packages(collector.__path__, 'collector.'):\n"
        "    leaf = m.name.rsplit('.', 1)[-1]\n"
        "    if not (leaf == '_jit' or leaf == '_varlen' or (leaf.startswith('_') and 'kernel' in leaf)):\n"
        "        importlib.import_module(m.name)\n"
        "bad = sorted(n for n in ('numba', 'duckdb', 'polars', 'click', 'scapy', 'pyarrow') if n in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("argv", [["--help"], ["report", "--help"], ["ingest", "--help"]])
def test_help_does_not_import_numba(argv):
    code = (
        "import sys\n"
        "from reports.cli import main\n"
        f"sys.argv = ['egress', *{argv!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('numba' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "False"


def _commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path", [p for p, _ in _commands(main)], ids=" ".join)
def test_every_command_has_help_with_an_example(path):
    from click.testing import CliRunner

    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output, f"egress {' '.join(path)} --help has no example"


def test_console_script_is_installed():
    exe = shutil.which("egress") or str(Path(sys.executable).parent / "egress")
    result = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "egress demo" in result.stdout
