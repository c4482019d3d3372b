"""Shared fixtures. tests/ is not a package: helper modules beside the tests (reference.py,
oracle_tshark.py, ...) are importable because this folder is put on sys.path here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

REPO = TESTS.parent
SHARED = REPO.parent / "shared"
CAPTURES = SHARED / "testdata" / "captures"


@pytest.fixture(scope="session")
def captures_dir() -> Path:
    """../shared/testdata/captures, or a skip saying why it is missing."""
    if not CAPTURES.is_dir():
        pytest.skip(f"shared test captures not found at {CAPTURES} (CI provides ../shared)")
    return CAPTURES
