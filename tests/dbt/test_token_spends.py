"""Money moving between parties on statements, on DuckDB and Postgres. An agent payment token's
call is paid out of the balance of the merchant that issued the token (serving/x402/booking.py:
the capture debits the buyer's merchant_payable and credits the seller's): the seller's
statement has the payment, the buyer's must take the money off (and give a refund of it back),
or the platform pays the seller and never charges the buyer. A payout is paid out on the day
it was marked paid; a chargeback that names its payment by the channel's reference only is
charged to the merchant. (A module of its own: the warehouse fixtures are per module.)"""

from __future__ import annotations

import json

import pytest

from serving.x402.booking import TOKEN_CHANNEL
from tests.dbt.test_settlement import T0, _chargeback_rows, _insert, _payment_rows, ts
from warehouse.ledger import channel_receivable, merchant_payable

BUYER, SELLER = "mer_buy", "mer_sell"
# (id, merchant, amount, currency, captured_at): 20 USDC paid with a token, a card payment
TOKEN_PAYMENT = ("pt1", SELLER, 20_000_000, "USDC", "2024-03-12 10:00:00")
CARD_PAYMENT = ("pc1", SELLER, 5_000, "USD", "2024-03-12 11:00:00")
TOKEN_REFUND = ("rt1", "pt1", SELLER, 5_000_000, "USDC", "2024-03-13 09:00:00")  # 5 USDC back
AS_OF = "2024-03-20"
# the seller's payout: approved on the 13th, the bank transfer marked paid on the 15th
PAYOUT = ("wd_1", SELLER, 1_000, "2024-03-13 16:00:00", "2024-03-15 09:00:00")


def _legs(payment_id: str, debit: str, credit: str, amount: int, currency: str, at: str,
          first_id: int) -> list[dict]:
    return [{"id": first_id + i, "transaction_id": f"txn_{payment_id}", "kind": "capture",
             "payment_id": payment_id, "merchant_id": SELLER, "account": account,
             "currency": currency, "amount_minor": signed, "effective_at": ts(at),
             "created_at": ts(at)}
            for i, (account, signed) in enumerate(((debit, amount), (credit, -amount)))]


def _load(warehouse) -> None:
    _insert(warehouse, "merchants", [
        {"id": m, "name": m, "status": "active", "settlement_currency": "USD",
         "settlement_cycle": "daily", "settlement_delay_days": 0, "created_at": T0,
         "updated_at": T0, "agent_id": None} for m in (BUYER, SELLER)])
    _insert(warehouse, "channels", [
        {"id": ch, "name": ch, "channel_type": kind, "status": "active",
         "settlement_window_days": 1, "created_at": T0, "updated_at": T0}
        for ch, kind in ((TOKEN_CHANNEL, "agent_token"), ("ch_card", "card"))])
    _insert(warehouse, "prices", [
        {"id": f"prc_{ccy}", "subject_type": "merchant", "subject_id": SELLER, "currency": ccy,
         "rate_bps": 100, "fixed_minor": 0, "valid_from": T0, "created_at": T0,
         "updated_at": T0} for ccy in ("USDC", "USD")])
    token, card = _payment_rows([TOKEN_PAYMENT, CARD_PAYMENT])
    token.update(channel_id=TOKEN_CHANNEL, payment_method_type="agent_token",
                 status="partially_refunded", refunded_minor=TOKEN_REFUND[3])
    _insert(warehouse, "payments", [token, card])
    pid, _m, amount, ccy, at = TOKEN_PAYMENT
    _insert(warehouse, "ledger_entries",
            _legs(pid, merchant_payable(BUYER), merchant_payable(SELLER), amount, ccy, at, 1)
            + _legs("pc1", channel_receivable("ch_card"), merchant_payable(SELLER), 5_000,
                    "USD", CARD_PAYMENT[4], 3))
    wid, owner, amount, approved, paid = PAYOUT
    _insert(warehouse, "withdrawals", [
        {"id": wid, "owner_type": "merchant", "owner_id": owner, "amount_minor": amount,
         "currency": "USD", "status": "paid", "decided_by": "usr_ops",
         "decided_at": ts(approved), "paid_at": ts(paid), "created_at": T0, "updated_at": T0}])
    # the card payment charged back by a row that names it by the channel's reference only
    (chargeback,) = _chargeback_rows([("cb_pc1", "pc1", -5_000, "2024-03-16 10:00:00")])
    _insert(warehouse, "psp_lines", [{**chargeback, "merchant_reference": None}])
    rid, pid, m, amount, ccy, at = TOKEN_REFUND
    _insert(warehouse, "refunds", [
        {"id": rid, "payment_id": pid, "merchant_id": m, "amount_minor": amount,
         "currency": ccy, "status": "succeeded", "succeeded_at": ts(at), "created_at": ts(at),
         "updated_at": ts(at)}])


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgres",
                                                               marks=pytest.mark.postgres)])
def built(request, tmp_path_factory, dbt_build):
    warehouse = request.getfixturevalue(f"{request.param}_warehouse")
    _load(warehouse)
    proc = dbt_build(warehouse, tmp_path_factory.mktemp(f"token_{warehouse.engine}"),
                     ("--vars", json.dumps({"settlement_as_of": AS_OF, "recon_as_of": AS_OF})))
    assert proc.returncode == 0, warehouse.dbt_output[-8000:]  # the tie-out check included
    return {
        "lines": {r["line_id"]: r for r in warehouse.query(
            "select * from analytics.fct_settlement_statement_lines")},
        "statements": {r["statement_id"]: r for r in warehouse.query(
            "select * from analytics.fct_settlement_statements")},
    }


def test_the_buyer_pays_for_its_agents_call_and_gets_the_refund_back(built):
    lines = built["lines"]
    spend, back = lines["token_spend:pt1"], lines["token_spend:rt1"]
    # 20 USDC and 5 USDC at par, in US cents; no fee on the buyer's side
    assert {k: spend[k] for k in ("merchant_id", "line_type", "item_type", "payment_id",
                                  "refund_id", "txn_currency", "fx_derivation")} == \
        {"merchant_id": BUYER, "line_type": "adjustment", "item_type": "token_spend",
         "payment_id": "pt1", "refund_id": None, "txn_currency": "USDC", "fx_derivation": "peg"}
    assert (int(spend["gross_minor"]), int(spend["fee_minor"]), int(spend["net_minor"])) == \
        (-2_000, 0, -2_000)
    assert SELLER in spend["description"] and "pt1" in spend["description"]
    assert (back["merchant_id"], back["refund_id"], int(back["net_minor"])) == (BUYER, "rt1", 500)
    assert "rt1" in back["description"]
    # the seller is paid as for any payment (gross less the fee), and refunds as for any refund
    assert (lines["payment:pt1"]["merchant_id"], int(lines["payment:pt1"]["gross_minor"]),
            int(lines["payment:pt1"]["fee_minor"])) == (SELLER, 2_000, 20)
    assert int(lines["refund:rt1"]["gross_minor"]) == -500
    # a card payment is nobody's token spend
    spends = sorted(r["line_id"] for r in lines.values() if r["item_type"] == "token_spend")
    assert spends == ["token_spend:pt1", "token_spend:rt1"]


def test_the_buyers_statements_take_the_spend_off_its_balance(built):
    statements = built["statements"]
    day1, day2 = statements[f"{BUYER}:USD:2024-03-12"], statements[f"{BUYER}:USD:2024-03-13"]
    assert (int(day1["adjustments_minor"]), int(day1["gross_minor"]),
            int(day1["closing_balance_minor"])) == (2_000, 0, -2_000)
    assert (int(day2["opening_balance_minor"]), int(day2["adjustments_minor"]),
            int(day2["closing_balance_minor"])) == (-2_000, -500, -1_500)
    assert day1["status"] == day2["status"] == "closed"
    # what left the buyer is what the seller was paid before its fee: nothing is created
    seller = statements[f"{SELLER}:USD:2024-03-12"]
    assert int(seller["gross_minor"]) - 5_000 == -int(day1["closing_balance_minor"])


def test_a_payout_is_on_the_statement_of_the_day_it_was_paid_not_approved(built):
    # approved on the 13th, paid on the 15th: the 15th's statement pays it out (dated by the
    # approval it would land on the 13th, or on a later one as a late adjustment once the 13th
    # had closed - and be deducted twice from the available balance)
    line = built["lines"]["payout:wd_1"]
    assert (line["statement_id"], line["line_type"], int(line["net_minor"])) == \
        (f"{SELLER}:USD:2024-03-15", "payout", -1_000)
    assert int(built["statements"][f"{SELLER}:USD:2024-03-15"]["payouts_minor"]) == 1_000


def test_a_chargeback_naming_only_the_channel_reference_is_charged_to_the_merchant(built):
    # reconciliation matches it by channel_reference; settlement must charge it too, or the
    # channel takes the money back and the platform absorbs it
    line = built["lines"]["chargeback:pc1"]
    assert (line["merchant_id"], line["statement_id"], line["psp_line_id"],
            int(line["gross_minor"]), int(line["fee_minor"])) == \
        (SELLER, f"{SELLER}:USD:2024-03-16", "cb_pc1", -5_000, 0)
    assert int(built["statements"][f"{SELLER}:USD:2024-03-16"]["chargebacks_minor"]) == 5_000
