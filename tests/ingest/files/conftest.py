"""Fixture path to the real sample files in ../shared/data (read-only; never copied)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared_paths import SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared sample files are missing at {SHARED_DATA}")
    return SHARED_DATA
