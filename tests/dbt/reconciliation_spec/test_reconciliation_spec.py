"""Audit of reconciliation.md, psp-settlement-csv.md and money.md through the public surfaces:
ledger rows as the extract writes them, real files (PSP CSV, camt.053, MT940, BAI2, chain logs)
dropped in the landing zone and loaded by the loader, the reconciliation marts built by dbt on
DuckDB and Postgres over five runs (scenario.py, phases.py):

  run 0: recon_as_of 2024-03-03        run 1: 2024-03-04
  run 2: 2024-03-05, after the late files (a late PSP file, a chain file with a reorg)
  run 3: 2024-03-05 again              run 4: 2024-03-03 again (a past day re-run)

Expected results come from the spec text; each test names the sentence it checks."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.dbt.reconciliation_spec import scenario as s
from tests.dbt.reconciliation_spec.phases import money as _int
from tests.dbt.reconciliation_spec.phases import of, run_phases

D3, D4, D5 = dt.date(2024, 3, 3), dt.date(2024, 3, 4), dt.date(2024, 3, 5)


@pytest.fixture(scope="module")
def runs_duckdb(audit_duckdb, tmp_path_factory):
    return run_phases(audit_duckdb, tmp_path_factory.mktemp("runs_duck"))


@pytest.fixture(scope="module")
def runs_postgres(audit_postgres, tmp_path_factory):
    return run_phases(audit_postgres, tmp_path_factory.mktemp("runs_pg"))


ENGINES = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=ENGINES)
def runs(request):
    return request.getfixturevalue(f"runs_{request.param}")




def matches(run, channel):
    return sorted((m["match_type"], m["refund_id"] or m["payment_id"] or m["channel_reference"])
                  for m in of(run["matches"], channel))


def breaks(run, channel, status=None):
    return sorted((b["break_type"], b["refund_id"] or b["payment_id"] or b["channel_reference"])
                  for b in of(run["breaks"], channel) if status in (None, b["status"]))


# ================================ breaches ======================================================

def test_payout_reference_in_a_german_structured_mt940_field_86_is_found(runs):
    """reconciliation.md Keys: "the bank statement shows one credit per payout, whose remittance
    information (camt.053 Ustrd/EndToEndId, MT940 field 86, BAI2 text) carries the payout
    reference". The MT940 credit of 58.20 carries po_b3 in field 86's purpose subfield ?21
    (`166?00GUTSCHRIFT?109251?20SVWZ+PSP AUSZAHLUNG?21po_b3?32ACQUIRER B3`): payout_batch."""
    run = runs[2]
    assert ("payout_batch", "po_b3") in matches(run, "ch_b3")
    assert breaks(run, "ch_b3") == []


def test_a_transfer_mined_again_after_a_reorg_matches_its_payment(runs):
    """reconciliation.md: "A chain payment matches a Transfer log by transaction hash, with to,
    value and token"; "A break resolves itself when later data closes it". TX a3 was mined in
    block 900, removed by a reorg and mined again in block 950 (same log index, 151
    confirmations): the payment has its Transfer log on the canonical chain."""
    run = runs[2]
    assert ("chain", "pay_k_remine") in matches(run, "ch_crypto_sim")
    assert [b for b in run["breaks"]
            if b["payment_id"] == "pay_k_remine" and b["status"] == "open"] == []


def test_two_candidate_lines_for_one_payment_are_one_ambiguous_break_listing_them(runs):
    """reconciliation.md Match order 3: "Two or more candidates: no match, an `ambiguous` break
    listing them"; Breaks: "one row each". pay_c3 (33.33 USD, T+2) has two unreferenced lines
    of 33.33 (psp-c3a, psp-c3b): one ambiguous break whose candidates list both lines."""
    run = runs[2]
    ambiguous = [b for b in of(run["breaks"], "ch_c")
                 if b["break_type"] == "ambiguous" and _int(b["channel_amount_minor"] or
                                                            b["ledger_amount_minor"]) == 3_333]
    assert len(ambiguous) == 1, [(b["channel_reference"], b["candidates"]) for b in ambiguous]
    listed = ambiguous[0]["candidates"] or ""
    assert "psp-c3a" in listed and "psp-c3b" in listed or \
        all(b["psp_line_id"] is None or b["psp_line_id"] in listed for b in ambiguous)


def test_rerunning_a_past_day_does_not_resolve_breaks_first_seen_later(runs):
    """reconciliation.md: "A break resolves itself when later data closes it ... never deleted,
    only marked resolved with when and by what. Re-running reconciliation for a past day is
    idempotent". Re-running 2024-03-03 after the 03-05 run: no new data arrived, so no break is
    closed by it; no break is resolved before it was first seen or aged below 0 days; the breaks
    first seen by 03-03 are those of the first 03-03 run, with the same ids and status."""
    first, latest, again = runs[0], runs[2], runs[4]
    assert [b for b in again["breaks"] if b["age_days"] < 0] == []
    assert [b for b in again["breaks"]
            if b["resolved_at"] is not None and b["resolved_at"] < b["first_seen"]] == []
    open_later = {b["break_id"] for b in latest["breaks"] if b["status"] == "open"}
    assert [(b["break_type"], b["payment_id"] or b["channel_reference"], b["resolved_by"])
            for b in again["breaks"]
            if b["break_id"] in open_later and b["status"] == "resolved"] == []

    def seen_by_d3(run):
        return sorted((b["break_id"], b["status"]) for b in run["breaks"]
                      if b["first_seen"] <= D3 and b["channel"] != "ch_crypto_sim")

    assert seen_by_d3(again) == seen_by_d3(first)


def test_daily_report_never_adds_minor_units_of_different_currencies(runs):
    """money.md 1: "An amount is an integer count of the currency's minor unit plus a currency
    code"; reconciliation.md Figures: "breaks by type (count, amount)". On 2024-03-05 ch_c has
    two missing_in_channel breaks: 44.44 USD (pay_c4) and 55.55 EUR (pay_c5). The report must
    not show 9999 of no currency: each amount it carries belongs to one currency."""
    rows = [r for r in runs[2]["daily"] if r["channel"] == "ch_c" and r["day"] == D5]
    assert rows
    assert all("currency" in r for r in rows), "rpt_reconciliation_daily has no currency"
    assert sorted((r["currency"], _int(r["breaks_missing_in_channel_amount_minor"]))
                  for r in rows) == [("EUR", 5_555), ("USD", 4_444)]


# ================================ held ==========================================================

def test_exact_reference_by_either_id(runs):
    """Keys: "A PSP report line carries at least one of them"; Match order 1: "exact reference
    (channel_reference or platform id) -> 1:1". pay_ax2's line carries a channel reference the
    ledger does not know and the right platform id."""
    for run in runs[:4]:
        assert matches(run, "ch_ax") == [("exact_reference", f"pay_ax{i}") for i in (1, 2, 3, 4)]
        assert breaks(run, "ch_ax") == []


@pytest.mark.parametrize(("channel", "payout"), [
    ("ch_b1", "po_b1"),    # camt.053 Ustrd (two Ustrd elements), with a refund in the batch
    ("ch_b2", "po_b2"),    # camt.053 EndToEndId
    ("ch_b3p", "po_b3p"),  # MT940 field 86 over two lines
    ("ch_b4", "po_b4"),    # BAI2 88 continuation text
    ("ch_b5", "po_b5"),    # a payout batch paying lines of two settlement files
])
def test_payout_batches_match_their_bank_credit(runs, channel, payout):
    """Keys: "PSP payout -> bank line is N:1 (sum of the payout's net lines = the bank credit)"."""
    for run in runs[:4]:
        assert ("payout_batch", payout) in matches(run, channel)
        assert breaks(run, channel) == []
    [m] = [m for m in of(runs[2]["matches"], channel) if m["match_type"] == "payout_batch"]
    assert m["payment_id"] is None and m["statement_line_id"] and m["matched_on"] == D3


def test_fuzzy_window_and_candidates(runs):
    """Match order 3: same currency and amount, value date within T+0..T+N (ch_c: N = 2),
    exactly one candidate -> fuzzy; two or more -> no match, ambiguous listing them."""
    run = runs[2]
    assert ("fuzzy", "pay_c1") in matches(run, "ch_c")            # valued T+2
    assert [m for m in of(run["matches"], "ch_c") if m["match_type"] != "fuzzy"] == []
    found = {(b["break_type"], b["payment_id"] or b["channel_reference"]): b
             for b in of(run["breaks"], "ch_c")}
    # two payments of 22.22 for one line
    amb = found[("ambiguous", "psp-c2")]
    assert set(amb["candidates"].split(",")) == {"pay_c2a", "pay_c2b"}
    assert ("missing_in_channel", "pay_c2a") not in found
    # T+3: no match; a different currency: no match; valued the day before the capture: no match
    assert {("missing_in_ledger", "psp-c4"), ("missing_in_channel", "pay_c4"),
            ("missing_in_ledger", "psp-c5"), ("missing_in_channel", "pay_c5"),
            ("missing_in_ledger", "psp-c6")} <= set(found)


def test_missing_in_channel_is_pending_then_a_break_then_resolved_by_the_late_line(runs):
    """Breaks: missing_in_channel "once the settlement window + grace has passed (inside the
    window it is pending, not a break)"; "A break resolves itself when later data closes it ...
    never deleted, only marked resolved with when and by what". pay_d_late: captured 03-01,
    T+1, grace 1 day; its line (settled 03-04) lands before the 03-05 run."""
    d3, d4, d5 = runs[0], runs[1], runs[2]
    assert not [b for b in d3["breaks"] if b["payment_id"] == "pay_d_late"]
    assert sum(r["pending_count"] for r in of(d3["daily"], "ch_d")) >= 1
    [b4] = [b for b in d4["breaks"] if b["payment_id"] == "pay_d_late"]
    assert (b4["break_type"], b4["status"], b4["first_seen"], b4["age_days"]) == \
        ("missing_in_channel", "open", D4, 0)
    [b5] = [b for b in d5["breaks"] if b["payment_id"] == "pay_d_late"]
    [m] = [m for m in d5["matches"] if m["payment_id"] == "pay_d_late"]
    assert (b5["break_id"], b5["status"], b5["resolved_at"], b5["resolved_by"]) == \
        (b4["break_id"], "resolved", D5, f"match:{m['match_id']}")


def test_break_classes_on_psp_lines(runs):
    run = runs[2]
    found = {(b["break_type"], b["refund_id"] or b["payment_id"] or b["channel_reference"]): b
             for b in of(run["breaks"], "ch_d")}
    amt = found[("amount_mismatch", "pay_d_amt")]
    assert (_int(amt["ledger_amount_minor"]), _int(amt["channel_amount_minor"]),
            abs(_int(amt["delta_minor"]))) == (1_000, 990, 10)
    assert found[("currency_mismatch", "pay_d_ccy")]["status"] == "open"
    for pid in ("pay_d_failed", "pay_d_cancel", "pay_d_rev"):   # rev: the channel refunded it
        assert found[("status_mismatch", pid)]["status"] == "open"
    # fully refunded in the ledger, settled by the channel: resolved when the refund line came
    assert found[("status_mismatch", "pay_d_refunded")]["status"] == "resolved"
    assert runs[1]["breaks"] and [b["status"] for b in runs[1]["breaks"]
                                  if b["payment_id"] == "pay_d_refunded"] == ["open"]
    assert found[("missing_in_ledger", "ghost-d")]["channel_amount_minor"] == 700


def test_fee_mismatch_uses_the_price_in_force_and_half_up_rounding(runs):
    """Breaks: fee_mismatch "the channel's fee on the line differs from the channel price in
    force"; money.md 4-5 (ROUND_HALF_UP) and 8 (exact above 2^63 on both engines)."""
    run = runs[2]
    assert breaks(run, "ch_f") == [("fee_mismatch", "pay_f2")]
    [fee] = of(run["breaks"], "ch_f")
    assert (_int(fee["ledger_amount_minor"]), _int(fee["channel_amount_minor"])) == (200, 100)
    assert breaks(run, "ch_h") == []     # 2.5 -> 3, 7.5 -> 8
    assert breaks(run, "ch_eth") == []
    assert {m["payment_id"]: _int(m["amount_minor"]) for m in of(run["matches"], "ch_eth")} == \
        {"pay_eth_a": s.ETH_A, "pay_eth_b": s.ETH_B}
    [day] = [r for r in run["daily"] if r["channel"] == "ch_eth"]
    assert _int(day["matched_amount_minor"]) == s.ETH_A + s.ETH_B


def test_chain_breaks(runs):
    d3, d5 = runs[0], runs[2]
    by = {(b["break_type"], b["payment_id"] or b["chain_tx_hash"]): b["status"]
          for b in of(d3["breaks"], "ch_crypto_sim")}
    assert by == {("chain_unconfirmed", "pay_k_unconf"): "open",
                  ("chain_reorged", "pay_k_reorg"): "open",
                  ("missing_in_ledger", s.TX["a4"]): "open"}
    assert {("chain", "pay_k_remine"), ("chain", "pay_k_remine2")} <= set(
        matches(d3, "ch_crypto_sim"))
    # the head moved to block 1100: confirmed now, the break resolved by the match
    assert ("chain", "pay_k_unconf") in matches(d5, "ch_crypto_sim")
    assert [b["status"] for b in d5["breaks"] if b["payment_id"] == "pay_k_unconf"] == \
        ["resolved"]
    # re-mined under another log index: still matched, nothing open
    assert ("chain", "pay_k_remine2") in matches(d5, "ch_crypto_sim")
    assert not [b for b in d5["breaks"] if b["payment_id"] == "pay_k_remine2"]


def test_same_day_rerun_and_same_file_again_are_idempotent(runs, request):
    assert runs[2] == runs[3]
    d3, d4 = runs[0], runs[1]
    ids3 = {b["break_id"]: b["break_type"] for b in d3["breaks"]}
    assert {k: v for k, v in ((b["break_id"], b["break_type"]) for b in d4["breaks"])
            if k in ids3} == ids3


def test_required_columns_and_exact_money_types(runs):
    run = runs[2]
    assert {"match_id", "match_type", "channel", "currency", "payment_id", "channel_reference",
            "statement_line_id", "chain_tx_hash", "amount_minor", "matched_on"} <= set(
        run["matches"][0])
    assert {"break_id", "break_type", "channel", "currency", "payment_id", "channel_reference",
            "statement_line_id", "chain_tx_hash", "ledger_amount_minor", "channel_amount_minor",
            "delta_minor", "first_seen", "age_days", "status", "resolved_at", "resolved_by",
            "candidates"} <= set(run["breaks"][0])
    assert {"day", "channel", "matched_count", "matched_amount_minor", "match_rate",
            "oldest_open_break_days"} <= set(run["daily"][0])
    assert {m["match_type"] for m in run["matches"]} == {"exact_reference", "payout_batch",
                                                          "chain", "fuzzy"}


@pytest.mark.postgres
@pytest.mark.parametrize("index", range(5))
def test_duckdb_and_postgres_agree(runs_duckdb, runs_postgres, index):
    for table in ("matches", "breaks", "daily"):
        assert runs_duckdb[index][table] == runs_postgres[index][table], table
