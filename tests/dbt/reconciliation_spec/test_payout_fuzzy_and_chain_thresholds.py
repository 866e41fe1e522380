"""Two sentences of reconciliation.md the earlier scenarios left untested:

- Match order 3 for payouts: a bank credit that carries no payout reference is matched to a PSP
  payout by "same currency and amount, value date within the channel's settlement window
  (T+0..T+N days, per channel), exactly one candidate -> matched, marked `fuzzy`. Two or more
  candidates: no match, an `ambiguous` break listing them." (ch_pz, T+2, payouts settled 03-01.)
  A credit naming a payout id the files do not know is never a fuzzy partner: it says it is
  another payout (missing_in_ledger, as before), and the payout it could have fitted stays
  unpaid. A credit outside the window, or in another currency, is no candidate.
- `chain_unconfirmed`: "fewer confirmations than the network's threshold" - per network
  (seed ref_chain_networks): Ethereum mainnet 12, Base 10. An ETH Transfer with 11
  confirmations is unconfirmed; a USDC Transfer on Base with 11 is a match.
- A Transfer log without its block's time (an eth_getLogs answer or ethereum-etl's logs.csv
  carries none) still counts, dated when its file was loaded: a payment's log matches, and an
  unknown Transfer into the collection address is missing_in_ledger.

Raw rows inserted with tests/dbt/conftest.py's insert_raw; the reconciliation models built by
dbt on DuckDB and Postgres for 03-05 (grace 1 day, the default: a payout due 03-02 with no
credit is unpaid from 03-04), then - after a late statement brings po_z10's unreferenced
credit and po_z2's referenced one - for 03-05 twice (the second run idempotent: the same matches and break ids).
"""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest

from tests.dbt.conftest import built_on_both_engines, insert_raw
from tests.dbt.reconciliation_spec.phases import recon_snapshot

T0 = datetime(2024, 1, 1)
AS_OF = "2024-03-05"
SELECT = ("--select", "+fct_reconciliation_breaks", "+rpt_reconciliation_daily",
          "--exclude", "test_type:singular")
CH, CRYPTO = "ch_pz", "ch_crypto_sim"
ACCOUNT = "DE10FUZZY"
D1, D2, D3, D4 = (date(2024, 3, d) for d in range(1, 5))


def _payout(n: int, payout_id: str, amount: int, payout_date: date = D2) -> dict:
    # a payout row with no lines: its own gross is the credit expected
    return {"psp_line_id": f"PZ{n}", "file_id": "f_psp_pz", "format": "psp_csv",
            "line_number": n + 1, "settlement_date": D1, "record_type": "payout",
            "channel": CH, "transaction_at": datetime(2024, 3, 1, 12), "currency": "USD",
            "gross_minor": amount, "fee_minor": 0, "net_minor": amount, "payout_id": payout_id,
            "payout_date": payout_date}


def _line(uid: str, n: int, amount: int, day: date, *, currency="USD", e2e=None,
          remittance="SETTLEMENT ACQUIRER PZ") -> dict:
    return {"statement_line_id": f"{uid}:{n}", "statement_uid": uid, "file_id": f"f_{uid}",
            "statement_index": 0, "line_number": n, "account_id": ACCOUNT, "booking_date": day,
            "value_date": day, "amount_minor": amount, "currency": currency, "status": "booked",
            "bank_reference": f"BR-{uid}-{n}", "entry_reference": None, "end_to_end_id": e2e,
            "customer_reference": None, "remittance": remittance, "transaction_code": None}


def _statement(uid: str) -> dict:
    return {"statement_uid": uid, "file_id": f"f_{uid}", "statement_index": 0,
            "format": "camt", "message_type": "camt.053", "account_id": ACCOUNT,
            "currency": "USD"}


PAYOUTS = [
    _payout(1, "po_z1", 1_100),   # one unreferenced credit of its amount: fuzzy
    _payout(2, "po_z2", 2_200),   # po_z2 and po_z3: two payouts for one credit: ambiguous
    _payout(3, "po_z3", 2_200),
    _payout(4, "po_z4", 3_300),   # two credits for one payout: ambiguous
    _payout(5, "po_z5", 4_400),   # its credit comes 03-04, after the window (to 03-03)
    _payout(6, "po_z6", 5_500),   # the only credit of its amount names po_z_ghost
    _payout(7, "po_z7", 6_600),   # credited by reference: payout_batch (the account is ours)
    _payout(8, "po_z8", 7_700),   # the only credit of its amount is in EUR
    _payout(10, "po_z10", 8_800),  # its unreferenced credit arrives late (second load)
]

LINES = [
    _line("Z1", 0, 1_100, D2),
    _line("Z1", 1, 2_200, D2),
    _line("Z1", 2, 3_300, D2),
    _line("Z1", 3, 3_300, D3),
    _line("Z1", 4, 4_400, D4),
    _line("Z1", 5, 5_500, D2, remittance="PAYOUT po_z_ghost"),
    _line("Z1", 6, 6_600, D2, e2e="po_z7"),
    _line("Z1", 7, 7_700, D2, currency="EUR"),
]
LATE_LINES = [
    _line("Z2", 0, 8_800, D3),
    # po_z2's own credit, by reference: Z1:1 is left with one candidate, po_z3
    _line("Z2", 1, 2_200, D3, e2e="po_z2"),
]

# --- chain: one threshold per network -----------------------------------------------------------

COLLECTION = "0xcf2f5e3ce56bdea96e82153b27612ccf9f75dc7d"  # ch_crypto_sim's (ref_chain_addresses)
BASE_USDC = "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"
ETH_TOKEN = "0x" + "0" * 40  # native ETH as indexers list it (ref_chain_tokens)
HEAD = 1_000
TX = {k: "0x" + k * 32 for k in ("c1", "c2", "c3", "c4", "c5")}
LOADED = datetime(2024, 3, 2, 8)  # when the Base file was loaded (its chain_heads row)
ONE_ETH = 10 ** 18


def _crypto(pid: str, amount: int, currency: str, tx: str) -> dict:
    at = datetime(2024, 3, 1, 10)
    return {"id": pid, "merchant_id": "mer_a", "merchant_reference": f"order-{pid}",
            "amount_minor": amount, "currency": currency, "status": "success",
            "payment_method_type": "crypto", "channel_id": CRYPTO, "channel_reference": tx,
            "risk_decision": "approve", "customer_id": "cus_1", "refunded_minor": 0,
            "captured_at": at, "created_at": at, "updated_at": at}


def _log(tx: str, value: int, block: int, network: str, token: str,
         at: datetime | None = datetime(2024, 3, 1, 12)) -> dict:
    return {"chain_log_id": f"{tx}:0", "file_id": f"f_chain_{network}", "network": network,
            "block_number": block, "block_hash": None,
            "block_timestamp": at, "transaction_hash": tx, "log_index": 0,
            "token_address": token, "from_address": "0x" + "11" * 20, "to_address": COLLECTION,
            "value_text": str(value), "value_minor": value, "removed": False}


CRYPTO_PAYMENTS = [
    _crypto("pay_n_eth11", ONE_ETH, "ETH", TX["c1"]),
    _crypto("pay_n_eth12", 2 * ONE_ETH, "ETH", TX["c2"]),
    _crypto("pay_n_base11", 1_000_000, "USDC", TX["c3"]),
    _crypto("pay_n_notime", 3_000_000, "USDC", TX["c4"]),
]
CHAIN_LOGS = [
    _log(TX["c1"], ONE_ETH, HEAD - 10, "eip155:1", ETH_TOKEN),       # 11 confirmations
    _log(TX["c2"], 2 * ONE_ETH, HEAD - 11, "eip155:1", ETH_TOKEN),   # 12
    _log(TX["c3"], 1_000_000, HEAD - 10, "eip155:8453", BASE_USDC),  # 11
    # no block time in the file: dated when it was loaded (LOADED)
    _log(TX["c4"], 3_000_000, HEAD - 20, "eip155:8453", BASE_USDC, at=None),
    _log(TX["c5"], 4_000_000, HEAD - 20, "eip155:8453", BASE_USDC, at=None),  # no payment
]
CHAIN_HEADS = [{"file_id": f"f_chain_{n}", "network": n, "latest_block": HEAD,
                "seen_at": LOADED} for n in ("eip155:1", "eip155:8453")]


def _channel(cid: str, window: int, kind: str) -> dict:
    return {"id": cid, "name": cid, "channel_type": kind, "status": "active",
            "settlement_window_days": window, "created_at": T0, "updated_at": T0}


ROWS = {"channels": [_channel(CH, 2, "card"), _channel(CRYPTO, 0, "crypto")],
        "payments": CRYPTO_PAYMENTS, "psp_lines": PAYOUTS,
        "bank_statements": [_statement("Z1")], "bank_statement_lines": LINES,
        "chain_logs": CHAIN_LOGS, "chain_heads": CHAIN_HEADS}


def _build(warehouse, tmp_path_factory, dbt_build) -> list[dict]:
    for table, rows in ROWS.items():
        insert_raw(warehouse, table, rows, T0)
    work = tmp_path_factory.mktemp(f"payout_fuzzy_{warehouse.engine}")
    snapshots = []
    for run in ("before", "late", "again"):
        if run == "late":  # a late statement of 03-03 brings po_z10's credit
            insert_raw(warehouse, "bank_statements", [_statement("Z2")], T0)
            insert_raw(warehouse, "bank_statement_lines", LATE_LINES, T0)
        proc = dbt_build(warehouse, work / run,
                         (*SELECT, "--vars", json.dumps({"recon_as_of": AS_OF})))
        assert proc.returncode == 0, warehouse.dbt_output[-8000:]
        snapshots.append(recon_snapshot(warehouse.query, [CH, CRYPTO]))
    return snapshots


fuzzy_duckdb, fuzzy_postgres, runs = built_on_both_engines("fuzzy", _build, name="runs")


def _int(v):
    return None if v is None else int(v)


def _payout_matches(snap) -> list[tuple]:
    return sorted((m["match_type"], m["channel_reference"], m["statement_line_id"],
                   int(m["amount_minor"]), m["matched_on"], m["payment_id"])
                  for m in snap["matches"] if m["channel"] == CH)


def _payout_breaks(snap) -> list[tuple]:
    return sorted(((b["break_type"], b["channel_reference"], b["statement_line_id"],
                   _int(b["ledger_amount_minor"]), _int(b["channel_amount_minor"]),
                   b["first_seen"], b["candidates"], b["status"])
                   for b in snap["breaks"] if b["channel"] == CH), key=str)


def test_payouts_without_a_reference_match_by_amount_inside_the_window(runs):
    """One candidate each way: fuzzy (payment_id NULL, as a payout row has none); the payout
    credited by reference stays a payout_batch match."""
    before = runs[0]
    assert _payout_matches(before) == [
        ("fuzzy", "po_z1", "Z1:0", 1_100, D2, None),
        ("payout_batch", "po_z7", "Z1:6", 6_600, D2, None),
    ]


def test_several_candidates_are_one_ambiguous_break_listing_them(runs):
    """A credit fitting two payouts: ambiguous on the credit, listing the payouts; a payout
    fitting two credits: ambiguous on the payout, listing the credits (first seen when the
    first was booked). Neither side is matched, and no payout_mismatch is raised for a payout
    whose candidates stand."""
    breaks = _payout_breaks(runs[0])
    assert ("ambiguous", None, "Z1:1", None, 2_200, D2, "po_z2,po_z3", "open") in breaks
    assert ("ambiguous", "po_z4", None, 3_300, None, D2, "Z1:2,Z1:3", "open") in breaks
    # nothing else names those payouts or credits (po_z1 and Z1:0 are the fuzzy match)
    fitted = {"po_z1", "po_z2", "po_z3", "po_z4", "Z1:0", "Z1:1", "Z1:2", "Z1:3"}
    assert [b for b in breaks if b[0] != "ambiguous" and {b[1], b[2]} & fitted] == []


def test_no_candidate_outside_the_window_in_another_currency_or_naming_another_payout(runs):
    """po_z5's credit is valued 03-04, after T+2 (03-03); po_z8's only credit of its amount is
    in EUR; po_z6's is a credit naming po_z_ghost, which the files do not know
    (missing_in_ledger). Each of those payouts is unpaid once due + grace has passed (03-04);
    the two credits without a reference that fit nothing raise nothing (an unrelated credit is
    never a break)."""
    breaks = _payout_breaks(runs[0])
    unpaid = sorted(b[1] for b in breaks if b[0] == "payout_mismatch")
    assert unpaid == ["po_z10", "po_z5", "po_z6", "po_z8"]
    assert all(b[2] is None and b[4] is None and b[5] == D4 for b in breaks
               if b[0] == "payout_mismatch")
    assert ("missing_in_ledger", "po_z_ghost", "Z1:5", None, 5_500, D2, None, "open") in breaks
    assert [b for b in breaks if b[2] in ("Z1:4", "Z1:7")] == []
    assert len(breaks) == 7  # 2 ambiguous, 4 unpaid, 1 missing_in_ledger


def test_a_late_unreferenced_credit_resolves_the_unpaid_payout_by_its_fuzzy_match(runs):
    before, late, _again = runs
    assert ("fuzzy", "po_z10", "Z2:0", 8_800, D3, None) not in _payout_matches(before)
    assert ("fuzzy", "po_z10", "Z2:0", 8_800, D3, None) in _payout_matches(late)
    [match] = [m for m in late["matches"] if m["channel_reference"] == "po_z10"]
    [unpaid] = [b for b in late["breaks"]
                if b["channel_reference"] == "po_z10" and b["break_type"] == "payout_mismatch"]
    assert (unpaid["status"], unpaid["resolved_at"], unpaid["resolved_by"]) == (
        "resolved", date(2024, 3, 5), f"match:{match['match_id']}")
    assert [b for b in late["breaks"] if b["status"] == "open" and b["channel"] == CH
            and b["channel_reference"] == "po_z10"] == []


def test_an_ambiguity_a_later_credit_settles_resolves_by_the_match_it_leaves(runs):
    """po_z2 credited by reference (Z2:1, late): Z1:1 fits only po_z3 now, a fuzzy match, and
    the ambiguous break on Z1:1 is resolved by that match (never deleted)."""
    _before, late, _again = runs
    matches = _payout_matches(late)
    assert ("payout_batch", "po_z2", "Z2:1", 2_200, D3, None) in matches
    assert ("fuzzy", "po_z3", "Z1:1", 2_200, D2, None) in matches
    [fuzzy] = [m for m in late["matches"] if m["statement_line_id"] == "Z1:1"]
    [ambiguous] = [b for b in late["breaks"] if b["break_type"] == "ambiguous"
                   and b["statement_line_id"] == "Z1:1"]
    assert (ambiguous["status"], ambiguous["resolved_by"], ambiguous["candidates"]) == (
        "resolved", f"match:{fuzzy['match_id']}", "po_z2,po_z3")


def test_the_confirmation_threshold_is_the_networks(runs):
    """Ethereum mainnet 12: 11 confirmations are chain_unconfirmed, 12 a match; Base 10: 11
    confirmations are a match."""
    snap = runs[0]
    matched = sorted(m["payment_id"] for m in snap["matches"]
                     if m["channel"] == CRYPTO and m["match_type"] == "chain")
    assert matched == ["pay_n_base11", "pay_n_eth12", "pay_n_notime"]
    assert sorted((b["break_type"], b["payment_id"], b["chain_tx_hash"]) for b in snap["breaks"]
                  if b["channel"] == CRYPTO and b["chain_tx_hash"] != TX["c5"]) == [
        ("chain_unconfirmed", "pay_n_eth11", TX["c1"])]


def test_a_log_without_its_block_time_is_dated_when_its_file_was_loaded(runs):
    """eth_getLogs answers and ethereum-etl's logs.csv carry no block time: such a log still
    reconciles (it used to drop out: the payment was missing_in_channel and an unknown Transfer
    raised nothing), dated by its file's load."""
    snap = runs[0]
    [match] = [m for m in snap["matches"] if m["payment_id"] == "pay_n_notime"]
    assert (match["match_type"], match["chain_tx_hash"], match["matched_on"]) == (
        "chain", TX["c4"], LOADED.date())
    assert [b for b in snap["breaks"] if b["payment_id"] == "pay_n_notime"] == []
    [unknown] = [b for b in snap["breaks"] if b["chain_tx_hash"] == TX["c5"]]
    assert (unknown["break_type"], unknown["payment_id"], _int(unknown["channel_amount_minor"]),
            unknown["first_seen"]) == ("missing_in_ledger", None, 4_000_000, LOADED.date())


def test_a_rerun_of_the_day_gives_the_same_matches_and_break_ids(runs):
    _before, late, again = runs
    assert [m["match_id"] for m in late["matches"]] == [m["match_id"] for m in again["matches"]]
    assert ([(b["break_id"], b["status"], b["resolved_by"]) for b in late["breaks"]]
            == [(b["break_id"], b["status"], b["resolved_by"]) for b in again["breaks"]])


@pytest.mark.postgres
def test_the_engines_agree(fuzzy_duckdb, fuzzy_postgres):
    def ids(snap):
        return ([m["match_id"] for m in snap["matches"]],
                [(b["break_id"], b["break_type"], b["status"], b["candidates"])
                 for b in snap["breaks"]])

    assert [ids(s) for s in fuzzy_duckdb] == [ids(s) for s in fuzzy_postgres]
