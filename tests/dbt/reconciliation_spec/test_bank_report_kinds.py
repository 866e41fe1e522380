"""Bank report kinds and line statuses against reconciliation.md's "the bank statement shows one
credit per payout":

- only a booked credit can be a payout's credit: a camt PDNG (pending) line or a BAI2 `info` line
  matches no payout and raises no break (the payout stays unpaid / pending as before);
- a credit a bank reports twice - in a camt.054 notification or a camt.052 / MT942 intraday
  report, and again in the end-of-day statement (camt.053, MT940, BAI2), or in two intraday
  reports - counts once (the statement's line when there is one), so money received once is no
  duplicate_in_channel;
- a genuine second credit of a payout is still duplicate_in_channel, once.

Raw rows as the file loader writes them (ingest/files/records.py: status booked | pending | info,
the statement's message_type; the loader keeps a camt.054 or camt.052 current next to the
camt.053 of the same day, its supersession key includes the message type), inserted with
tests/dbt/conftest.py's insert_raw; the reconciliation models built by dbt on DuckDB and Postgres,
twice for the same day (idempotent: same matches, same break ids). recon_as_of 2024-03-04,
grace 1 day (the default).
"""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest

from tests.dbt.conftest import built_on_both_engines, insert_raw
from tests.dbt.reconciliation_spec.phases import recon_snapshot

T0 = datetime(2024, 1, 1)
AS_OF = "2024-03-04"
SELECT = ("--select", "+fct_reconciliation_breaks", "+rpt_reconciliation_daily",
          "--exclude", "test_type:singular")
CH = "ch_kinds"
ACCOUNT = "DE10KINDS"
D2, D3 = date(2024, 3, 2), date(2024, 3, 3)


def _payout(n: int, payout_id: str, amount: int, payout_date: date = D2) -> dict:
    # a payout row with no lines: its own gross is the credit expected
    return {"psp_line_id": f"PK{n}", "file_id": "f_psp_kinds", "format": "psp_csv",
            "line_number": n + 1, "settlement_date": date(2024, 3, 1), "record_type": "payout",
            "channel": CH, "transaction_at": datetime(2024, 3, 1, 12), "currency": "USD",
            "gross_minor": amount, "fee_minor": 0, "net_minor": amount, "payout_id": payout_id,
            "payout_date": payout_date}


def _statement(uid: str, message_type: str, fmt: str) -> dict:
    return {"statement_uid": uid, "file_id": f"f_{uid}", "statement_index": 0, "format": fmt,
            "message_type": message_type, "account_id": ACCOUNT, "currency": "USD"}


def _line(uid: str, n: int, amount: int, *, day: date = D2, status: str = "booked",
          bank_ref=None, entry_ref=None, e2e=None, customer_ref=None, remittance=None,
          code=None) -> dict:
    return {"statement_line_id": f"{uid}:{n}", "statement_uid": uid, "file_id": f"f_{uid}",
            "statement_index": 0, "line_number": n, "account_id": ACCOUNT, "booking_date": day,
            "value_date": day, "amount_minor": amount, "currency": "USD", "status": status,
            "bank_reference": bank_ref, "entry_reference": entry_ref, "end_to_end_id": e2e,
            "customer_reference": customer_ref, "remittance": remittance,
            "transaction_code": code}


PAYOUTS = [
    _payout(1, "po_ka", 1_000),   # (a) camt.054 notification + camt.053 statement
    _payout(2, "po_kb", 2_000),   # (a) MT942 intraday + MT940 statement
    _payout(3, "po_kc", 3_000),   # (a) two camt.052 intraday reports, no statement yet
    _payout(4, "po_kp", 4_000),   # (b) a camt.052 PDNG line only; due 03-02: unpaid from 03-04
    _payout(5, "po_ki", 5_000, payout_date=D3),  # (b) a BAI2 info line only; due 03-03: pending
    _payout(6, "po_kd", 6_000),   # (c) credited twice (two statements), the second also notified
]

STATEMENTS = [
    _statement("K053_1", "camt.053", "camt"), _statement("K053_2", "camt.053", "camt"),
    _statement("K054_1", "camt.054", "camt"), _statement("K054_2", "camt.054", "camt"),
    _statement("K052_am", "camt.052", "camt"), _statement("K052_pm", "camt.052", "camt"),
    _statement("K940", "mt940", "mt940"), _statement("K942", "mt942", "mt940"),
    _statement("KBAI", "bai2", "bai2"),
]

KA = {"bank_ref": "ASR-KA", "entry_ref": "NTRY-KA", "e2e": "po_ka"}
KB = {"bank_ref": "BR-KB", "customer_ref": "po_kb", "remittance": "PSP PAYOUT PO_KB"}
KC = {"bank_ref": "ASR-KC", "remittance": "PAYOUT po_kc"}
LINES = [
    _line("K054_1", 0, 1_000, **KA), _line("K053_1", 0, 1_000, **KA),
    _line("K942", 0, 2_000, **KB), _line("K940", 0, 2_000, **KB),
    _line("K052_am", 0, 3_000, **KC), _line("K052_pm", 0, 3_000, **KC),
    # (b) pending and informational lines carrying payout ids
    _line("K052_am", 1, 4_000, status="pending", e2e="po_kp", bank_ref="ASR-KP"),
    _line("KBAI", 0, 5_000, status="info", customer_ref="po_ki", code="890"),
    # a pending credit naming a payout id nobody knows, on the collection account: not
    # missing_in_ledger (a booked one would be)
    _line("K052_pm", 1, 7_777, status="pending", remittance="PAYOUT po_k_ghost"),
    # (c) two genuine credits of po_kd (the bank's references differ), the second notified too
    _line("K053_1", 1, 6_000, bank_ref="ASR-KD1", e2e="po_kd"),
    _line("K053_2", 0, 6_000, day=D3, bank_ref="ASR-KD2", e2e="po_kd"),
    _line("K054_2", 0, 6_000, day=D3, bank_ref="ASR-KD2", e2e="po_kd"),
]
NOT_CREDITS = {"K052_am:1", "KBAI:0", "K052_pm:1"}

ROWS = {"channels": [{"id": CH, "name": CH, "channel_type": "card", "status": "active",
                      "settlement_window_days": 1, "created_at": T0, "updated_at": T0}],
        "psp_lines": PAYOUTS, "bank_statements": STATEMENTS, "bank_statement_lines": LINES}


def _build(warehouse, tmp_path_factory, dbt_build) -> list[dict]:
    for table, rows in ROWS.items():
        insert_raw(warehouse, table, rows, T0)
    work = tmp_path_factory.mktemp(f"bank_kinds_{warehouse.engine}")
    snapshots = []
    for run in ("first", "again"):  # the same day twice: the second run is incremental
        proc = dbt_build(warehouse, work / run,
                         (*SELECT, "--vars", json.dumps({"recon_as_of": AS_OF})))
        assert proc.returncode == 0, warehouse.dbt_output[-8000:]
        snapshots.append(recon_snapshot(warehouse.query, [CH]))
    return snapshots


kinds_duckdb, kinds_postgres, runs = built_on_both_engines("kinds", _build, name="runs")


def _matches(snap, payout_id):
    return [(m["match_type"], m["statement_line_id"], int(m["amount_minor"]))
            for m in snap["matches"] if m["channel_reference"] == payout_id]


def _breaks(snap, payout_id):
    return sorted((b["break_type"], b["statement_line_id"], b["status"])
                  for b in snap["breaks"] if b["channel_reference"] == payout_id)


@pytest.mark.parametrize(("payout_id", "statement_line"), [
    ("po_ka", "K053_1:0"),   # camt.054 + camt.053: the statement's line
    ("po_kb", "K940:0"),     # MT942 + MT940: the statement's line
    ("po_kc", "K052_am:0"),  # the same credit in two camt.052 reports: the first report's
])
def test_a_a_credit_reported_twice_by_the_bank_counts_once(runs, payout_id, statement_line):
    snap = runs[-1]
    amount = {"po_ka": 1_000, "po_kb": 2_000, "po_kc": 3_000}[payout_id]
    assert _matches(snap, payout_id) == [("payout_batch", statement_line, amount)]
    assert _breaks(snap, payout_id) == []  # no duplicate_in_channel: money received once


def test_b_pending_and_info_lines_are_no_payout_credit(runs):
    snap = runs[-1]
    assert _matches(snap, "po_kp") == [] and _matches(snap, "po_ki") == []
    # po_kp is due 03-02: unpaid from 03-04 (no bank amount); po_ki is due 03-03: still pending
    unpaid = [b for b in snap["breaks"] if b["channel_reference"] == "po_kp"]
    assert [(b["break_type"], b["statement_line_id"], b["channel_amount_minor"])
            for b in unpaid] == [("payout_mismatch", None, None)]
    assert int(unpaid[0]["ledger_amount_minor"]) == 4_000
    assert _breaks(snap, "po_ki") == []
    # no break names a pending or informational line (nor a missing_in_ledger for po_k_ghost)
    assert [b for b in snap["breaks"] if b["statement_line_id"] in NOT_CREDITS] == []
    assert [b for b in snap["breaks"] if b["break_type"] == "missing_in_ledger"] == []


def test_c_a_genuine_second_credit_is_still_a_duplicate(runs):
    snap = runs[-1]
    assert _matches(snap, "po_kd") == [("payout_batch", "K053_1:1", 6_000)]
    # the second credit once, as the statement's line (its notification is the same credit)
    assert _breaks(snap, "po_kd") == [("duplicate_in_channel", "K053_2:0", "open")]


def test_a_rerun_of_the_day_gives_the_same_matches_and_break_ids(runs):
    first, again = runs
    assert [m["match_id"] for m in first["matches"]] == [m["match_id"] for m in again["matches"]]
    assert ([(b["break_id"], b["status"]) for b in first["breaks"]]
            == [(b["break_id"], b["status"]) for b in again["breaks"]])


@pytest.mark.postgres
def test_the_engines_agree(kinds_duckdb, kinds_postgres):
    def ids(snap):
        return ([m["match_id"] for m in snap["matches"]],
                [(b["break_id"], b["break_type"], b["statement_line_id"]) for b in snap["breaks"]])

    assert ids(kinds_duckdb[-1]) == ids(kinds_postgres[-1])
