"""Effective-dated rows (prices, commission models, agent parents): valid_from inclusive,
valid_to exclusive, never overlapping.

A new row for a key closes the open one at its valid_from (valid_to = valid_from). It must start
strictly after the row it supersedes starts (and not before a closed row ends): history is never
rewritten, a correction is a later change.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.errors import ApiError
from serving.schemas import iso_z as _iso


def supersede(session: Session, model, filters: list, valid_from: datetime):
    """Close the latest row matching `filters` at valid_from; returns it (or None)."""
    latest = session.scalars(select(model).where(*filters)
                             .order_by(model.valid_from.desc()).limit(1)).first()
    if latest is None:
        return None
    if latest.valid_to is None:
        if valid_from <= latest.valid_from:
            raise ApiError(422, "valid_from_too_early",
                           "valid_from must be after the valid_from of the row in force "
                           f"({_iso(latest.valid_from)}); history is not rewritten",
                           {"field": "valid_from",
                            "current_valid_from": _iso(latest.valid_from)})
        latest.valid_to = valid_from
    elif valid_from < latest.valid_to:
        raise ApiError(422, "valid_from_too_early",
                       f"valid_from must not be before {_iso(latest.valid_to)}, where the "
                       "last row ends", {"field": "valid_from",
                                         "current_valid_to": _iso(latest.valid_to)})
    return latest
