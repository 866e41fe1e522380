"""Four runs of the audit scenario on one warehouse (see scenario.py)."""

from __future__ import annotations

from decimal import Decimal

from tests.dbt.reconciliation_spec import scenario as s

AS_OF = ["2024-03-03", "2024-03-04", "2024-03-05", "2024-03-05"]


def run_phases(aw, work) -> list[dict]:
    for table, rows in s.LEDGER.items():
        aw.insert(table, rows)
    snaps = []
    for source, files in (("psp", s.PSP_FIRST), ("bank", s.BANK_FIRST), ("chain", s.CHAIN_FIRST)):
        for name, data in files.items():
            aw.drop(source, name, data)
    aw.first_load = aw.load()
    aw.build(AS_OF[0], work / "r1")
    snaps.append(aw.snapshot())
    aw.build(AS_OF[1], work / "r2")
    snaps.append(aw.snapshot())
    for source, files in (("psp", s.PSP_LATE), ("chain", s.CHAIN_LATE)):
        for name, data in files.items():
            aw.drop(source, name, data)
    # the same bytes of a file already loaded, dropped again
    aw.drop("psp", "ch_ax_2024-03-02.csv", s.PSP_FIRST["ch_ax_2024-03-02.csv"])
    aw.late_load = aw.load()
    aw.build(AS_OF[2], work / "r3")
    snaps.append(aw.snapshot())
    aw.build(AS_OF[3], work / "r4")
    snaps.append(aw.snapshot())
    # a past day again, after the later runs
    aw.build(AS_OF[0], work / "r5")
    snaps.append(aw.snapshot())
    return snaps


def recon_snapshot(query, channels=None) -> dict:
    """The three reconciliation marts as a run left them (of `channels`, else all), each in a
    stable order: matches and breaks by id, the daily report by day, channel and currency."""
    where = "" if channels is None else (
        " where channel in (" + ", ".join(f"'{c}'" for c in channels) + ")")

    def rows(model, *key):
        return sorted(query(f"select * from analytics.{model}{where}"),
                      key=lambda r: tuple(str(r[k]) for k in key))

    return {"matches": rows("fct_reconciliation_matches", "match_id"),
            "breaks": rows("fct_reconciliation_breaks", "break_id"),
            "daily": rows("rpt_reconciliation_daily", "day", "channel", "currency")}


def money(v):
    """A money column as int (None stays None); a float or text would be a breach of money.md."""
    assert v is None or isinstance(v, (int, Decimal)), f"money came back as {type(v).__name__}"
    return None if v is None else int(v)


def of(rows, channel):
    """The rows of one channel."""
    return [r for r in rows if r["channel"] == channel]
