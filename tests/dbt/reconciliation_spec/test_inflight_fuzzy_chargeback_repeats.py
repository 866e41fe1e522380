"""Three gaps of a reconciliation audit, each on its own channel (T+1, grace 1 day: the project's
default), against reconciliation.md:

- ch_if: a PSP line naming a payment the ledger has not seen succeed yet (`pending_callback`,
  `processing`) has a ledger record, so it is never missing_in_ledger nor fuzzy-matched to
  another payment. Rule (README, int_recon_ledger): pending - no break - while the payment could
  still complete inside the channel's settlement window plus grace (created on D: through
  D + 1 + 1), then `status_mismatch` on that payment ("the ledger says failed ... the channel
  says settled": the channel settled what the ledger has not captured), first seen D + 3; once
  the payment succeeds the break resolves and the pair is an exact_reference match.
- ch_fz: Match order 3 "no reference": a line whose channel reference names no ledger record is
  missing_in_ledger, never fuzzy-paired with a payment whose own channel_reference differs (nor
  a line carrying a platform id that names nothing); a line with no reference may pair with any
  payment, a line with one with a payment the ledger has no channel reference for.
- ch_cb: a chargeback row re-sent on a later day's file (same channel, channel reference,
  gross, currency, transaction_at) is `duplicate_in_channel` ("the same channel reference
  settled twice"), as a repeated payment line is; the first line (settlement day, then line) is
  the match. A second, genuine chargeback of a payment (another transaction time) is not.
- ch_dup: "duplicate_in_channel: the same channel reference settled twice" also when the ledger
  never got that reference back: a line ties it to the payment by the platform id it carries,
  and a later line carrying only the reference is that payment settled again (it was
  missing_in_ledger).

Raw rows inserted with tests/dbt/conftest.py's insert_raw; the recon models built by dbt on
DuckDB and Postgres for 03-03, 03-04, then - after the ledger moved pay_if to success - 03-05
twice (idempotent: the same matches and break ids).
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime

import pytest

from tests.dbt.conftest import built_on_both_engines, insert_raw
from tests.dbt.reconciliation_spec.phases import recon_snapshot

T0 = datetime(2024, 1, 1)
SELECT = ("--select", "+fct_reconciliation_breaks", "+rpt_reconciliation_daily",
          "--exclude", "test_type:singular")
CHANNELS = ("ch_if", "ch_fz", "ch_cb", "ch_dup")
D1, D2, D3, D4, D5 = (date(2024, 3, d) for d in range(1, 6))
RUNS = ("2024-03-03", "2024-03-04", "2024-03-05", "2024-03-05")


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _channel(cid):
    return {"id": cid, "name": cid, "channel_type": "card", "status": "active",
            "settlement_window_days": 1, "created_at": T0, "updated_at": T0}


def _payment(pid, amount, ch, *, status="success", ref="chref", at="2024-03-01 10:00:00"):
    captured = status in ("success", "refunding", "partially_refunded", "refunded")
    return {"id": pid, "merchant_id": "mer_a", "merchant_reference": f"order-{pid}",
            "amount_minor": amount, "currency": "USD", "status": status,
            "payment_method_type": "card", "channel_id": ch,
            "channel_reference": f"chref-{pid}" if ref == "chref" else ref,
            "risk_decision": "approve", "customer_id": "cus_1", "refunded_minor": 0,
            "captured_at": ts(at) if captured else None, "created_at": ts(at),
            "updated_at": ts(at)}


def _line(lid, ch, amount, *, ref=None, mref=None, day=D2, kind="payment", n=1,
          tx_at="2024-03-01 12:00:00"):
    return {"psp_line_id": lid, "file_id": f"f_{ch}_{day}", "format": "psp_csv",
            "line_number": n, "settlement_date": day, "record_type": kind, "channel": ch,
            "channel_reference": ref, "merchant_reference": mref, "transaction_at": ts(tx_at),
            "currency": "USD", "gross_minor": amount, "fee_minor": 0, "net_minor": amount}


PAYMENTS = [
    # 1. in flight: the channel settled it (L_if), the ledger waits for the callback
    _payment("pay_if", 1_000, "ch_if", status="pending_callback"),
    _payment("pay_if_proc", 1_500, "ch_if", status="processing"),
    # captured, same amount, no channel reference of its own: the old fuzzy partner of L_if
    _payment("pay_if_other", 1_000, "ch_if", ref=None),
    # 2. a missing_in_channel payment and a missing_in_ledger line of the same amount
    _payment("pay_fz_lost", 2_000, "ch_fz"),
    # the ledger never got the channel's reference back: a referenced line may pair with it
    _payment("pay_fz_noref", 3_000, "ch_fz", ref=None),
    # a blank line (neither reference) may pair with a payment that has one
    _payment("pay_fz_blank", 4_000, "ch_fz"),
    # a line carrying a platform id that names nothing contradicts this payment's id
    _payment("pay_fz_mref", 5_000, "ch_fz", ref=None),
    # 3. chargebacks
    _payment("pay_cb", 5_000, "ch_cb"),
    _payment("pay_cb2", 4_000, "ch_cb"),
    # 4. the channel's reference never reached the ledger
    _payment("pay_dup", 6_000, "ch_dup", ref=None),
]

PSP_LINES = [
    _line("L_if", "ch_if", 1_000, ref="chref-pay_if"),
    _line("L_if_proc", "ch_if", 1_500, mref="pay_if_proc", n=2),
    _line("L_fz_ghost", "ch_fz", 2_000, ref="ghost-fz"),
    _line("L_fz_noref", "ch_fz", 3_000, ref="psp-fz-3", n=2),
    _line("L_fz_blank", "ch_fz", 4_000, n=3),
    _line("L_fz_mref", "ch_fz", 5_000, mref="pay_unknown_fz", n=4),
    _line("L_cb", "ch_cb", 5_000, ref="chref-pay_cb", day=D1),
    _line("L_cb2", "ch_cb", 4_000, ref="chref-pay_cb2", day=D1, n=2),
    # pay_cb's chargeback on 03-02's file, line 3, and the same row again on 03-03's, line 1
    _line("C_cb", "ch_cb", -5_000, ref="chref-pay_cb", kind="chargeback", n=3,
          tx_at="2024-03-02 09:00:00"),
    _line("C_cb_again", "ch_cb", -5_000, ref="chref-pay_cb", kind="chargeback", day=D3,
          tx_at="2024-03-02 09:00:00"),
    # pay_cb2 charged back twice (a second chargeback after a representment): two chargebacks
    _line("C_cb2a", "ch_cb", -1_000, ref="chref-pay_cb2", kind="chargeback", n=4,
          tx_at="2024-03-01 18:00:00"),
    _line("C_cb2b", "ch_cb", -1_000, ref="chref-pay_cb2", kind="chargeback", day=D3, n=2,
          tx_at="2024-03-02 18:00:00"),
    # a chargeback naming nothing, re-sent: missing_in_ledger, then duplicate_in_channel
    _line("C_ghost", "ch_cb", -700, ref="ghost-cb", kind="chargeback", n=5),
    _line("C_ghost_again", "ch_cb", -700, ref="ghost-cb", kind="chargeback", day=D3, n=3),
    # pay_dup settled (reference and platform id), then its reference settled again alone
    _line("L_dup", "ch_dup", 6_000, ref="psp-dup", mref="pay_dup"),
    _line("L_dup_again", "ch_dup", 6_000, ref="psp-dup", day=D3),
]

ROWS = {"channels": [_channel(c) for c in CHANNELS], "payments": PAYMENTS,
        "psp_lines": PSP_LINES}


def _build(warehouse, tmp_path_factory, dbt_build) -> list[dict]:
    for table, rows in ROWS.items():
        insert_raw(warehouse, table, rows, T0)
    work = tmp_path_factory.mktemp(f"inflight_{warehouse.engine}")
    snapshots = []
    for i, as_of in enumerate(RUNS):
        if as_of == "2024-03-05" and i == 2:
            # the callback came: the ledger's extract now says success, captured 03-04
            warehouse.execute_many(
                "UPDATE raw.payments SET status = 'success', "
                "captured_at = TIMESTAMP '2024-03-04 08:00:00', "
                "updated_at = TIMESTAMP '2024-03-04 08:00:00' WHERE id = 'pay_if'", [])
        proc = dbt_build(warehouse, work / f"r{i}",
                         (*SELECT, "--vars", json.dumps({"recon_as_of": as_of})))
        assert proc.returncode == 0, warehouse.dbt_output[-8000:]
        snapshots.append(recon_snapshot(warehouse.query, CHANNELS))
    return snapshots


runs_duckdb, runs_postgres, runs = built_on_both_engines("runs", _build)


def _of(rows, channel):
    return [r for r in rows if r["channel"] == channel]


def _sorted(rows):
    return sorted(rows, key=lambda t: tuple("" if v is None else v for v in t))


def _matches(snap, channel):
    return _sorted((m["match_type"], m["payment_id"], m["psp_line_id"])
                   for m in _of(snap["matches"], channel))


def _breaks(snap, channel, status=None):
    return _sorted((b["break_type"], b["payment_id"], b["psp_line_id"])
                   for b in _of(snap["breaks"], channel) if status in (None, b["status"]))


def _int(v):
    return None if v is None else int(v)


# --- 1. a line naming a payment the ledger has in flight ----------------------------------------

def test_1_a_line_naming_an_in_flight_payment_is_pending_inside_the_window(runs):
    """Created 03-01 on a T+1 channel, grace 1: through 03-03 the payment could still complete;
    its line is no missing_in_ledger and no fuzzy match of pay_if_other, nor any break."""
    d3 = runs[0]
    assert _breaks(d3, "ch_if") == []
    assert _matches(d3, "ch_if") == []
    # the day of the payments: pay_if and pay_if_proc (channel settled, ledger in flight) and
    # pay_if_other (captured, no line yet) are pending
    [day] = [r for r in _of(d3["daily"], "ch_if") if r["day"] == D1]
    assert (day["pending_count"], day["break_count"], day["matched_count"]) == (3, 0, 0)


def test_1_after_window_and_grace_it_is_a_status_mismatch_naming_the_payment(runs):
    d4 = runs[1]
    assert _breaks(d4, "ch_if") == [
        ("missing_in_channel", "pay_if_other", None),   # L_if is not its line
        ("status_mismatch", "pay_if", "L_if"),
        ("status_mismatch", "pay_if_proc", "L_if_proc")]
    assert [b for b in d4["breaks"] if b["break_type"] == "missing_in_ledger"
            and b["channel"] == "ch_if"] == []
    assert _matches(d4, "ch_if") == []
    [b] = [b for b in d4["breaks"] if b["payment_id"] == "pay_if"]
    assert (b["channel_reference"], _int(b["ledger_amount_minor"]),
            _int(b["channel_amount_minor"]), _int(b["delta_minor"]), b["first_seen"],
            b["age_days"], b["status"]) == ("chref-pay_if", 1_000, 1_000, 0, D4, 0, "open")
    # keyed by the payment, as every break of a line naming a payment
    assert b["break_id"] == hashlib.md5(b"status_mismatch:payment:pay_if").hexdigest()


def test_1_once_the_payment_succeeds_the_break_resolves_into_an_exact_match(runs):
    d4, d5 = runs[1], runs[2]
    [m] = [m for m in d5["matches"] if m["payment_id"] == "pay_if"]
    assert (m["match_type"], m["psp_line_id"], _int(m["amount_minor"]), m["matched_on"]) == \
        ("exact_reference", "L_if", 1_000, D2)
    [before] = [b for b in d4["breaks"] if b["payment_id"] == "pay_if"]
    [after] = [b for b in d5["breaks"] if b["payment_id"] == "pay_if"]
    assert (after["break_id"], after["status"], after["resolved_at"], after["resolved_by"],
            after["first_seen"]) == (before["break_id"], "resolved", D5,
                                     f"match:{m['match_id']}", D4)
    # pay_if_proc is still in flight: its break stays open
    assert _breaks(d5, "ch_if", "open") == [("missing_in_channel", "pay_if_other", None),
                                            ("status_mismatch", "pay_if_proc", "L_if_proc")]


# --- 2. fuzzy matching never pairs a line with a payment its reference contradicts ---------------

def test_2_a_line_naming_nothing_and_a_lost_payment_of_the_same_amount_stay_two_breaks(runs):
    d4 = runs[1]
    found = _breaks(d4, "ch_fz")
    assert ("missing_in_ledger", None, "L_fz_ghost") in found
    assert ("missing_in_channel", "pay_fz_lost", None) in found
    assert "pay_fz_lost" not in {m["payment_id"] for m in d4["matches"]}
    [ghost] = [b for b in d4["breaks"] if b["psp_line_id"] == "L_fz_ghost"]
    assert (ghost["channel_reference"], ghost["candidates"], ghost["first_seen"]) == \
        ("ghost-fz", None, D2)


def test_2_fuzzy_pairs_only_where_no_reference_contradicts(runs):
    for snap in runs[1:]:
        assert _matches(snap, "ch_fz") == [
            ("fuzzy", "pay_fz_blank", "L_fz_blank"),    # the line carries no reference
            ("fuzzy", "pay_fz_noref", "L_fz_noref")]    # the payment has no channel reference
        # a platform id naming no payment of the channel is not pay_fz_mref's id
        assert ("missing_in_ledger", None, "L_fz_mref") in _breaks(snap, "ch_fz")
        assert ("missing_in_channel", "pay_fz_mref", None) in _breaks(snap, "ch_fz")
    assert len(_breaks(runs[1], "ch_fz")) == 4


# --- 3. a chargeback row re-sent on a later file --------------------------------------------------

def test_3_a_re_sent_chargeback_is_a_duplicate_not_a_second_match(runs):
    for snap in runs[:2]:   # 03-03 (the re-sent rows are on 03-03's file) and 03-04
        assert _matches(snap, "ch_cb") == [
            ("exact_reference", "pay_cb", "C_cb"), ("exact_reference", "pay_cb", "L_cb"),
            ("exact_reference", "pay_cb2", "C_cb2a"), ("exact_reference", "pay_cb2", "C_cb2b"),
            ("exact_reference", "pay_cb2", "L_cb2")]
        assert _breaks(snap, "ch_cb") == [
            ("duplicate_in_channel", None, "C_ghost_again"),
            ("duplicate_in_channel", "pay_cb", "C_cb_again"),
            ("missing_in_ledger", None, "C_ghost")]
    [dup] = [b for b in runs[1]["breaks"] if b["psp_line_id"] == "C_cb_again"]
    assert (dup["channel_reference"], _int(dup["ledger_amount_minor"]),
            _int(dup["channel_amount_minor"]), dup["first_seen"], dup["status"]) == \
        ("chref-pay_cb", -5_000, -5_000, D3, "open")
    assert dup["break_id"] == hashlib.md5(b"duplicate_in_channel:C_cb_again").hexdigest()


# --- 4. a reference the ledger lacks, settled twice -----------------------------------------------

def test_4_a_reference_settled_again_is_a_duplicate_of_the_payment_it_was_tied_to(runs):
    for snap in runs:
        assert [(p, line) for _t, p, line in _matches(snap, "ch_dup")] == [("pay_dup", "L_dup")]
        assert _breaks(snap, "ch_dup") == [("duplicate_in_channel", "pay_dup", "L_dup_again")]


# --- idempotence, engines ------------------------------------------------------------------------

def test_a_rerun_of_the_day_gives_the_same_matches_and_break_ids(runs):
    first, again = runs[2], runs[3]
    assert [m["match_id"] for m in first["matches"]] == [m["match_id"] for m in again["matches"]]
    assert ([(b["break_id"], b["status"], b["resolved_at"]) for b in first["breaks"]]
            == [(b["break_id"], b["status"], b["resolved_at"]) for b in again["breaks"]])


@pytest.mark.postgres
def test_the_engines_agree(runs_duckdb, runs_postgres):
    for duck, pg in zip(runs_duckdb, runs_postgres, strict=True):
        for table in ("matches", "breaks", "daily"):
            assert [list(r.values()) for r in duck[table]] == \
                [list(r.values()) for r in pg[table]], table
