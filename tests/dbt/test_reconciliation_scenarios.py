"""Reconciliation scenarios (reconciliation.md), each on its own channel so they cannot meet:
the recon models alone (`dbt build --select +fct_reconciliation_breaks +rpt_reconciliation_daily`)
on DuckDB and on Postgres, twice (recon_as_of 03-03, then 03-04: the second run is incremental
for fct_reconciliation_breaks), and the two engines compared row for row.

Each scenario pins one rule an audit found missing:
- s01: a payment in status `refunding` was captured: it matches its line, or is missing_in_channel.
- s09: ledger -> PSP line is 1:1 however the lines name the payment (or refund): the second line
  naming the same platform id is duplicate_in_channel, not a second match.
- s18: the platform id in merchant_reference names a payment (refund) of the line's channel only.
- s04: payout_mismatch compares the bank credit with the sum of the payout's net lines.
- s05: the payout id is found in the remittance as a whole token (po_1 is not in "PAYOUT po_10").
- s13: missing_in_channel's first_seen is the first day the break is shown (not a pending day).
- s15: a break raised from a PSP line names the line (psp_line_id).
- s03: rpt_reconciliation_daily carries the break amount per type.
- s11: fuzzy matching takes the line's value date (payout date, else settlement day), not its
  transaction time, against the channel's settlement window.
- s07: a crypto payment's transfer must go to the channel's collection address
  (seeds/ref_chain_addresses.csv) when no x402 pay_to names one.
- s10: a channel reference naming no ledger record, settled twice: the first line is
  missing_in_ledger (its break id unchanged), the second duplicate_in_channel (payments and refunds).
- s12: fee_mismatch checks the fuzzy-matched lines' fee against the channel price in force too.
- s16: a chargeback row reconciles against the payment it names (exact_reference match); naming
  no payment of its channel it is missing_in_ledger; fee_adjustment rows are left unmatched.
- s17: a run for a past day uses no PSP line, bank line or chain log dated after it: nothing is
  first seen after the run's day, no age is negative.
- s08: a chain payment matched by one Transfer log of its transaction raises no break for the
  transaction's other logs (another transfer the same transaction made).
- s06: a payout whose bank credit is in another currency is a currency_mismatch; one with no
  credit once its value date + grace has passed a payout_mismatch (no bank amount); a credit on
  a collection account naming a payout id the PSP files do not know is missing_in_ledger (and an
  unrelated credit is nothing).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal

import pytest

from tests.dbt.test_settlement import T0, _insert

FIRST_AS_OF, AS_OF = date(2024, 3, 3), date(2024, 3, 4)
SELECT = ("--select", "+fct_reconciliation_breaks", "+rpt_reconciliation_daily",
          "--exclude", "test_type:singular")  # those read models outside reconciliation
BREAK_TYPES = ("missing_in_channel", "missing_in_ledger", "amount_mismatch", "currency_mismatch",
               "fee_mismatch", "duplicate_in_channel", "status_mismatch", "payout_mismatch",
               "chain_unconfirmed", "chain_reorged", "recipient_mismatch", "ambiguous")


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _channel(cid, kind="card", window=1):
    return {"id": cid, "name": cid, "channel_type": kind, "status": "active",
            "settlement_window_days": window, "created_at": T0, "updated_at": T0}


def _payment(pid, amount, ch, *, currency="USD", status="success", ref=None,
             at="2024-03-01 10:00:00", method="card"):
    return {"id": pid, "merchant_id": "mer_a", "merchant_reference": f"order-{pid}",
            "amount_minor": amount, "currency": currency, "status": status,
            "payment_method_type": method, "channel_id": ch,
            "channel_reference": ref if ref is not None else f"chref-{pid}",
            "risk_decision": "approve", "customer_id": "cus_1", "refunded_minor": 0,
            "captured_at": ts(at), "created_at": ts(at), "updated_at": ts(at)}


def _unreferenced(payment):
    # the ledger holds no channel_reference for it: a line whose channel reference names nothing
    # may be fuzzy-matched to it (one whose own channel_reference differs, never)
    return {**payment, "channel_reference": None}


def _refund(rid, pid, amount, *, at="2024-03-01 15:00:00"):
    return {"id": rid, "payment_id": pid, "merchant_id": "mer_a", "amount_minor": amount,
            "currency": "USD", "status": "succeeded", "reason": "requested_by_customer",
            "channel_reference": f"chref-{rid}", "succeeded_at": ts(at), "created_at": ts(at),
            "updated_at": ts(at)}


def _line(lid, ch, *, ref=None, mref=None, amount, fee=0, day="2024-03-01", kind="payment",
          payout=None, tx_at=None, payout_date=None):
    return {"psp_line_id": lid, "file_id": "f_psp", "format": "psp_csv", "line_number": 1,
            "settlement_date": date.fromisoformat(day), "record_type": kind, "channel": ch,
            "channel_reference": ref, "merchant_reference": mref,
            "transaction_at": ts(tx_at or f"{day} 12:00:00"), "currency": "USD",
            "gross_minor": amount, "fee_minor": fee, "net_minor": amount - fee,
            "payout_id": payout, "payout_date": payout_date}


def _bank(lid, amount, *, e2e=None, remittance=None, day=date(2024, 3, 3), currency="USD",
          account="DE00"):
    return {"statement_line_id": lid, "statement_uid": "st_1", "file_id": "f_bank",
            "statement_index": 0, "line_number": 1, "account_id": account,
            "booking_date": day, "value_date": day,
            "amount_minor": amount, "currency": currency, "status": "BOOK", "end_to_end_id": e2e,
            "remittance": remittance}


BASE = "eip155:8453"
BASE_USDC = "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"
COLLECTION = "0xcf2f5e3ce56bdea96e82153b27612ccf9f75dc7d"  # ch_crypto_sim's, seeded
TX_S07_OK, TX_S07_STRANGER = "0x" + "71" * 32, "0x" + "72" * 32
TX_S17 = "0x" + "17" * 32
STRANGER = "0x" + "99" * 20


def _log(tx, to, value, at="2024-03-01 12:00:00", index=0):
    return {"chain_log_id": f"{tx}:{index}", "file_id": "f_chain", "network": BASE,
            "block_number": 100, "block_timestamp": ts(at),
            "transaction_hash": tx, "log_index": index, "token_address": BASE_USDC,
            "from_address": "0x" + "11" * 20, "to_address": to, "value_text": str(value),
            "value_minor": value, "removed": False}


CHANNELS = [_channel(c) for c in ("ch_s01", "ch_s09", "ch_s18a", "ch_s18b", "ch_s04",
                                  "ch_s05", "ch_s13", "ch_s15", "ch_s03", "ch_s11", "ch_s10",
                                  "ch_s12", "ch_s16", "ch_s17", "ch_s06")]
CHANNELS.append(_channel("ch_crypto_sim", kind="crypto", window=0))

PAYMENTS = [
    _payment("pay_s01_r", 1_000, "ch_s01", status="refunding"),
    _payment("pay_s01_lost", 2_000, "ch_s01", status="refunding"),
    _payment("pay_s09", 1_000, "ch_s09", status="partially_refunded"),
    _payment("pay_s18", 1_000, "ch_s18b", status="partially_refunded"),
    _payment("pay_s04a", 5_000, "ch_s04"),
    _payment("pay_s04b", 5_000, "ch_s04"),
    _payment("pay_s04c", 3_000, "ch_s04"),
    _payment("pay_s13", 1_000, "ch_s13"),
    _payment("pay_s15", 1_000, "ch_s15"),
    _payment("pay_s03", 1_000, "ch_s03"),
    _unreferenced(_payment("pay_s11_late", 4_242, "ch_s11", at="2024-02-20 10:00:00")),
    _unreferenced(_payment("pay_s11_ok", 5_151, "ch_s11")),
    _payment("pay_s07_ok", 1_000_000, "ch_crypto_sim", currency="USDC", ref=TX_S07_OK,
             method="crypto"),
    _payment("pay_s07_stranger", 2_000_000, "ch_crypto_sim", currency="USDC",
             ref=TX_S07_STRANGER, method="crypto"),
    _payment("pay_s10", 1_000, "ch_s10"),
    _unreferenced(_payment("pay_s12_fuzzy", 10_000, "ch_s12")),
    _unreferenced(_payment("pay_s12_ok", 20_000, "ch_s12")),
    _payment("pay_s12_ref", 30_000, "ch_s12"),
    _payment("pay_s16", 5_000, "ch_s16"),
    _payment("pay_s16_over", 2_000, "ch_s16"),
    _payment("pay_s16_failed", 3_000, "ch_s16", status="failed"),
    _payment("pay_s16_cb_only", 4_000, "ch_s16"),
    _payment("pay_s17", 1_000, "ch_s17"),
    _payment("pay_s17_chain", 3_000_000, "ch_crypto_sim", currency="USDC", ref=TX_S17,
             method="crypto", at="2024-03-02 10:00:00"),
]
# s12: ch_s12 charges 1.80 % + 10
PRICES = [{"id": "prc_s12", "subject_type": "channel", "subject_id": "ch_s12", "currency": "USD",
           "rate_bps": 180, "fixed_minor": 10, "valid_from": T0, "valid_to": None,
           "created_at": T0, "updated_at": T0}]
REFUNDS = [_refund("re_s09", "pay_s09", 300), _refund("re_s18", "pay_s18", 300)]

PSP_LINES = [
    _line("L01", "ch_s01", ref="chref-pay_s01_r", amount=1_000),
    # s09: two lines carrying only the platform id, for the payment and for its refund
    _line("L09a", "ch_s09", mref="pay_s09", amount=1_000),
    _line("L09b", "ch_s09", mref="pay_s09", amount=1_000, day="2024-03-02"),
    _line("RL09a", "ch_s09", mref="re_s09", amount=-300, kind="refund", day="2024-03-02"),
    _line("RL09b", "ch_s09", mref="re_s09", amount=-300, kind="refund", day="2024-03-03"),
    # s18: ch_s18a's lines naming ch_s18b's payment and refund by platform id
    _line("L18", "ch_s18a", mref="pay_s18", amount=1_000),
    _line("RL18", "ch_s18a", mref="re_s18", amount=-300, kind="refund"),
    # s04: po_s04's lines net 9_800, its payout row (and the bank) say 10_000; po_s04ok ties
    _line("L04a", "ch_s04", ref="chref-pay_s04a", amount=5_000, fee=100, payout="po_s04"),
    _line("L04b", "ch_s04", ref="chref-pay_s04b", amount=5_000, fee=100, payout="po_s04"),
    _line("P04", "ch_s04", kind="payout", payout="po_s04", amount=10_000, day="2024-03-02"),
    _line("L04c", "ch_s04", ref="chref-pay_s04c", amount=3_000, fee=90, payout="po_s04ok"),
    _line("P04ok", "ch_s04", kind="payout", payout="po_s04ok", amount=2_910, day="2024-03-02"),
    # s05: payout rows with no lines (their gross is the expected credit); po_s05_1 is a
    # prefix of po_s05_10
    _line("P05_1", "ch_s05", kind="payout", payout="po_s05_1", amount=1_000),
    _line("P05_10", "ch_s05", kind="payout", payout="po_s05_10", amount=2_000),
    _line("P05_2", "ch_s05", kind="payout", payout="po_s05_2", amount=3_000),
    # s15: the same reference settled twice on one day
    _line("L15a", "ch_s15", ref="chref-pay_s15", amount=1_000),
    _line("L15b", "ch_s15", ref="chref-pay_s15", amount=1_000),
    # s03: an amount_mismatch (ledger 1_000) and a missing_in_ledger (70) on one day
    _line("L03", "ch_s03", ref="chref-pay_s03", amount=900),
    _line("L03x", "ch_s03", ref="nobody-s03", amount=70),
    # s11: no reference. Valued T+9 on a T+1 channel (transacted on the capture day): no match;
    # transacted before the capture but valued T+1: the fuzzy match
    _line("L11_late", "ch_s11", ref="psp-unknown-s11a", amount=4_242, day="2024-02-29",
          tx_at="2024-02-20 12:00:00", payout_date=date(2024, 2, 29)),
    _line("L11_ok", "ch_s11", ref="psp-unknown-s11b", amount=5_151, day="2024-03-02",
          tx_at="2024-02-25 12:00:00"),
    # s10: pay_s10 matches; ghost-s10 (a payment) and ghost-r-s10 (a refund) settled twice
    _line("L10", "ch_s10", ref="chref-pay_s10", amount=1_000),
    _line("L10a", "ch_s10", ref="ghost-s10", amount=777),
    _line("L10b", "ch_s10", ref="ghost-s10", amount=777, day="2024-03-02"),
    _line("RL10a", "ch_s10", ref="ghost-r-s10", amount=-50, kind="refund"),
    _line("RL10b", "ch_s10", ref="ghost-r-s10", amount=-50, kind="refund", day="2024-03-02"),
    # s12: fees due 190 (10_000), 370 (20_000), 550 (30_000); the fuzzy L12_fuzzy says 999
    _line("L12_fuzzy", "ch_s12", ref="psp-unknown-s12a", amount=10_000, fee=999),
    _line("L12_ok", "ch_s12", ref="psp-unknown-s12b", amount=20_000, fee=370),
    _line("L12_ref", "ch_s12", ref="chref-pay_s12_ref", amount=30_000, fee=550),
    # s16: chargebacks by channel reference, by platform id (more than the payment), of a
    # failed payment, of a payment with no line of its own, of nobody; a fee adjustment
    _line("L16", "ch_s16", ref="chref-pay_s16", amount=5_000),
    _line("L16_over", "ch_s16", ref="chref-pay_s16_over", amount=2_000),
    _line("C16", "ch_s16", ref="chref-pay_s16", amount=-5_000, kind="chargeback",
          day="2024-03-02"),
    _line("C16_over", "ch_s16", mref="pay_s16_over", amount=-2_500, kind="chargeback",
          day="2024-03-02"),
    _line("C16_failed", "ch_s16", mref="pay_s16_failed", amount=-3_000, kind="chargeback"),
    _line("C16_cb_only", "ch_s16", ref="chref-pay_s16_cb_only", amount=-4_000,
          kind="chargeback"),
    _line("C16_ghost", "ch_s16", ref="ghost-cb-s16", amount=-500, kind="chargeback"),
    _line("A16", "ch_s16", ref="ghost-adj-s16", amount=-20, kind="fee_adjustment"),
    # s17: a line settled 03-04 (saying 1_100), a payout whose credit is booked 03-04
    _line("L17", "ch_s17", ref="chref-pay_s17", amount=1_100, day="2024-03-04"),
    _line("P17", "ch_s17", kind="payout", payout="po_s17", amount=2_000, day="2024-03-02"),
    # s06: credited in EUR; never credited (due 03-02, a break from 03-04); not due yet
    _line("P06_cur", "ch_s06", kind="payout", payout="po_s06_cur", amount=1_000),
    _line("P06_nobank", "ch_s06", kind="payout", payout="po_s06_nobank", amount=3_000),
    _line("P06_wait", "ch_s06", kind="payout", payout="po_s06_wait", amount=500,
          day="2024-03-02"),
]
BANK_STATEMENTS = [{"statement_uid": "st_1", "file_id": "f_bank", "statement_index": 0,
                    "format": "camt", "message_type": "camt.053", "account_id": "DE00",
                    "currency": "USD"}]
BANK_LINES = [
    _bank("B04", 10_000, e2e="po_s04"),
    _bank("B04ok", 2_910, e2e="po_s04ok"),
    _bank("B05_1", 1_000, remittance="PAYOUT po_s05_1"),
    _bank("B05_10", 2_000, remittance="PAYOUT po_s05_10"),
    _bank("B05_2", 3_000, remittance="REF/po_s05_2/MARCH"),
    _bank("B17", 2_000, e2e="po_s17", day=date(2024, 3, 4)),
    _bank("B06_cur", 1_000, e2e="po_s06_cur", currency="EUR", account="DE06"),
    _bank("B06_unknown", 4_444, remittance="PAYOUT PO_S06_UNKNOWN", account="DE06"),
    _bank("B06_rent", 5_000, remittance="RENT MARCH", account="DE06"),
    _bank("B06_elsewhere", 4_000, remittance="PAYOUT po_s06_x", account="DE99"),
]
CHAIN_LOGS = [_log(TX_S07_OK, COLLECTION, 1_000_000),
              _log(TX_S07_OK, STRANGER, 100, index=1),  # s08: another transfer in the same tx
              _log(TX_S07_STRANGER, STRANGER, 2_000_000),
              _log(TX_S17, COLLECTION, 3_000_000, at="2024-03-04 09:00:00")]
CHAIN_HEADS = [{"file_id": "f_chain", "network": BASE, "latest_block": 1_000}]

ROWS = {"channels": CHANNELS, "payments": PAYMENTS, "refunds": REFUNDS, "prices": PRICES,
        "psp_lines": PSP_LINES, "bank_statements": BANK_STATEMENTS,
        "bank_statement_lines": BANK_LINES, "chain_logs": CHAIN_LOGS,
        "chain_heads": CHAIN_HEADS}


def _snapshot(warehouse) -> dict:
    # ordered here, not by the engines' collations
    def rows(model, *key):
        return sorted(warehouse.query(f"select * from analytics.{model}"),
                      key=lambda r: tuple(str(r[k]) for k in key))

    return {"matches": rows("fct_reconciliation_matches", "match_id"),
            "breaks": rows("fct_reconciliation_breaks", "break_id"),
            "daily": rows("rpt_reconciliation_daily", "day", "channel", "currency")}


def _build(warehouse, tmp_path_factory, dbt_build) -> dict:
    for name, rows in ROWS.items():
        _insert(warehouse, name, rows)
    work = tmp_path_factory.mktemp(f"recon_{warehouse.engine}")
    snapshots = {}
    for label, as_of in (("first", FIRST_AS_OF), ("second", AS_OF)):
        proc = dbt_build(warehouse, work / label,
                         (*SELECT, "--vars", json.dumps({"recon_as_of": as_of.isoformat()})))
        assert proc.returncode == 0, warehouse.dbt_output[-8000:]
        snapshots[label] = _snapshot(warehouse)
        if label == "first":
            # as a table built before psp_line_id existed: the incremental run appends it
            warehouse.execute_many(
                "ALTER TABLE analytics.fct_reconciliation_breaks DROP COLUMN psp_line_id", [])
    return snapshots


@pytest.fixture(scope="module")
def recon_duckdb(duckdb_warehouse, tmp_path_factory, dbt_build):
    return _build(duckdb_warehouse, tmp_path_factory, dbt_build)


@pytest.fixture(scope="module")
def recon_postgres(postgres_warehouse, tmp_path_factory, dbt_build):
    return _build(postgres_warehouse, tmp_path_factory, dbt_build)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def recon(request):
    return request.getfixturevalue(f"recon_{request.param}")["second"]


def _int(v):
    assert v is None or isinstance(v, (int, Decimal)), f"money came back as {type(v).__name__}"
    return None if v is None else int(v)


def _of(rows, channel):
    return [r for r in rows if r["channel"] == channel]


def _matches(recon, channel):
    return sorted((m["match_type"], m["refund_id"] or m["payment_id"] or m["channel_reference"],
                   m["psp_line_id"]) for m in _of(recon["matches"], channel))


def _breaks(recon, channel):
    return sorted((b["break_type"], b["refund_id"] or b["payment_id"] or b["channel_reference"])
                  for b in _of(recon["breaks"], channel))


# --- the scenarios ------------------------------------------------------------------------------


def test_s01_a_refunding_payment_was_captured(recon):
    assert _matches(recon, "ch_s01") == [("exact_reference", "pay_s01_r", "L01")]
    assert _breaks(recon, "ch_s01") == [("missing_in_channel", "pay_s01_lost")]


def test_s09_a_second_line_naming_the_same_platform_id_is_a_duplicate(recon):
    assert _matches(recon, "ch_s09") == [("exact_reference", "pay_s09", "L09a"),
                                         ("exact_reference", "re_s09", "RL09a")]
    assert _breaks(recon, "ch_s09") == [("duplicate_in_channel", "pay_s09"),
                                        ("duplicate_in_channel", "re_s09")]


def test_s18_a_platform_id_names_a_payment_of_the_lines_channel_only(recon):
    assert _matches(recon, "ch_s18a") == [] and _matches(recon, "ch_s18b") == []
    # the lines are nobody's on ch_s18a; ch_s18b's payment and refund have no line
    assert _breaks(recon, "ch_s18a") == [("missing_in_ledger", None), ("missing_in_ledger", None)]
    assert _breaks(recon, "ch_s18b") == [("missing_in_channel", "pay_s18"),
                                         ("missing_in_channel", "re_s18")]


def test_s04_a_payout_credit_is_checked_against_the_sum_of_its_lines(recon):
    assert _matches(recon, "ch_s04") == [
        ("exact_reference", "pay_s04a", "L04a"), ("exact_reference", "pay_s04b", "L04b"),
        ("exact_reference", "pay_s04c", "L04c"), ("payout_batch", "po_s04ok", "P04ok")]
    [payout] = _of(recon["breaks"], "ch_s04")
    # the bank credited the payout row's 10_000; its lines net 4_900 + 4_900
    assert (payout["break_type"], payout["channel_reference"], payout["statement_line_id"],
            _int(payout["ledger_amount_minor"]), _int(payout["channel_amount_minor"]),
            _int(payout["delta_minor"])) == ("payout_mismatch", "po_s04", "B04", 9_800, 10_000,
                                             200)


def test_s05_a_payout_id_is_a_whole_token_of_the_remittance(recon):
    assert {(m["channel_reference"], m["statement_line_id"])
            for m in _of(recon["matches"], "ch_s05")} == {
        ("po_s05_1", "B05_1"), ("po_s05_10", "B05_10"), ("po_s05_2", "B05_2")}
    assert _breaks(recon, "ch_s05") == []


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_s13_missing_in_channel_is_first_seen_the_day_it_is_first_shown(request, engine):
    """Captured 03-01 on a T+1 channel, grace 1 day: pending through 03-03, a break from 03-04."""
    builds = request.getfixturevalue(f"recon_{engine}")
    first, second = builds["first"], builds["second"]
    assert _of(first["breaks"], "ch_s13") == []
    [pending] = _of(first["daily"], "ch_s13")
    assert (pending["day"], pending["pending_count"], pending["break_count"]) == \
        (date(2024, 3, 1), 1, 0)
    [missing] = _of(second["breaks"], "ch_s13")
    assert (missing["break_type"], missing["payment_id"], missing["first_seen"],
            missing["age_days"], missing["status"]) == \
        ("missing_in_channel", "pay_s13", AS_OF, 0, "open")
    [shown] = _of(second["daily"], "ch_s13")
    assert (shown["day"], shown["pending_count"], shown["breaks_missing_in_channel"]) == \
        (AS_OF, 0, 1)
    # the same rule for every missing_in_channel of the run, payments' and refunds' alike
    missing = [b for b in second["breaks"]
               if b["break_type"] == "missing_in_channel" and b["channel"] != "ch_s11"]
    assert {(b["refund_id"] or b["payment_id"]) for b in missing} == {
        "pay_s01_lost", "pay_s13", "pay_s18", "re_s18", "pay_s16_cb_only"}
    assert {b["first_seen"] for b in missing} == {AS_OF}


def test_s15_a_break_raised_from_a_psp_line_names_the_line(recon):
    named = {(b["break_type"], b["channel"]): b["psp_line_id"] for b in recon["breaks"]}
    assert named[("duplicate_in_channel", "ch_s15")] == "L15b"  # L15a is the match
    assert named[("amount_mismatch", "ch_s03")] == "L03"
    assert named[("missing_in_ledger", "ch_s03")] == "L03x"
    assert named[("payout_mismatch", "ch_s04")] == "P04"  # the payout row
    assert {b["psp_line_id"] for b in _of(recon["breaks"], "ch_s09")} == {"L09b", "RL09b"}
    assert {b["psp_line_id"] for b in _of(recon["breaks"], "ch_s18a")} == {"L18", "RL18"}
    # breaks with no line behind them name none
    assert {b["psp_line_id"] for b in recon["breaks"]
            if b["break_type"] in ("missing_in_channel", "recipient_mismatch")} == {None}
    # the column was appended to the table built before it (on_schema_change)
    assert list(recon["breaks"][0])[-2:] == ["refund_id", "psp_line_id"]


def test_s03_the_daily_report_carries_the_break_amount_per_type(recon):
    [day] = [r for r in recon["daily"] if (r["day"], r["channel"]) == (date(2024, 3, 1), "ch_s03")]
    amounts = {t: _int(day[f"breaks_{t}_amount_minor"]) for t in BREAK_TYPES}
    # amount_mismatch: the ledger's 1_000 (the line says 900); missing_in_ledger: the line's 70
    assert amounts == {t: 0 for t in BREAK_TYPES} | {"amount_mismatch": 1_000,
                                                      "missing_in_ledger": 70}
    assert (day["breaks_amount_mismatch"], day["breaks_missing_in_ledger"], day["break_count"],
            _int(day["break_amount_minor"])) == (1, 1, 2, 1_070)
    for row in recon["daily"]:  # every day and channel: the types add up
        assert sum(_int(row[f"breaks_{t}_amount_minor"]) for t in BREAK_TYPES) == \
            _int(row["break_amount_minor"])
        assert sum(row[f"breaks_{t}"] for t in BREAK_TYPES) == row["break_count"]
    totals = defaultdict(int)
    for b in recon["breaks"]:
        totals[b["break_type"]] += _int(b["ledger_amount_minor"]
                                        if b["ledger_amount_minor"] is not None
                                        else b["channel_amount_minor"])
    assert {t: sum(_int(r[f"breaks_{t}_amount_minor"]) for r in recon["daily"])
            for t in BREAK_TYPES} == {t: totals[t] for t in BREAK_TYPES}


def test_s11_fuzzy_matching_takes_the_lines_value_date(recon):
    # L11_ok: transacted 02-25, valued 03-02 = T+1 of pay_s11_ok's capture: the fuzzy match
    assert _matches(recon, "ch_s11") == [("fuzzy", "pay_s11_ok", "L11_ok")]
    # L11_late: transacted on pay_s11_late's capture day but valued T+9 on a T+1 channel
    breaks = {(b["break_type"], b["payment_id"] or b["psp_line_id"]): b
              for b in _of(recon["breaks"], "ch_s11")}
    assert set(breaks) == {("missing_in_ledger", "L11_late"),
                           ("missing_in_channel", "pay_s11_late")}
    assert breaks[("missing_in_ledger", "L11_late")]["candidates"] is None
    assert breaks[("missing_in_channel", "pay_s11_late")]["first_seen"] == date(2024, 2, 23)


def test_s07_a_crypto_transfer_must_reach_the_channels_collection_address(recon):
    assert [m for m in _matches(recon, "ch_crypto_sim") if m[1].startswith("pay_s07")] == \
        [("chain", "pay_s07_ok", None)]
    [stranger] = _of(recon["breaks"], "ch_crypto_sim")
    assert (stranger["break_type"], stranger["payment_id"], stranger["chain_tx_hash"],
            _int(stranger["ledger_amount_minor"]), _int(stranger["channel_amount_minor"])) == \
        ("recipient_mismatch", "pay_s07_stranger", TX_S07_STRANGER, 2_000_000, 2_000_000)


def test_s08_a_matched_chain_payment_has_no_break_for_its_transactions_other_logs(recon):
    """TX_S07_OK moves 1 USDC to the collection address (pay_s07_ok) and 0.0001 USDC elsewhere:
    the payment matches its log, and the other log is not a recipient_mismatch of it."""
    assert not [b for b in recon["breaks"] if b["payment_id"] == "pay_s07_ok"]
    assert [m for m in _matches(recon, "ch_crypto_sim") if m[1] == "pay_s07_ok"] == \
        [("chain", "pay_s07_ok", None)]


def test_s10_an_unknown_reference_settled_twice_is_a_duplicate(recon):
    assert _matches(recon, "ch_s10") == [("exact_reference", "pay_s10", "L10")]
    found = {(b["break_type"], b["psp_line_id"]): b for b in _of(recon["breaks"], "ch_s10")}
    assert set(found) == {("missing_in_ledger", "L10a"), ("duplicate_in_channel", "L10b"),
                          ("missing_in_ledger", "RL10a"), ("duplicate_in_channel", "RL10b")}
    dup = found[("duplicate_in_channel", "L10b")]
    assert (dup["channel_reference"], dup["payment_id"], _int(dup["ledger_amount_minor"]),
            _int(dup["channel_amount_minor"]), dup["first_seen"]) == \
        ("ghost-s10", None, None, 777, date(2024, 3, 2))
    # the first line's break keeps its id: md5 of type and line
    for kind, line in (("missing_in_ledger", "L10a"), ("duplicate_in_channel", "L10b")):
        assert found[(kind, line)]["break_id"] == hashlib.md5(f"{kind}:{line}".encode()).hexdigest()


def test_s12_a_fuzzy_matched_lines_fee_is_checked(recon):
    assert _matches(recon, "ch_s12") == [("exact_reference", "pay_s12_ref", "L12_ref"),
                                         ("fuzzy", "pay_s12_fuzzy", "L12_fuzzy"),
                                         ("fuzzy", "pay_s12_ok", "L12_ok")]
    [fee] = _of(recon["breaks"], "ch_s12")
    assert (fee["break_type"], fee["payment_id"], fee["psp_line_id"], fee["channel_reference"],
            _int(fee["ledger_amount_minor"]), _int(fee["channel_amount_minor"]),
            _int(fee["delta_minor"])) == \
        ("fee_mismatch", "pay_s12_fuzzy", "L12_fuzzy", "psp-unknown-s12a", 190, 999, 809)


def test_s16_a_chargeback_reconciles_against_the_payment_it_names(recon):
    assert _matches(recon, "ch_s16") == [
        ("exact_reference", "pay_s16", "C16"), ("exact_reference", "pay_s16", "L16"),
        ("exact_reference", "pay_s16_cb_only", "C16_cb_only"),
        ("exact_reference", "pay_s16_over", "L16_over")]
    [cb] = [m for m in _of(recon["matches"], "ch_s16") if m["psp_line_id"] == "C16"]
    assert (_int(cb["amount_minor"]), cb["matched_on"]) == (-5_000, date(2024, 3, 2))
    found = {b["psp_line_id"] or b["payment_id"]: b for b in _of(recon["breaks"], "ch_s16")}
    assert {k: b["break_type"] for k, b in found.items()} == {
        "C16_over": "amount_mismatch", "C16_failed": "status_mismatch",
        "C16_ghost": "missing_in_ledger",
        # a chargeback is no evidence that the payment itself settled
        "pay_s16_cb_only": "missing_in_channel"}
    assert (found["C16_over"]["payment_id"], _int(found["C16_over"]["ledger_amount_minor"]),
            _int(found["C16_over"]["channel_amount_minor"]),
            _int(found["C16_over"]["delta_minor"])) == ("pay_s16_over", -2_000, -2_500, -500)
    ghost = found["C16_ghost"]
    assert (ghost["payment_id"], ghost["channel_reference"], ghost["ledger_amount_minor"],
            _int(ghost["channel_amount_minor"])) == (None, "ghost-cb-s16", None, -500)
    # the fee adjustment is neither matched nor a break
    assert "A16" not in {r["psp_line_id"] for r in recon["matches"] + recon["breaks"]}


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_s17_a_run_for_a_past_day_sees_nothing_dated_after_it(request, engine):
    builds = request.getfixturevalue(f"recon_{engine}")
    first, second = builds["first"], builds["second"]
    for build, as_of in ((first, FIRST_AS_OF), (second, AS_OF)):
        assert all(b["first_seen"] <= as_of and b["age_days"] >= 0 for b in build["breaks"])
        assert all(m["matched_on"] <= as_of for m in build["matches"])
    # 03-03: L17 (03-04), B17 (booked 03-04) and TX_S17's block (03-04) are not seen yet;
    # pay_s17 and pay_s17_chain are still pending
    assert _of(first["matches"], "ch_s17") == [] and _of(first["breaks"], "ch_s17") == []
    assert "pay_s17_chain" not in {r["payment_id"] for r in first["matches"] + first["breaks"]}
    assert {(r["channel"], r["day"], r["pending_count"]) for r in first["daily"]
            if r["channel"] == "ch_s17" or r["day"] == date(2024, 3, 2)} >= {
        ("ch_s17", date(2024, 3, 1), 1), ("ch_crypto_sim", date(2024, 3, 2), 1)}
    # 03-04: they are
    assert _matches(second, "ch_s17") == [("payout_batch", "po_s17", "P17")]
    [late] = _of(second["breaks"], "ch_s17")
    assert (late["break_type"], late["payment_id"], late["first_seen"], late["age_days"]) == \
        ("amount_mismatch", "pay_s17", AS_OF, 0)
    assert [(m["match_type"], m["matched_on"]) for m in second["matches"]
            if m["payment_id"] == "pay_s17_chain"] == [("chain", AS_OF)]


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_s06_every_payout_and_payout_credit_is_accounted_for(request, engine):
    builds = request.getfixturevalue(f"recon_{engine}")
    first, second = builds["first"], builds["second"]
    assert _matches(second, "ch_s06") == []

    def found(build):
        return {(b["break_type"], b["channel_reference"], b["statement_line_id"]):
                (_int(b["ledger_amount_minor"]), _int(b["channel_amount_minor"]),
                 _int(b["delta_minor"]), b["currency"], b["psp_line_id"], b["first_seen"])
                for b in _of(build["breaks"], "ch_s06")}

    cur = ("currency_mismatch", "po_s06_cur", "B06_cur")
    unknown = ("missing_in_ledger", "PO_S06_UNKNOWN", "B06_unknown")
    unpaid = ("payout_mismatch", "po_s06_nobank", None)
    assert found(first) == {
        cur: (1_000, 1_000, 0, "USD", "P06_cur", date(2024, 3, 3)),
        unknown: (None, 4_444, None, "USD", None, date(2024, 3, 3))}
    # po_s06_nobank was due 03-02 (T+1), grace 1 day: a break from 03-04; po_s06_wait from 03-05
    assert found(second) == found(first) | {
        unpaid: (3_000, None, None, "USD", "P06_nobank", AS_OF)}
    [b] = [b for b in second["breaks"] if b["channel_reference"] == "po_s06_nobank"]
    # keyed by the payout (channel, payout id), not the payout row's line id, which names a file
    # version (third reconciliation audit: a re-sent file keeps the payout's break id)
    assert b["break_id"] == hashlib.md5(
        b"payout_mismatch:unpaid:payout:ch_s06:po_s06_nobank").hexdigest()
    # the rent and a payout-looking credit on an account no payout reaches are nobody's break
    assert {b["statement_line_id"] for b in second["breaks"]} & {"B06_rent", "B06_elsewhere"} \
        == set()


# --- both engines, row for row ------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("build", ["first", "second"])
@pytest.mark.parametrize("table", ["matches", "breaks", "daily"])
def test_duckdb_and_postgres_give_identical_rows(recon_duckdb, recon_postgres, build, table):
    duck, pg = recon_duckdb[build][table], recon_postgres[build][table]
    assert duck or table == "breaks" and build == "first"
    assert [list(r) for r in duck] == [list(r) for r in pg]
    assert duck == pg
