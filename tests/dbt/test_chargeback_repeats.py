"""A chargeback the channel re-sends on a later day's PSP file is the same chargeback, not a
second one (settlement.md: every statement line links to what it came from, once). psp_line_id
is the file's id plus the line number, so the re-sent row is a new PSP line: the statement items
collapse exact repeats - same channel, channel reference, gross, currency and transaction_at -
keeping the first line (earliest settlement day, then line: as reconciliation ranks a repeated
channel line), and only then cap a payment's chargebacks at its amount. Before, the repeat was
counted and pushed the genuine second chargeback past the cap, where it was dropped.

On DuckDB and Postgres, two merchants, each with a 10,000 USD payment (daily cycle, T+1):

A  one delivery: a 4,000 chargeback on the 2024-02-05 file, the same row again on the
   2024-02-06 file (whose id sorts before the first file's), and a genuine second chargeback of
   6,000 on the 2024-02-06 file; built as of 2024-03-05.
B  day by day: the 4,000 chargeback on the 2024-03-04 file, built as of 2024-03-05 (the
   2024-03-04 statement closes); then the 2024-03-05 file repeating it and carrying the genuine
   6,000, built as of 2024-03-06. The closed 2024-03-04 statement must not move.

Either way the chargebacks total exactly -10,000: each genuine chargeback once.
"""

from __future__ import annotations

from datetime import date, datetime

from tests.dbt.commission_spec.marts import as_of_vars
from tests.dbt.conftest import built_on_both_engines, insert_raw

T0 = datetime(2024, 1, 1)
FIRST_AS_OF, SECOND_AS_OF = date(2024, 3, 5), date(2024, 3, 6)
PAYMENTS = [("p_a", "m_a", "2024-02-01 10:00:00"), ("p_b", "m_b", "2024-03-01 10:00:00")]
FIRST_FILES = [  # psp_line_id, file, line, settlement day, payment, gross, transaction_at
    ("f9e1:2", "f9e1", 2, "2024-02-05", "p_a", -4_000, "2024-02-05 09:00:00"),
    ("f0a2:2", "f0a2", 2, "2024-02-06", "p_a", -4_000, "2024-02-05 09:00:00"),  # re-sent
    ("f0a2:3", "f0a2", 3, "2024-02-06", "p_a", -6_000, "2024-02-06 11:00:00"),  # genuine
    ("fb1:2", "fb1", 2, "2024-03-04", "p_b", -4_000, "2024-03-04 09:00:00"),
]
SECOND_FILES = [
    ("fb2:2", "fb2", 2, "2024-03-05", "p_b", -4_000, "2024-03-04 09:00:00"),  # re-sent
    ("fb2:3", "fb2", 3, "2024-03-05", "p_b", -6_000, "2024-03-05 11:00:00"),  # genuine
]
SELECT = ("--select", "+fct_settlement_statements", "--indirect-selection", "empty")


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _psp_rows(rows):
    return [{"psp_line_id": lid, "file_id": file_id, "format": "psp_csv", "line_number": line,
             "supersession_key": f"psp|psp_csv|ch_card|{day}",
             "settlement_date": date.fromisoformat(day), "record_type": "chargeback",
             "channel": "ch_card", "channel_reference": f"chref-{pid}",
             "merchant_reference": pid, "transaction_at": ts(at), "currency": "USD",
             "gross_minor": gross, "fee_minor": 0, "net_minor": gross}
            for lid, file_id, line, day, pid, gross, at in rows]


def load_first(warehouse) -> None:
    insert_raw(warehouse, "merchants", [
        {"id": m, "name": m, "status": "active", "agent_id": None, "settlement_currency": "USD",
         "settlement_cycle": "daily", "settlement_delay_days": 1, "created_at": T0,
         "updated_at": T0} for m in ("m_a", "m_b")], T0)
    insert_raw(warehouse, "channels", [
        {"id": "ch_card", "name": "ch_card", "channel_type": "card", "status": "active",
         "settlement_window_days": 1, "created_at": T0, "updated_at": T0}], T0)
    insert_raw(warehouse, "payments", [
        {"id": pid, "merchant_id": m, "merchant_reference": f"order-{pid}",
         "amount_minor": 10_000, "currency": "USD", "payment_method_type": "card",
         "status": "success", "channel_id": "ch_card", "channel_reference": f"chref-{pid}",
         "risk_decision": "approve", "customer_id": "cus_1", "refunded_minor": 0,
         "captured_at": ts(at), "created_at": ts(at), "updated_at": ts(at)}
        for pid, m, at in PAYMENTS], T0)
    insert_raw(warehouse, "psp_lines", _psp_rows(FIRST_FILES), T0)


def load_second(warehouse) -> None:
    insert_raw(warehouse, "psp_lines", _psp_rows(SECOND_FILES), T0)


def _read(warehouse, proc) -> dict:
    q = warehouse.query
    return {
        "returncode": proc.returncode,
        "output": warehouse.dbt_output,
        "lines": {r["line_id"]: r for r in q(
            "select * from analytics.fct_settlement_statement_lines")},
        "statements": {r["statement_id"]: r for r in q(
            "select * from analytics.fct_settlement_statements")},
    }


def _built(warehouse, tmp_path_factory, dbt_build) -> dict:
    work = tmp_path_factory.mktemp(f"cb_repeats_{warehouse.engine}")
    load_first(warehouse)
    first = _read(warehouse, dbt_build(warehouse, work / "first",
                                       (*SELECT, *as_of_vars(FIRST_AS_OF))))
    load_second(warehouse)
    second = _read(warehouse, dbt_build(warehouse, work / "second",
                                        (*SELECT, *as_of_vars(SECOND_AS_OF))))
    return {"first": first, "second": second}


built_duckdb, built_postgres, built = built_on_both_engines("built", _built)


def _merchant_lines(run: dict, merchant: str) -> dict[str, tuple]:
    """line_id -> (line_type, psp_line_id, gross, net) of the merchant's non-payment lines."""
    return {lid: (r["line_type"], r["psp_line_id"], int(r["gross_minor"]), int(r["net_minor"]))
            for lid, r in run["lines"].items()
            if r["merchant_id"] == merchant and r["item_type"] != "payment"}


def _chargebacks_minor(run: dict, merchant: str) -> int:
    return sum(int(s["chargebacks_minor"]) for s in run["statements"].values()
               if s["merchant_id"] == merchant)


def test_the_builds_succeed(built):
    for run in ("first", "second"):
        assert built[run]["returncode"] == 0, built[run]["output"][-4000:]


def test_a_repeated_chargeback_counts_once_and_the_genuine_second_one_counts(built):
    # the first line of the repeat is kept: the earliest file, though its id sorts later
    assert _merchant_lines(built["second"], "m_a") == {
        "chargeback:p_a": ("chargeback", "f9e1:2", -4_000, -4_000),
        "chargeback:p_a:f0a2:3": ("chargeback", "f0a2:3", -6_000, -6_000),
    }
    assert _chargebacks_minor(built["second"], "m_a") == 10_000


def test_a_chargeback_re_sent_the_next_day_counts_once_and_leaves_the_closed_day_alone(built):
    first, second = built["first"], built["second"]
    assert _merchant_lines(first, "m_b") == {
        "chargeback:p_b": ("chargeback", "fb1:2", -4_000, -4_000)}
    # no late or correction line for the repeat: the genuine 6,000 on its own (open) day
    assert _merchant_lines(second, "m_b") == {
        "chargeback:p_b": ("chargeback", "fb1:2", -4_000, -4_000),
        "chargeback:p_b:fb2:3": ("chargeback", "fb2:3", -6_000, -6_000),
    }
    assert _chargebacks_minor(second, "m_b") == 10_000
    closed = "m_b:USD:2024-03-04"
    assert closed in first["statements"]
    assert first["statements"][closed]["status"] == "closed"
    assert second["statements"][closed] == first["statements"][closed]
