"""Where the project's shared folder (specs and real sample files) is: next to the repository
(`../shared`), or wherever CLEARHOUSE_SHARED_DIR points; a clone placed elsewhere on this machine
still finds /work/shared."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    candidates = []
    if os.environ.get("CLEARHOUSE_SHARED_DIR"):
        candidates.append(Path(os.environ["CLEARHOUSE_SHARED_DIR"]))
    candidates += [parent / "shared" for parent in REPO.parents]
    candidates.append(Path("/work/shared"))
    for candidate in candidates:
        if (candidate / "data").is_dir():
            return candidate
    return REPO.parent / "shared"  # missing: the fixtures using it fail loudly


SHARED = shared_dir()
SHARED_DATA = SHARED / "data"
