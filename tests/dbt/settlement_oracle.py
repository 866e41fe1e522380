"""The quiet statements settlement.md asks for ("for each merchant and cycle period"), worked out
in Python from a test's expected statements with activity, so the dbt tests' oracles need not
list them by hand. Written from the rule in docs/architecture.md section 7, not from the SQL:
from a merchant's first statement on, every whole period of its cycle gets one; after the last
statement with activity, in the settlement currency only, up to the period open at the run."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import date, timedelta

ONE_DAY = timedelta(days=1)


def period_start(cycle: str, day: date) -> date:
    """First day of the `cycle` period holding `day` (weekly: ISO week from Monday)."""
    if cycle == "weekly":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1) if cycle == "monthly" else day


def period_end(cycle: str, start: date) -> date:
    """Last day of the `cycle` period starting on `start`."""
    if cycle == "weekly":
        return start + timedelta(days=6)
    if cycle == "monthly":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1) - ONE_DAY
    return start


def with_quiet_periods(statements: Mapping[str, dict], *, cycle_of: Mapping[str, str],
                       settles_in: Mapping[str, str], as_of: date, closing: str,
                       quiet: Callable[[int], dict]) -> dict[str, dict]:
    """`statements` (keyed merchant:currency:period_start, each with its closing balance under
    the key `closing`) plus one quiet statement, `quiet(balance carried)`, for every period
    without one."""
    out = dict(statements)
    owners: dict[tuple[str, str], list[date]] = defaultdict(list)
    for sid in statements:
        merchant, currency, start = sid.rsplit(":", 2)
        owners[(merchant, currency)].append(date.fromisoformat(start))
    for (merchant, currency), starts in owners.items():
        cycle = cycle_of[merchant]
        starts.sort()
        open_end = period_end(cycle, period_start(cycle, as_of))
        for start, following in zip(starts, [*starts[1:], None], strict=True):
            balance = statements[f"{merchant}:{currency}:{start.isoformat()}"][closing]
            last = (following - ONE_DAY if following is not None
                    else open_end if currency == settles_in[merchant] else start)
            day = period_end(cycle, start) + ONE_DAY
            while period_end(cycle, day) <= last:
                out[f"{merchant}:{currency}:{day.isoformat()}"] = quiet(balance)
                day = period_end(cycle, day) + ONE_DAY
    return out
