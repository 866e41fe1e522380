"""A Transfer log seen in two blocks (reconciliation.md: a chain payment "matches a Transfer log
by transaction hash"; `chain_reorged`: "the log was removed by a reorg"). Two eth_getLogs polls
straddle a reorg: the first sees the transaction in block 100, the second in block 101, and no
removal ever comes (eth_getLogs never reports one). A transaction is in one block of the
canonical chain, so the copy seen last is the log and the earlier one counts as reorged:

- a payment's transaction is one chain match, not a match plus a `duplicate_in_channel`;
- an unknown Transfer into the collection address is one `missing_in_ledger` break (it was two
  rows with one break_id, and dbt's unique test failed the build);
- a transaction reorged twice with both removals seen (no third block yet) is one
  `chain_reorged` break of its payment (two rows with one id before, failing the build too).

DuckDB and Postgres, the engines agreeing."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from tests.dbt.conftest import built_on_both_engines, insert_raw
from tests.dbt.reconciliation_spec.phases import recon_snapshot

T0 = datetime(2024, 1, 1)
AS_OF = "2024-03-04"
SELECT = ("--select", "+fct_reconciliation_breaks", "+rpt_reconciliation_daily",
          "--exclude", "test_type:singular")
CRYPTO = "ch_crypto_sim"
BASE = "eip155:8453"
BASE_USDC = "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"
COLLECTION = "0xcf2f5e3ce56bdea96e82153b27612ccf9f75dc7d"  # seed ref_chain_addresses
TX = {k: "0x" + k * 32 for k in ("e1", "e2", "e3")}
HASH = {100: "0x" + "a1" * 32, 101: "0x" + "a2" * 32}
FIRST_POLL, SECOND_POLL = datetime(2024, 3, 1, 13), datetime(2024, 3, 1, 14)


def _payment(pid: str, amount: int, tx: str) -> dict:
    at = datetime(2024, 3, 1, 10)
    return {"id": pid, "merchant_id": "mer_a", "merchant_reference": f"order-{pid}",
            "amount_minor": amount, "currency": "USDC", "status": "success",
            "payment_method_type": "crypto", "channel_id": CRYPTO, "channel_reference": tx,
            "risk_decision": "approve", "customer_id": "cus_1", "refunded_minor": 0,
            "captured_at": at, "created_at": at, "updated_at": at}


def _log(tx: str, value: int, block: int, poll: str, *, first_block: int = 100,
         removed: bool = False) -> dict:
    """A log row as the loader writes it: `network:tx:index` for the log's first block,
    `...@<block hash>` for another, `:removed` for a removal."""
    base = f"{BASE}:{tx}:0" + ("" if block == first_block else f"@{HASH[block]}")
    return {"chain_log_id": base + (":removed" if removed else ""), "file_id": poll,
            "network": BASE, "block_number": block, "block_hash": HASH[block],
            "block_timestamp": datetime(2024, 3, 1, 12), "transaction_hash": tx,
            "log_index": 0, "token_address": BASE_USDC, "from_address": "0x" + "11" * 20,
            "to_address": COLLECTION, "value_text": str(value), "value_minor": value,
            "removed": removed}


PAYMENTS = [_payment("pay_e1", 5_000_000, TX["e1"]), _payment("pay_e3", 2_000_000, TX["e3"])]
FIRST = [_log(TX["e1"], 5_000_000, 100, "f_poll_1"), _log(TX["e2"], 7_000_000, 100, "f_poll_1"),
         _log(TX["e3"], 2_000_000, 100, "f_poll_1")]
SECOND = [_log(TX["e1"], 5_000_000, 101, "f_poll_2"), _log(TX["e2"], 7_000_000, 101, "f_poll_2"),
          # e3: taken out of block 100, mined in 101, taken out of 101 again
          _log(TX["e3"], 2_000_000, 100, "f_poll_2", removed=True),
          _log(TX["e3"], 2_000_000, 101, "f_poll_2"),
          _log(TX["e3"], 2_000_000, 101, "f_poll_2", removed=True)]


def _heads(poll: str, seen_at: datetime) -> list[dict]:
    return [{"file_id": poll, "network": BASE, "latest_block": 200, "seen_at": seen_at}]


def _build(warehouse, tmp_path_factory, dbt_build) -> list[dict]:
    insert_raw(warehouse, "channels", [{
        "id": CRYPTO, "name": CRYPTO, "channel_type": "crypto", "status": "active",
        "settlement_window_days": 0, "created_at": T0, "updated_at": T0}], T0)
    insert_raw(warehouse, "payments", PAYMENTS, T0)
    work = tmp_path_factory.mktemp(f"chain_two_blocks_{warehouse.engine}")
    snapshots = []
    for n, (logs, poll, seen_at) in enumerate(((FIRST, "f_poll_1", FIRST_POLL),
                                               (SECOND, "f_poll_2", SECOND_POLL))):
        insert_raw(warehouse, "chain_logs", logs, T0)
        insert_raw(warehouse, "chain_heads", _heads(poll, seen_at), T0)
        proc = dbt_build(warehouse, work / f"run{n}",
                         (*SELECT, "--vars", json.dumps({"recon_as_of": AS_OF})))
        assert proc.returncode == 0, warehouse.dbt_output[-8000:]
        snapshots.append(recon_snapshot(warehouse.query, [CRYPTO]))
    return snapshots


two_blocks_duckdb, two_blocks_postgres, runs = built_on_both_engines(
    "two_blocks", _build, name="runs")


def _open_breaks(snap) -> list[tuple]:
    return sorted((b["break_type"], b["payment_id"], b["chain_tx_hash"])
                  for b in snap["breaks"] if b["status"] == "open")


def test_the_first_poll_matches_and_raises_as_before(runs):
    first = runs[0]
    assert [(m["match_type"], m["payment_id"]) for m in first["matches"]
            if m["chain_tx_hash"] in (TX["e1"], TX["e3"])] == [("chain", "pay_e1"),
                                                               ("chain", "pay_e3")]
    assert _open_breaks(first) == [("missing_in_ledger", None, TX["e2"])]


def test_a_log_seen_again_in_another_block_is_one_log(runs):
    second = runs[1]
    chain = [(m["match_type"], m["payment_id"], m["chain_tx_hash"]) for m in second["matches"]]
    assert chain.count(("chain", "pay_e1", TX["e1"])) == 1
    assert _open_breaks(second) == sorted([
        ("chain_reorged", "pay_e3", TX["e3"]),  # both of its blocks reorganised away: once
        ("missing_in_ledger", None, TX["e2"]),  # once, not twice
    ])
    ids = [b["break_id"] for b in second["breaks"]]
    assert len(ids) == len(set(ids))


@pytest.mark.postgres
def test_the_engines_agree(two_blocks_duckdb, two_blocks_postgres):
    def ids(snap):
        return ([m["match_id"] for m in snap["matches"]],
                [(b["break_id"], b["break_type"], b["status"]) for b in snap["breaks"]])

    assert [ids(s) for s in two_blocks_duckdb] == [ids(s) for s in two_blocks_postgres]
