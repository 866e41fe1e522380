"""Second audit of reconciliation.md and psp-settlement-csv.md (docs/audits/
2026-12-05-reconciliation-psp-csv-2.md), through the same public surfaces as the first
(test_reconciliation_spec.py): ledger rows in the raw tables, real files in the landing zone
loaded by the loader, the reconciliation marts built by dbt on DuckDB and Postgres, four runs:

  run 0: recon_as_of 2024-03-03 (the first delivery)
  run 1: 2024-03-05, after the late delivery (late PSP lines, a corrected PSP file re-sent
         under its name, a second camt.053)
  run 2: 2024-03-03 again (a past day replayed after the later run)
  run 3: 2024-03-05 again (forward again after the replay)

The data and why each expectation holds: scenario_rc2.py and each test's docstring. grace = 1
day (the default): captured on D on a T+N channel -> pending through D+N+1, a break from D+N+2.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tests.dbt.reconciliation_spec import scenario_rc2 as s
from tests.dbt.reconciliation_spec.phases import money as _int
from tests.dbt.reconciliation_spec.phases import of

D2, D3, D4, D5 = (dt.date(2024, 3, d) for d in (2, 3, 4, 5))
AS_OF = ["2024-03-03", "2024-03-05", "2024-03-03", "2024-03-05"]


def run_phases(aw, work) -> list[dict]:
    for table, rows in s.LEDGER.items():
        aw.insert(table, rows)
    for source, files in (("psp", s.PSP_FIRST), ("bank", s.BANK_FIRST)):
        for name, data in files.items():
            aw.drop(source, name, data)
    aw.load()
    snaps = []
    aw.build(AS_OF[0], work / "r0")
    snaps.append(aw.snapshot())
    for source, files in (("psp", s.PSP_LATE), ("bank", s.BANK_LATE)):
        for name, data in files.items():
            aw.drop(source, name, data)
    aw.load()
    for i, as_of in enumerate(AS_OF[1:], start=1):
        aw.build(as_of, work / f"r{i}")
        snaps.append(aw.snapshot())
    return snaps


@pytest.fixture(scope="module")
def rc2_duckdb(audit_duckdb, tmp_path_factory):
    return run_phases(audit_duckdb, tmp_path_factory.mktemp("rc2_duck"))


@pytest.fixture(scope="module")
def rc2_postgres(audit_postgres, tmp_path_factory):
    return run_phases(audit_postgres, tmp_path_factory.mktemp("rc2_pg"))


ENGINES = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=ENGINES)
def runs(request):
    return request.getfixturevalue(f"rc2_{request.param}")




def breaks_of(run, payment_id, status=None):
    return [b for b in run["breaks"]
            if b["payment_id"] == payment_id and status in (None, b["status"])]


def line_no(psp_line_id: str) -> int:
    """psp_line_id is `<file id prefix>:<line number>`."""
    return int(psp_line_id.rsplit(":", 1)[1])


# ================================ breaches ======================================================

def test_a_full_refund_is_pending_until_its_refund_line_is_due(runs):
    """reconciliation.md Breaks: status_mismatch "the ledger says ... fully refunded, the channel
    says settled"; missing_in_channel "(inside the window it is pending, not a break)"; the break
    row carries "first_seen".

    pay_r1 (10.00 USD, T+1) was captured 03-01 and settled by the channel on 03-02 (match). The
    customer was refunded in full on 03-03 09:00 (re_r1). The channel reports a refund in its
    own settlement window like anything else: re_r1's line is due by 03-03 + 1 (+ 1 grace) =
    03-05, and it arrives in the 03-04 file. So:
    - run 0 (03-03): the refund is hours old and inside its window: no break for pay_r1 (above
      all none first seen 03-02, the day before the refund even happened);
    - run 1 (03-05): the refund line matched; nothing open for pay_r1;
    - run 2 (03-03 replayed): still nothing open."""
    assert breaks_of(runs[0], "pay_r1") == [], "a status_mismatch before the refund was due"
    assert ("exact_reference", "re_r1") in {(m["match_type"], m["refund_id"])
                                            for m in runs[1]["matches"]}
    assert breaks_of(runs[1], "pay_r1", "open") == []
    assert breaks_of(runs[2], "pay_r1", "open") == []
    assert [b for b in runs[1]["breaks"]
            if b["resolved_at"] is not None and b["first_seen"] > b["resolved_at"]] == []


def test_a_full_refund_the_channel_never_reports_is_a_status_mismatch_from_its_due_day(runs):
    """Same sentences. pay_r2 (20.00 USD, T+1) captured 03-01 10:00, refunded in full 03-01
    12:00 (re_r2); the channel settles the payment on 03-02 and never reports the refund. The
    refund line is due by 03-01 + 1 + 1 grace = 03-03; from 03-04 the ledger says fully
    refunded and the channel says settled: one status_mismatch, first seen 03-04 (age 1 at
    03-05), not 03-02 (the refund was still inside its window then)."""
    assert breaks_of(runs[0], "pay_r2") == []
    [b] = breaks_of(runs[1], "pay_r2")
    assert (b["break_type"], b["status"], b["first_seen"], b["age_days"]) == \
        ("status_mismatch", "open", D4, 1)
    assert _int(b["channel_amount_minor"]) == 2_000


def test_replaying_a_past_day_keeps_a_break_that_a_later_day_resolved_resolved(runs):
    """reconciliation.md: "A break resolves itself when later data closes it (a late statement
    line); it is never deleted, only marked resolved with when and by what"; README (days in
    Dagster): "replaying an older day after later closes reopens nothing".

    pay_r3 (30.00 USD, T+1) captured 02-28: pending through 02-28 + 1 + 1 = 03-01, a
    missing_in_channel break first seen 03-02 (open at run 0, age 1). Its line comes in the
    03-04 file: run 1 (03-05) resolves it (resolved_at 03-05, resolved_by the match). Replaying
    03-03 afterwards must not wipe that: the same break id, still resolved at 03-05 by the same
    match. Run 3 (03-05 again) gives exactly run 1."""
    [b0] = breaks_of(runs[0], "pay_r3")
    assert (b0["break_type"], b0["status"], b0["first_seen"], b0["age_days"]) == \
        ("missing_in_channel", "open", D2, 1)
    [m] = [m for m in runs[1]["matches"] if m["payment_id"] == "pay_r3"]
    [b1] = breaks_of(runs[1], "pay_r3")
    assert (b1["break_id"], b1["status"], b1["resolved_at"], b1["resolved_by"]) == \
        (b0["break_id"], "resolved", D5, f"match:{m['match_id']}")
    [b2] = breaks_of(runs[2], "pay_r3")
    assert (b2["break_id"], b2["status"], b2["resolved_at"], b2["resolved_by"]) == \
        (b1["break_id"], "resolved", D5, b1["resolved_by"])
    assert runs[3]["breaks"] == runs[1]["breaks"]


def test_the_later_line_of_a_file_is_the_duplicate(runs):
    """reconciliation.md Keys: "Ledger -> PSP line is 1:1"; Breaks: duplicate_in_channel "the
    same channel reference settled twice" (the project: "the first line counts and the others
    are duplicates"). ch_u_2024-03-02.csv settles pay_u1 on line 2 and again on line 11: line 2
    is the match, line 11 the duplicate (first seen 03-02). pay_u2 (line 12) is settled again
    in the 03-04 file: that later line is the duplicate (first seen 03-04), line 12 stays the
    match."""
    [m] = [m for m in runs[0]["matches"] if m["payment_id"] == "pay_u1"]
    assert line_no(m["psp_line_id"]) == 2
    [b] = breaks_of(runs[0], "pay_u1")
    assert (b["break_type"], line_no(b["psp_line_id"]), b["first_seen"]) == \
        ("duplicate_in_channel", 11, D2)
    [m2] = [m for m in runs[1]["matches"] if m["payment_id"] == "pay_u2"]
    assert line_no(m2["psp_line_id"]) == 12
    [b2] = breaks_of(runs[1], "pay_u2")
    assert (b2["break_type"], b2["status"], b2["first_seen"]) == \
        ("duplicate_in_channel", "open", D4)


def test_a_corrected_file_keeps_the_id_of_a_break_it_still_shows(runs):
    """reconciliation.md Breaks: "one row each, with a stable id"; "Re-running ... the same
    inputs give the same matches and the same break ids". ch_w_2024-03-02.csv settles pay_w1 at
    9.90 (ledger 10.00): amount_mismatch, delta -10. The PSP re-sends the file under the same
    name, adding the missing pay_w2 line and leaving pay_w1's line as it was. pay_w1's break is
    the same break: same id, open, first seen 03-02 - not one closed as 'data_changed' plus a new
    one."""
    [b0] = breaks_of(runs[0], "pay_w1")
    assert (b0["break_type"], _int(b0["delta_minor"])) == ("amount_mismatch", -10)
    assert [(b["break_id"], b["status"], b["first_seen"]) for b in breaks_of(runs[1], "pay_w1")] \
        == [(b0["break_id"], "open", D2)]
    assert [m["match_type"] for m in runs[1]["matches"] if m["payment_id"] == "pay_w2"] == \
        ["exact_reference"]


def test_a_run_for_a_past_day_shows_nothing_captured_after_it(runs):
    """reconciliation.md: "Re-running reconciliation for a past day is idempotent" and "Figures
    per day and channel: ... pending"; the project: "a run for a past day sees nothing dated
    after it". pay_e1 was captured 03-04 (the ledger extract holds it already). A run for 03-03
    - the first one and the replay alike - has no figure for a day after 03-03 and does not count
    pay_e1 as pending; the 03-05 run does (captured 03-04, T+1: pending through 03-06)."""
    for run in (runs[0], runs[2]):
        assert [(r["day"], r["channel"]) for r in run["daily"] if r["day"] > D3] == []
    [r] = [r for r in runs[1]["daily"] if r["channel"] == "ch_r" and r["day"] == D4]
    assert r["pending_count"] == 1


def test_a_payout_reference_the_bank_wrote_in_upper_case_is_found(runs):
    """reconciliation.md Keys: the bank credit's "remittance information (... MT940 field 86
    ...) carries the payout reference"; Match order 2 "payout batch -> N:1 against the bank
    line". po_p1 (pay_p1 100.00 - fee 3.00 = 97.00) is credited 97.00 on MT940 with
    `:86:PSP PAYOUT PO_P1`: banks upper-case remittance text (SWIFT character sets, host
    systems); the reference is carried all the same. A payout_batch match and no break - not an
    unpaid payout_mismatch once its value date (03-03) + grace has passed."""
    for run in runs:
        assert [m["amount_minor"] for m in of(run["matches"], "ch_p")
                if m["match_type"] == "payout_batch"
                and m["channel_reference"].lower() == "po_p1"] == [9_700]
    assert [b for b in runs[1]["breaks"] if (b["channel_reference"] or "").lower() == "po_p1"] \
        == []


def test_a_payout_credited_twice_is_one_match_and_a_duplicate(runs):
    """reconciliation.md Keys: "the bank statement shows one credit per payout"; Breaks:
    duplicate_in_channel "the same channel reference settled twice" (bank statements are the
    channel side: "the channel (what each payment channel reports: PSP settlement reports, bank
    statements)"). po_p4 (38.80) is credited on 03-03 (camt EndToEndId) and again on 03-04 (a
    second camt.053): the first credit is the payout_batch match; the second one is money
    received twice for one payout, a duplicate_in_channel break naming that bank line, first
    seen 03-04, 38.80 on the channel side."""
    first = [m for m in runs[0]["matches"] if m["channel_reference"] == "po_p4"]
    assert len(first) == 1
    later = [m for m in runs[1]["matches"] if m["channel_reference"] == "po_p4"]
    assert [m["statement_line_id"] for m in later] == [first[0]["statement_line_id"]]
    [b] = [b for b in runs[1]["breaks"] if b["channel_reference"] == "po_p4"]
    assert (b["break_type"], b["status"], b["first_seen"], _int(b["channel_amount_minor"])) == \
        ("duplicate_in_channel", "open", D4, 3_880)
    assert b["statement_line_id"] != first[0]["statement_line_id"]


# ================================ held ==========================================================

def test_a_payout_credit_one_minor_unit_short_is_a_payout_mismatch(runs):
    """Breaks: payout_mismatch "a payout's bank credit differs from the sum of its PSP lines".
    po_p2: 200.00 - 6.00 = 194.00; the camt credit (Ustrd "PSP SETTLEMENT po_p2") is 193.99: no
    payout_batch match; one payout_mismatch, ledger 19400, channel 19399, delta -1, first seen
    03-03 (the booking day)."""
    for run in runs:
        assert [m for m in run["matches"] if m["channel_reference"] == "po_p2"] == []
        [b] = [b for b in run["breaks"] if b["channel_reference"] == "po_p2"]
        assert (b["break_type"], _int(b["ledger_amount_minor"]), _int(b["channel_amount_minor"]),
                _int(b["delta_minor"]), b["first_seen"], b["status"]) == \
            ("payout_mismatch", 19_400, 19_399, -1, D3, "open")


def test_a_batch_with_a_fee_adjustment_matches_a_bai2_credit_named_in_its_16_text(runs):
    """psp-settlement-csv.md: record_type fee_adjustment; "The payout row's gross_minor is the
    sum of the net_minor of its batch"; reconciliation.md Keys "BAI2 text". po_p3: pay_p3 50.00
    fee 1.50 (net 48.50) and a fee_adjustment of fee 0.25 (net -0.25): 48.25, the payout row's
    gross and the BAI2 credit, whose 16 record's own text says "PSP PAYOUT po_p3"."""
    for run in runs:
        assert [(m["match_type"], _int(m["amount_minor"])) for m in run["matches"]
                if m["channel_reference"] == "po_p3"] == [("payout_batch", 4_825)]
        assert [b for b in run["breaks"] if b["channel_reference"] == "po_p3"] == []


def test_a_t_plus_0_channel_is_pending_through_the_grace_day_only(runs):
    """missing_in_channel "once the settlement window + grace has passed (inside the window it
    is pending)", window per channel T+0..T+N. ch_t0 is T+0: pay_t0a captured 03-01 is pending
    through 03-02 and a break from 03-03 (age 0 at run 0); pay_t0b captured 03-02 is pending on
    03-03 (counted on its capture day) and a break from 03-04 (age 1 at 03-05)."""
    [a] = breaks_of(runs[0], "pay_t0a")
    assert (a["break_type"], a["first_seen"], a["age_days"]) == ("missing_in_channel", D3, 0)
    assert breaks_of(runs[0], "pay_t0b") == []
    [r] = [r for r in runs[0]["daily"] if r["channel"] == "ch_t0" and r["day"] == D2]
    assert r["pending_count"] == 1
    [b] = breaks_of(runs[1], "pay_t0b")
    assert (b["break_type"], b["first_seen"], b["age_days"]) == ("missing_in_channel", D4, 1)


def test_a_quoted_platform_id_with_comma_and_quotes_matches(runs):
    """psp-settlement-csv.md: "RFC 4180 quoting"; merchant_reference "the platform's payment or
    refund id as sent to the channel". The line carries the id pay_q,"1" quoted, its quotes
    doubled in the file (scenario_rc2.py), and no
    channel reference: an exact_reference match on the platform id."""
    for run in runs:
        assert [(m["match_type"], m["payment_id"]) for m in of(run["matches"], "ch_q")] == \
            [("exact_reference", s.ODD_ID)]
        assert of(run["breaks"], "ch_q") == []


def test_an_ambiguous_break_resolves_when_a_later_line_leaves_one_candidate(runs):
    """Match order 3: two candidates -> "an ambiguous break listing them"; one -> fuzzy; "A
    break resolves itself when later data closes it". psp-v1 (77.77, no reference, 03-02) has
    two candidates on T+2 ch_v: pay_v1a and pay_v1b. On 03-04 pay_v1a's own line arrives
    (exact_reference), leaving pay_v1b the only candidate: psp-v1 is then a fuzzy match of
    pay_v1b, and the ambiguous break (same id) is resolved at 03-05 by that match."""
    [a] = of(runs[0]["breaks"], "ch_v")
    assert (a["break_type"], sorted(a["candidates"].split(","))) == \
        ("ambiguous", ["pay_v1a", "pay_v1b"])
    by = {m["payment_id"]: m for m in of(runs[1]["matches"], "ch_v")}
    assert (by["pay_v1a"]["match_type"], by["pay_v1b"]["match_type"]) == \
        ("exact_reference", "fuzzy")
    [a1] = of(runs[1]["breaks"], "ch_v")
    assert (a1["break_id"], a1["status"], a1["resolved_at"], a1["resolved_by"]) == \
        (a["break_id"], "resolved", D5, f"match:{by['pay_v1b']['match_id']}")


def test_daily_figures_count_a_duplicate_as_a_break_of_its_day(runs):
    """Figures per day and channel: matched count and amount, match rate, breaks by type, oldest
    open break. ch_u on 03-02 (run 0): 10 lines matched (pay_u1..pay_u10, 10.00 each), one
    duplicate_in_channel (10.00): match_rate = matched / (matched + breaks) = 10/11 = 0.909091
    (the project's definition, DECIMAL(9,6) half-up); oldest open break 1 day at 03-03."""
    [r] = [r for r in runs[0]["daily"] if r["channel"] == "ch_u" and r["day"] == D2]
    assert (r["matched_count"], _int(r["matched_amount_minor"]), r["breaks_duplicate_in_channel"],
            _int(r["breaks_duplicate_in_channel_amount_minor"]), r["match_rate"],
            r["oldest_open_break_days"]) == (10, 10_000, 1, 1_000, Decimal("0.909091"), 1)


@pytest.mark.postgres
@pytest.mark.parametrize("index", range(4))
def test_duckdb_and_postgres_agree_rc2(rc2_duckdb, rc2_postgres, index):
    for table in ("matches", "breaks", "daily"):
        assert rc2_duckdb[index][table] == rc2_postgres[index][table], table
