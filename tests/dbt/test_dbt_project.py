"""`dbt build` on DuckDB and on Postgres from a small hand-made raw fixture, with the figures
checked against the Python money core (warehouse.money) and the two engines checked against
each other, row for row.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from ingest.raw_schema import RAW_SCHEMA, RAW_TABLES
from tests.dbt.conftest import built_on_both_engines
from tests.dbt.settlement_oracle import with_quiet_periods
from warehouse.money import fee_minor, prorate, refund_reversals

TWO_63 = 2**63
EXTRACTED_AT = datetime(2024, 3, 5, 0, 0, 0)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- the raw fixture ----------------------------------------------------------------------------

ETH_BIG = 12_345_678_901_234_567_891  # ~12.35 ETH in wei, > 2^63
ETH_HUGE = 1_234_567_890_123_456_789_012  # ~1234.57 ETH: fee * partial refund passes 2^127
assert ETH_BIG > TWO_63

MERCHANTS = [
    {"id": "mer_a", "name": "Alpha Shop", "status": "active", "agent_id": None,
     "settlement_currency": "USD", "settlement_cycle": "daily", "settlement_delay_days": 1,
     "created_at": ts("2024-01-01 00:00:00"), "updated_at": ts("2024-01-01 00:00:00")},
    {"id": "mer_b", "name": "Beta Ramen", "status": "active", "agent_id": None,
     "settlement_currency": "JPY", "settlement_cycle": "daily", "settlement_delay_days": 1,
     "created_at": ts("2024-01-01 00:00:00"), "updated_at": ts("2024-01-01 00:00:00")},
]

PRICES = [
    # mer_a USD: the price changes at 2024-03-01 10:00 (valid_from inclusive, valid_to exclusive)
    {"id": "prc_a_usd_1", "subject_type": "merchant", "subject_id": "mer_a", "currency": "USD",
     "rate_bps": 290, "fixed_minor": 30, "valid_from": ts("2024-01-01 00:00:00"),
     "valid_to": ts("2024-03-01 10:00:00")},
    {"id": "prc_a_usd_2", "subject_type": "merchant", "subject_id": "mer_a", "currency": "USD",
     "rate_bps": 250, "fixed_minor": 25, "valid_from": ts("2024-03-01 10:00:00"),
     "valid_to": None},
    # mer_a ETH: no fixed part recorded (counts as 0)
    {"id": "prc_a_eth", "subject_type": "merchant", "subject_id": "mer_a", "currency": "ETH",
     "rate_bps": 150, "fixed_minor": None, "valid_from": ts("2024-01-01 00:00:00"),
     "valid_to": None},
    # mer_b sells its API over x402 in USDC (atomic units, 6 decimals)
    {"id": "prc_b_usdc", "subject_type": "merchant", "subject_id": "mer_b", "currency": "USDC",
     "rate_bps": 100, "fixed_minor": 0, "valid_from": ts("2024-01-01 00:00:00"),
     "valid_to": None},
    {"id": "prc_b_jpy", "subject_type": "merchant", "subject_id": "mer_b", "currency": "JPY",
     "rate_bps": 325, "fixed_minor": 0, "valid_from": ts("2024-01-01 00:00:00"),
     "valid_to": None},
    # Decoys that must never be used as a merchant price: another subject type with the same
    # subject id, and a price of mer_a in another currency.
    {"id": "prc_decoy_agent", "subject_type": "agent", "subject_id": "mer_a", "currency": "USD",
     "rate_bps": 9999, "fixed_minor": 9999, "valid_from": ts("2024-01-01 00:00:00"),
     "valid_to": None},
    {"id": "prc_a_eur", "subject_type": "merchant", "subject_id": "mer_a", "currency": "EUR",
     "rate_bps": 500, "fixed_minor": 0, "valid_from": ts("2024-01-01 00:00:00"),
     "valid_to": None},
]
for _p in PRICES:
    _p.update(created_at=ts("2024-01-01 00:00:00"), updated_at=ts("2024-01-01 00:00:00"))


X402_TX = "0x" + "7e" * 32
X402_TX_WRONG_RECIPIENT = "0x" + "c3" * 32
X402_TX_WRONG_TOKEN = "0x" + "c4" * 32
X402_REFERENCES = {"pay_x1": X402_TX, "pay_x2": "xpu_2",  # chain tx (exact), usage id (token)
                   "pay_x3": X402_TX_WRONG_RECIPIENT, "pay_x4": X402_TX_WRONG_TOKEN,
                   "pay_a5": "0x" + "a5" * 32, "pay_a6": "0x" + "a6" * 32}  # ETH on chain


def _payment(pid, merchant, amount, currency, status, method, created, captured, refunded=0):
    return {"id": pid, "merchant_id": merchant, "merchant_reference": f"order-{pid}",
            "amount_minor": amount, "currency": currency, "status": status,
            "payment_method_type": method,
            "channel_id": {"card": "ch_card", "wallet": "ch_wallet", "x402": "ch_x402_sim",
                           "agent_token": "ch_agent_token"}.get(method, "ch_eth"),
            "channel_reference": X402_REFERENCES.get(pid, f"chref-{pid}"), "failure_code": None if captured else "declined",
            "risk_decision": "approve", "customer_id": "cus_1", "refunded_minor": refunded,
            "captured_at": ts(captured) if captured else None, "created_at": ts(created),
            "updated_at": ts(created)}


PAYMENTS = [
    # one second before the price change: old price (290 bps + 30)
    _payment("pay_a1", "mer_a", 10_000, "USD", "success", "card",
             "2024-03-01 09:59:58", "2024-03-01 09:59:59"),
    # exactly at the change: new price (250 bps + 25), 251.25 -> 251; partially refunded
    _payment("pay_a2", "mer_a", 10_050, "USD", "partially_refunded", "card",
             "2024-03-01 09:59:59", "2024-03-01 10:00:00", refunded=3_333),
    # 49.975 -> 50 (+25); refunded in full in two parts on the next day
    _payment("pay_a3", "mer_a", 1_999, "USD", "refunded", "card",
             "2024-03-01 23:59:00", "2024-03-01 23:59:59", refunded=1_999),
    # failed: no capture, no fee
    _payment("pay_a4", "mer_a", 5_000, "USD", "failed", "card", "2024-03-01 12:00:00", None),
    # ETH above 2^63 wei, partially refunded
    _payment("pay_a5", "mer_a", ETH_BIG, "ETH", "partially_refunded", "crypto",
             "2024-03-02 11:59:00", "2024-03-02 12:00:00", refunded=5_000_000_000_000_000_001),
    # ~1234 ETH, refunded in full in two parts (the first partial needs the no-overflow prorate)
    _payment("pay_a6", "mer_a", ETH_HUGE, "ETH", "refunded", "crypto",
             "2024-03-02 13:00:00", "2024-03-02 13:00:05", refunded=ETH_HUGE),
    # JPY merchant: two statements with a day without activity in between
    _payment("pay_b1", "mer_b", 12_345, "JPY", "success", "card",
             "2024-03-01 05:00:00", "2024-03-01 05:00:01"),
    _payment("pay_b2", "mer_b", 1_000, "JPY", "success", "card",
             "2024-03-03 07:00:00", "2024-03-03 07:00:01"),
    _payment("pay_b3", "mer_b", 2_000, "JPY", "failed", "card", "2024-03-03 07:10:00", None),
    # refunded in full; the channel reports the payment but no refund of it (status_mismatch)
    _payment("pay_a8", "mer_a", 2_500, "USD", "refunded", "card",
             "2024-03-03 09:00:00", "2024-03-03 09:00:01", refunded=2_500),
    # paid from a stored-value wallet: the top-up was the gross, so no statement line and no fee
    # (for it or its refund); it stays in fct_payments and rpt_merchant_daily
    _payment("pay_a7", "mer_a", 4_000, "USD", "partially_refunded", "wallet",
             "2024-03-01 12:30:00", "2024-03-01 12:30:00", refunded=1_500),
    # x402 calls paid to mer_b: on chain (exact) and with an agent payment token
    _payment("pay_x1", "mer_b", 50_000, "USDC", "success", "x402",
             "2024-03-02 10:00:00", "2024-03-02 10:00:00"),
    _payment("pay_x2", "mer_b", 50_000, "USDC", "success", "agent_token",
             "2024-03-02 11:00:00", "2024-03-02 11:00:00"),
    _payment("pay_x3", "mer_b", 50_000, "USDC", "success", "x402",
             "2024-03-02 14:00:00", "2024-03-02 14:00:00"),
    _payment("pay_x4", "mer_b", 30_000, "USDC", "success", "x402",
             "2024-03-02 15:00:00", "2024-03-02 15:00:00"),
    # reconciliation: no reference on the channel's line (fuzzy), and two look-alikes (ambiguous);
    # the ledger holds no channel reference for them (a line's unknown reference contradicts a
    # payment whose own channel_reference differs: no fuzzy match then)
    {**_payment("pay_f1", "mer_a", 4_242, "USD", "success", "card",
                "2024-03-02 08:00:00", "2024-03-02 08:00:00"), "channel_reference": None},
    {**_payment("pay_f2", "mer_a", 5_555, "USD", "success", "card",
                "2024-03-02 08:10:00", "2024-03-02 08:10:00"), "channel_reference": None},
    {**_payment("pay_f3", "mer_a", 5_555, "USD", "success", "card",
                "2024-03-02 08:20:00", "2024-03-02 08:20:00"), "channel_reference": None},
]
WALLET_PAYMENTS = {p["id"] for p in PAYMENTS if p["payment_method_type"] == "wallet"}


def _rule(rid, path, amount):
    return {"id": rid, "merchant_id": "mer_b", "path_pattern": path, "http_method": "*",
            "amount_atomic": amount, "asset": "USDC", "network": "eip155:84532",
            "pay_to": "0x" + "5a" * 20, "billing_mode": "per_request", "status": "active",
            "created_at": ts("2024-03-01 00:00:00"), "updated_at": ts("2024-03-01 00:00:00")}


X402_RULES = [_rule("xpr_detail", "/company/detail", 50_000),
              _rule("xpr_filings", "/company/filings", 30_000)]


def _usage(uid, rule, scheme, status, payer, created, amount=50_000, payment=None, tx=None):
    return {"id": uid, "merchant_id": "mer_b", "rule_id": rule, "http_method": "GET",
            "path": "/company/detail", "scheme": scheme, "x402_version": 2,
            "network": "eip155:84532", "asset": "USDC", "amount_atomic": amount,
            "pay_to": "0x" + "5a" * 20, "payer": payer, "token_id": None, "status": status,
            "upstream_status": 200 if status == "settled" else 404, "tx_hash": tx,
            "payment_id": payment, "error_reason": None,
            "settled_at": ts(created) if status == "settled" else None,
            "created_at": ts(created), "updated_at": ts(created)}


X402_USAGE = [
    _usage("xpu_1", "xpr_detail", "exact", "settled", "0xaa", "2024-03-02 10:00:00",
           payment="pay_x1", tx=X402_TX),
    _usage("xpu_2", "xpr_detail", "token", "settled", "apt_1", "2024-03-02 11:00:00",
           payment="pay_x2"),
    _usage("xpu_3", "xpr_detail", "exact", "upstream_failed", "0xaa", "2024-03-02 12:00:00"),
    _usage("xpu_4", "xpr_filings", "exact", "settle_failed", "0xbb", "2024-03-02 13:00:00",
           amount=30_000),
    _usage("xpu_5", "xpr_detail", "exact", "settled", "0xcc", "2024-03-02 14:00:00",
           payment="pay_x3", tx=X402_TX_WRONG_RECIPIENT),
    _usage("xpu_6", "xpr_filings", "exact", "settled", "0xdd", "2024-03-02 15:00:00",
           amount=30_000, payment="pay_x4", tx=X402_TX_WRONG_TOKEN),
]


def _refund(rid, payment, merchant, amount, currency, status, succeeded):
    return {"id": rid, "payment_id": payment, "merchant_id": merchant, "amount_minor": amount,
            "currency": currency, "status": status, "reason": "requested_by_customer",
            "channel_reference": f"chref-{rid}",
            "succeeded_at": ts(succeeded) if succeeded else None,
            "created_at": ts(succeeded) if succeeded else ts("2024-03-02 00:00:00"),
            "updated_at": ts(succeeded) if succeeded else ts("2024-03-02 00:00:00")}


REFUNDS = [
    _refund("re_a2_1", "pay_a2", "mer_a", 3_333, "USD", "succeeded", "2024-03-01 15:00:00"),
    _refund("re_a2_2", "pay_a2", "mer_a", 1_000, "USD", "failed", None),
    _refund("re_a3_1", "pay_a3", "mer_a", 999, "USD", "succeeded", "2024-03-02 00:00:05"),
    _refund("re_a3_2", "pay_a3", "mer_a", 1_000, "USD", "succeeded", "2024-03-02 08:00:00"),
    _refund("re_a5_1", "pay_a5", "mer_a", 5_000_000_000_000_000_001, "ETH", "succeeded",
            "2024-03-03 01:00:00"),
    _refund("re_a6_1", "pay_a6", "mer_a", 987_654_321_098_765_432_101, "ETH", "succeeded",
            "2024-03-02 20:00:00"),
    _refund("re_a6_2", "pay_a6", "mer_a", ETH_HUGE - 987_654_321_098_765_432_101, "ETH",
            "succeeded", "2024-03-03 09:00:00"),
    _refund("re_a7_1", "pay_a7", "mer_a", 1_500, "USD", "succeeded", "2024-03-01 18:00:00"),
    _refund("re_a8_1", "pay_a8", "mer_a", 2_500, "USD", "succeeded", "2024-03-03 10:00:00"),
]

CHANNELS = [
    *({"id": cid, "name": cid, "channel_type": kind, "status": "active",
       "settlement_window_days": 0, "created_at": ts("2024-01-01 00:00:00"),
       "updated_at": ts("2024-01-01 00:00:00")}
      for cid, kind in (("ch_x402_sim", "x402"), ("ch_agent_token", "agent_token"),
                        ("ch_wallet", "wallet"))),
    {"id": "ch_card", "name": "Card acquirer", "channel_type": "card", "status": "active",
     "settlement_window_days": 1, "created_at": ts("2024-01-01 00:00:00"),
     "updated_at": ts("2024-01-01 00:00:00")},
    {"id": "ch_eth", "name": "Ethereum", "channel_type": "chain", "status": "active",
     "settlement_window_days": 0, "created_at": ts("2024-01-01 00:00:00"),
     "updated_at": ts("2024-01-01 00:00:00")},
]

LEDGER_ENTRIES = [
    {"id": 1, "transaction_id": "ltx_1", "kind": "capture", "payment_id": "pay_a1",
     "refund_id": None, "merchant_id": "mer_a", "account": "merchant:mer_a:payable",
     "currency": "USD", "amount_minor": -10_000, "effective_at": ts("2024-03-01 09:59:59"),
     "created_at": ts("2024-03-01 10:00:01")},
    {"id": 2, "transaction_id": "ltx_1", "kind": "capture", "payment_id": "pay_a1",
     "refund_id": None, "merchant_id": "mer_a", "account": "channel:ch_card:receivable",
     "currency": "USD", "amount_minor": 10_000, "effective_at": ts("2024-03-01 09:59:59"),
     "created_at": ts("2024-03-01 10:00:01")},
]

# --- agents and commission (commission.md): generated trees and rate cards --------------------
# A seeded generator stands in for hypothesis here (dbt builds once per engine and module): three
# agent trees, re-parenting and model changes mid-period, random models, cost prices and MDRs,
# and payments with partial and full refunds; fct_commissions and fct_platform_revenue are then
# checked row by row against the small oracle below.

COMMISSION_EPOCH = ts("2024-01-01 00:00:00")
CUTOVER = ts("2024-03-02 00:00:00")  # re-parenting and a model change happen here


def _generate_commission_world(seed: int = 20241122):
    import random

    rng = random.Random(seed)
    agents = [f"agt_{i}" for i in range(1, 10)]
    # agt_1..3 are top agents; the rest hang below, some two or three levels deep
    parents = {"agt_1": None, "agt_2": None, "agt_3": None, "agt_4": "agt_1", "agt_5": "agt_4",
               "agt_6": "agt_5", "agt_7": "agt_2", "agt_8": "agt_7", "agt_9": "agt_3"}
    links = []
    for agent, parent in parents.items():
        if agent == "agt_6":  # re-parented from agt_5 to agt_8 at the cutover
            links.append((agent, parent, COMMISSION_EPOCH, CUTOVER))
            links.append((agent, "agt_8", CUTOVER, None))
        else:
            links.append((agent, parent, COMMISSION_EPOCH, None))
    models, cost_prices = [], []
    for agent in agents:
        spans = [(COMMISSION_EPOCH, CUTOVER), (CUTOVER, None)] if agent in ("agt_4", "agt_7") \
            else [(COMMISSION_EPOCH, None)]
        for start, end in spans:
            model = rng.choice(["markup", "markup", "percentage", "fixed"])
            models.append({"agent_id": agent, "model": model, "valid_from": start,
                           "valid_to": end,
                           "pct_bps": rng.randint(5, 60) if model == "percentage" else None,
                           "fixed_minor": rng.randint(1, 40) if model == "fixed" else None})
            if model == "markup":
                cost_prices.append({"agent_id": agent, "valid_from": start, "valid_to": end,
                                    "rate_bps": rng.randint(120, 260),
                                    "fixed_minor": rng.choice([None, 0, 5, 15])})
    merchants = {f"mer_c{i}": rng.choice(["agt_1", "agt_4", "agt_5", "agt_6", "agt_6", "agt_8",
                                           "agt_9", "agt_3"]) for i in range(1, 9)}
    mdrs = {m: (rng.randint(180, 320), rng.choice([0, 10, 30])) for m in merchants}
    payments, refunds = [], []
    for i in range(90):
        merchant = rng.choice(sorted(merchants))
        day = rng.choice(["2024-03-01", "2024-03-02", "2024-03-03"])
        at = f"{day} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        amount = rng.choice([1, 99, 1_005, 12_345, 250_000, rng.randint(100, 2_000_000)])
        refunded = 0
        pid = f"pay_c{i:03d}"
        if rng.random() < 0.3:
            parts = [rng.randint(1, amount)] if rng.random() < 0.5 else [amount // 3,
                                                                         amount - amount // 3]
            parts = [x for x in parts if x > 0]
            for k, part in enumerate(parts):
                refunds.append(_refund(f"re_c{i:03d}_{k}", pid, merchant, part, "USD",
                                       "succeeded", f"2024-03-04 0{k}:00:00"))
            refunded = sum(parts)
        status = "refunded" if refunded == amount else ("partially_refunded" if refunded
                                                        else "success")
        payments.append(_payment(pid, merchant, amount, "USD", status, "card", at, at,
                                 refunded=refunded))
    return links, models, cost_prices, merchants, mdrs, payments, refunds


(COMMISSION_LINKS, COMMISSION_MODEL_SPECS, AGENT_COST_PRICES, AGENT_MERCHANTS, AGENT_MDRS,
 AGENT_PAYMENTS, AGENT_REFUNDS) = _generate_commission_world()
CHANNEL_CARD_USD = {"rate_bps": 180, "fixed_minor": 10}

# Commission statement cycles: two agents have their own; the rest leave it unset (an agent
# extracted before the column existed), which means monthly.
AGENT_CYCLES = {"agt_2": "weekly", "agt_9": "daily"}
AGENTS = [{"id": a, "name": f"Agent {a}", "status": "active", "created_at": COMMISSION_EPOCH,
           "updated_at": COMMISSION_EPOCH,
           **({"statement_cycle": AGENT_CYCLES[a]} if a in AGENT_CYCLES else {})}
          for a in sorted({link[0] for link in COMMISSION_LINKS})]
AGENT_PARENTS = [{"id": i + 1, "agent_id": a, "parent_id": p, "valid_from": start,
                  "valid_to": end, "created_at": COMMISSION_EPOCH, "updated_at": COMMISSION_EPOCH}
                 for i, (a, p, start, end) in enumerate(COMMISSION_LINKS)]
COMMISSION_MODELS = [{"id": f"cm_{i}", "currency": "USD", "created_at": COMMISSION_EPOCH,
                      "updated_at": COMMISSION_EPOCH, **spec}
                     for i, spec in enumerate(COMMISSION_MODEL_SPECS)]
MERCHANTS += [{"id": m, "name": f"Agent merchant {m}", "status": "active", "agent_id": agent,
               "settlement_currency": "USD", "settlement_cycle": "daily",
               "settlement_delay_days": 1, "created_at": COMMISSION_EPOCH,
               "updated_at": COMMISSION_EPOCH} for m, agent in sorted(AGENT_MERCHANTS.items())]
PRICES += [{"id": f"prc_{m}", "subject_type": "merchant", "subject_id": m, "currency": "USD",
            "rate_bps": rate, "fixed_minor": fixed, "valid_from": COMMISSION_EPOCH,
            "valid_to": None, "created_at": COMMISSION_EPOCH, "updated_at": COMMISSION_EPOCH}
           for m, (rate, fixed) in sorted(AGENT_MDRS.items())]
PRICES += [{"id": f"prc_cost_{i}", "subject_type": "agent", "subject_id": c["agent_id"],
            "currency": "USD", "rate_bps": c["rate_bps"], "fixed_minor": c["fixed_minor"],
            "valid_from": c["valid_from"], "valid_to": c["valid_to"],
            "created_at": COMMISSION_EPOCH, "updated_at": COMMISSION_EPOCH}
           for i, c in enumerate(AGENT_COST_PRICES)]
PRICES.append({"id": "prc_ch_card_usd", "subject_type": "channel", "subject_id": "ch_card",
               "currency": "USD", "valid_from": COMMISSION_EPOCH, "valid_to": None,
               "created_at": COMMISSION_EPOCH, "updated_at": COMMISSION_EPOCH,
               **CHANNEL_CARD_USD})
PAYMENTS += AGENT_PAYMENTS
REFUNDS += AGENT_REFUNDS

RAW_ROWS = {"merchants": MERCHANTS, "prices": PRICES, "payments": PAYMENTS, "refunds": REFUNDS,
            "agents": AGENTS, "agent_parents": AGENT_PARENTS,
            "commission_models": COMMISSION_MODELS,
            "channels": CHANNELS, "ledger_entries": LEDGER_ENTRIES,
            "x402_pricing_rules": X402_RULES, "x402_usage": X402_USAGE}


def load_raw(warehouse) -> None:
    from ingest.files.schema import FILE_TABLES

    for table in FILE_TABLES:
        rows = FILE_ROWS.get(table.name, [])
        if not rows:
            continue
        cols = [c for c in table.column_names if any(c in r for r in rows)]
        money_cols = {c for c, t in table.columns if t == "money"}
        sql = (f"INSERT INTO {RAW_SCHEMA}.{table.name} ({', '.join(cols)}) "
               f"VALUES ({', '.join('?' for _ in cols)})")
        warehouse.execute_many(sql, [tuple(Decimal(r[c]) if c in money_cols and r.get(c)
                                           is not None else r.get(c) for c in cols)
                                     for r in rows])
    for table in RAW_TABLES:
        rows = RAW_ROWS.get(table.name, [])
        if not rows:
            continue
        cols = table.column_names + ["_extracted_at"]
        sql = (f"INSERT INTO {RAW_SCHEMA}.{table.name} ({', '.join(cols)}) "
               f"VALUES ({', '.join('?' for _ in cols)})")
        money_cols = {c for c, t in table.columns if t == "money"}

        warehouse.execute_many(
            sql, [tuple(_raw_value(r, c, money_cols) for c in cols) for r in rows])


def _raw_value(row: dict, col: str, money_cols: set[str]):
    if col == "_extracted_at":
        return EXTRACTED_AT
    v = row.get(col)
    # exact: big ints travel as Decimal (NUMERIC / DECIMAL(38,0)), never as float
    return Decimal(v) if (col in money_cols and v is not None) else v


# --- reconciliation: channel lines, bank credits and chain logs with a planted break of each
# class (reconciliation.md); the test asserts exactly these are found --------------------------

SUCCESS_AGENT_PAYMENT = next(p for p in AGENT_PAYMENTS if p["status"] == "success")


def _line(lid, *, ref=None, mref=None, amount, currency="USD", fee=0, day="2024-03-02",
          kind="payment", payout=None):
    return {"psp_line_id": lid, "file_id": "f_psp", "format": "psp_csv", "line_number": 1,
            "settlement_date": date.fromisoformat(day), "record_type": kind,
            "channel": "ch_card", "channel_reference": ref, "merchant_reference": mref,
            "transaction_at": ts(f"{day} 12:00:00"), "currency": currency,
            "gross_minor": amount, "fee_minor": fee, "net_minor": amount - fee,
            "payout_id": payout, "payout_date": None, "status": None, "superseded_by": None}


PSP_LINES = [
    _line("L1", ref="chref-pay_a1", amount=10_000, fee=190, day="2024-03-01"),  # exact
    _line("L2", ref="chref-pay_a2", amount=10_050, fee=999, day="2024-03-01"),  # fee_mismatch
    _line("L3", ref="chref-pay_a1", amount=10_000, fee=190, day="2024-03-03"),  # duplicate
    _line("L4", mref="pay_a4", amount=5_000, fee=100, day="2024-03-02"),  # failed: status
    _line("L5", ref="chref-pay_b1", amount=12_000, currency="JPY"),  # amount_mismatch
    _line("L6", ref="psp-only-1", amount=777),  # missing_in_ledger
    _line("L7", ref="psp-unknown-1", amount=4_242),  # fuzzy -> pay_f1
    _line("L8", ref="psp-unknown-2", amount=5_555),  # ambiguous: pay_f2, pay_f3
    _line("L10", ref="chref-pay_a8", amount=2_500, fee=55, day="2024-03-03"),  # refunded
    _line("L9", ref=SUCCESS_AGENT_PAYMENT["channel_reference"],
          amount=SUCCESS_AGENT_PAYMENT["amount_minor"], currency="EUR"),  # currency_mismatch
    # refunds settle as their own (negative) lines: an exact match, an amount_mismatch and a
    # refund line nobody recorded; re_a3_2 has no line at all (missing_in_channel)
    _line("R1", ref="chref-re_a2_1", amount=-3_333, kind="refund"),
    _line("R2", ref="chref-re_a3_1", amount=-998, kind="refund"),
    _line("R3", ref="psp-refund-unknown", amount=-500, kind="refund"),
    # a refund naming pay_f1 (its id as merchant_reference); the ledger never refunded it
    _line("R4", mref="pay_f1", amount=-4_242, kind="refund"),
    _line("P1", kind="payout", payout="po_1", amount=9_810, day="2024-03-02"),
    _line("P2", kind="payout", payout="po_2", amount=5_000, day="2024-03-02"),
]


def _bank(lid, amount, *, e2e=None, remittance=None):
    return {"statement_line_id": lid, "statement_uid": "st_1", "file_id": "f_bank",
            "statement_index": 0, "line_number": 1, "account_id": "DE00", "booking_date":
            date(2024, 3, 3), "value_date": date(2024, 3, 3), "amount_minor": amount,
            "currency": "USD", "status": "BOOK", "end_to_end_id": e2e, "remittance": remittance,
            "superseded_by": None}


BANK_STATEMENTS = [{"statement_uid": "st_1", "file_id": "f_bank", "statement_index": 0,
                    "format": "camt", "message_type": "camt.053", "account_id": "DE00",
                    "currency": "USD", "superseded_by": None}]
BANK_LINES = [_bank("B1", 9_810, e2e="po_1"),  # payout_batch
              _bank("B2", 4_990, remittance="PAYOUT po_2")]  # payout_mismatch


# USDC on Base Sepolia; native ETH as indexers list it (dbt_project/seeds/ref_chain_tokens.csv)
USDC_SEPOLIA = "0x036cbd53842c5426634e7929541ec2318f3dcf7e"
ZERO_ADDRESS = "0x" + "0" * 40


def _log(tx, to, value, block, *, removed=False, network="eip155:84532", token=None):
    token = token or (USDC_SEPOLIA if network == "eip155:84532" else ZERO_ADDRESS)
    return {"chain_log_id": f"{tx}:0:{removed}", "file_id": "f_chain", "network": network,
            "block_number": block, "block_hash": None, "block_timestamp": ts("2024-03-02 12:00:00"),
            "transaction_hash": tx, "log_index": 0, "token_address": token,
            "from_address": "0x" + "11" * 20, "to_address": to, "value_text": str(value),
            "value_minor": value, "removed": removed}


PAY_TO = "0x" + "5a" * 20
UNEXPLAINED_TX = "0x" + "e7" * 32
CHAIN_LOGS = [
    _log(X402_TX, PAY_TO, 50_000, 100),  # chain match (pay_x1)
    _log(X402_TX_WRONG_RECIPIENT, "0x" + "99" * 20, 50_000, 100),  # recipient_mismatch
    _log(X402_TX_WRONG_TOKEN, PAY_TO, 30_000, 100, token="0x" + "d7" * 20),  # currency_mismatch
    _log("0x" + "a5" * 32, PAY_TO, ETH_BIG, 100, network="eip155:1"),
    _log("0x" + "a5" * 32, PAY_TO, ETH_BIG, 100, removed=True, network="eip155:1"),  # reorged
    _log("0x" + "a6" * 32, PAY_TO, ETH_HUGE, 998, network="eip155:1"),  # 3 confirmations
    # Into the platform's addresses with no ledger payment: missing_in_ledger once confirmed
    _log(UNEXPLAINED_TX, PAY_TO, 12_345, 100),
    _log("0x" + "e8" * 32, PAY_TO, 777, 998),  # 3 confirmations: not yet a break
    _log("0x" + "e9" * 32, "0x" + "42" * 20, 999, 100),  # someone else's address: not ours
]
CHAIN_HEADS = [{"file_id": "f_chain", "network": "eip155:84532", "latest_block": 1000},
               {"file_id": "f_chain_1", "network": "eip155:1", "latest_block": 1000}]
FILE_ROWS = {"psp_lines": PSP_LINES, "bank_statements": BANK_STATEMENTS,
             "bank_statement_lines": BANK_LINES, "chain_logs": CHAIN_LOGS,
             "chain_heads": CHAIN_HEADS}


# --- the expected figures, computed in Python with the money core ------------------------------

CAPTURED = {"success", "partially_refunded", "refunded"}


def expected_fees() -> dict[str, dict]:
    out = {}
    for p in PAYMENTS:
        if p["status"] not in CAPTURED or p["captured_at"] is None or p["id"] in WALLET_PAYMENTS:
            continue
        [price] = [pr for pr in PRICES
                   if pr["subject_type"] == "merchant" and pr["subject_id"] == p["merchant_id"]
                   and pr["currency"] == p["currency"] and pr["valid_from"] <= p["captured_at"]
                   and (pr["valid_to"] is None or p["captured_at"] < pr["valid_to"])]
        fee = fee_minor(p["amount_minor"], price["rate_bps"], price["fixed_minor"] or 0)
        out[p["id"]] = {"price_id": price["id"], "fee": fee, "amount": p["amount_minor"]}
    return out


def expected_reversals() -> dict[str, int]:
    fees = expected_fees()
    by_payment = defaultdict(list)
    for r in REFUNDS:
        if r["status"] == "succeeded" and r["payment_id"] not in WALLET_PAYMENTS:
            by_payment[r["payment_id"]].append(r)
    out = {}
    for pid, refunds in by_payment.items():
        refunds.sort(key=lambda r: (r["succeeded_at"], r["id"]))
        fee, amount = fees[pid]["fee"], fees[pid]["amount"]
        backs = refund_reversals(fee, [r["amount_minor"] for r in refunds], amount)
        out.update({r["id"]: back for r, back in zip(refunds, backs, strict=True)})
    return out


def expected_lines() -> dict[str, dict]:
    fees, reversals = expected_fees(), expected_reversals()
    payments = {p["id"]: p for p in PAYMENTS}
    lines = {}
    for pid, f in fees.items():
        p = payments[pid]
        lines[f"payment:{pid}"] = {
            "merchant_id": p["merchant_id"], "currency": p["currency"],
            "day": p["captured_at"].date(), "type": "payment",
            "gross": p["amount_minor"], "fee": f["fee"]}
    for r in REFUNDS:
        if r["status"] != "succeeded" or r["payment_id"] in WALLET_PAYMENTS:
            continue
        lines[f"refund:{r['id']}"] = {
            "merchant_id": r["merchant_id"], "currency": r["currency"],
            "day": r["succeeded_at"].date(), "type": "refund",
            "gross": -r["amount_minor"], "fee": -reversals[r["id"]]}
    return lines


def expected_statements(as_of: date) -> dict[str, dict]:
    """Every statement as of `as_of`: the days with lines, and the quiet days after each
    merchant's first one (opening = closing, nothing in between)."""
    groups = defaultdict(list)
    for line in expected_lines().values():
        groups[(line["merchant_id"], line["currency"], line["day"])].append(line)
    statements, closing = {}, defaultdict(int)
    for (merchant, currency, day) in sorted(groups):
        lines = groups[(merchant, currency, day)]
        gross = sum(x["gross"] for x in lines if x["type"] == "payment")
        refunds = -sum(x["gross"] for x in lines if x["type"] == "refund")
        fees = sum(x["fee"] for x in lines)
        net = gross - refunds - fees
        opening = closing[(merchant, currency)]
        closing[(merchant, currency)] = opening + net
        statements[f"{merchant}:{currency}:{day.isoformat()}"] = {
            "opening": opening, "gross": gross, "refunds": refunds, "fees": fees,
            "net_activity": opening + net, "closing": opening + net,
            "payment_count": sum(x["type"] == "payment" for x in lines),
            "refund_count": sum(x["type"] == "refund" for x in lines)}
    return with_quiet_periods(
        statements, cycle_of={m["id"]: m["settlement_cycle"] for m in MERCHANTS},
        settles_in={m["id"]: m["settlement_currency"] for m in MERCHANTS}, as_of=as_of,
        closing="closing", quiet=lambda balance: {
            "opening": balance, "gross": 0, "refunds": 0, "fees": 0, "net_activity": balance,
            "closing": balance, "payment_count": 0, "refund_count": 0})


# --- build each engine once per module ----------------------------------------------------------


def _build(warehouse, tmp_path_factory, dbt_build):
    load_raw(warehouse)
    proc = dbt_build(warehouse, tmp_path_factory.mktemp(f"dbt_{warehouse.engine}"))
    assert proc.returncode == 0, (
        f"dbt build failed on {warehouse.engine}:\n{warehouse.dbt_output[-8000:]}")
    return warehouse


built_duckdb, built_postgres, built = built_on_both_engines("built", _build)


def _int(v):
    assert v is None or isinstance(v, (int, Decimal)), f"money came back as {type(v).__name__}"
    if isinstance(v, Decimal):
        assert v == v.to_integral_value()
    return None if v is None else int(v)


# --- tests --------------------------------------------------------------------------------------


def test_dbt_build_ran_every_node_clean(built):
    results = built.run_results["results"]
    statuses = {r["unique_id"]: r["status"] for r in results}
    # commission.md: a price without a fixed amount (mer_a's ETH price, agents' cost prices
    # drawn with None) counts 0 "and a data-quality warning": that warning, and only it
    missing_fixed = {k for k in statuses
                     if k.startswith("test.clearhouse.not_null_stg_clearhouse__prices_fixed_minor.")}
    assert missing_fixed and {statuses[k] for k in missing_fixed} == {"warn"}
    # ... and payments on a channel with no price in force (ch_eth has none; the world's card
    # price is USD only): their channel cost counts 0, with a warning naming them
    no_channel_price = {k for k in statuses if k.startswith(
        "test.clearhouse.fct_platform_revenue_channel_price_in_force.")}
    assert no_channel_price and {statuses[k] for k in no_channel_price} == {"warn"}
    bad = {k: v for k, v in statuses.items()
           if v not in ("success", "pass") and k not in missing_fixed | no_channel_price}
    assert not bad, f"{built.engine}: nodes not clean (warnings count too): {bad}"
    ids = set(statuses)
    assert "test.clearhouse.assert_money_macros_exact" in ids
    assert any(i.startswith("unit_test.clearhouse.int_refund_fee_reversals.") for i in ids)
    for model in ("fct_payments", "fct_settlement_statement_lines", "fct_settlement_statements",
                  "rpt_merchant_daily", "int_payment_fees", "int_refund_fee_reversals"):
        assert f"model.clearhouse.{model}" in ids


DBT_MODELS = Path(__file__).resolve().parents[2] / "dbt_project" / "models"


def test_everything_lands_in_schema_analytics(built):
    rows = built.query(
        "select table_schema, table_name from information_schema.tables "
        "where table_name like 'stg_%' or table_name like 'int_%' or table_name like 'fct_%' "
        "or table_name like 'rpt_%'")
    assert {r["table_schema"] for r in rows} == {"analytics"}
    models = {p.stem for p in (DBT_MODELS).rglob("*.sql")}
    assert {r["table_name"] for r in rows} == models


def test_payment_fees_match_the_money_core(built):
    fees = expected_fees()
    rows = {r["payment_id"]: r for r in built.query(
        "select * from analytics.fct_payments order by payment_id")}
    assert set(rows) == {p["id"] for p in PAYMENTS}
    for pid, row in rows.items():
        if pid in fees:
            assert row["is_captured"] is True
            assert _int(row["fee_minor"]) == fees[pid]["fee"], pid
            assert row["price_id"] == fees[pid]["price_id"], pid
        elif pid in WALLET_PAYMENTS:  # captured, but stored value: no fee
            assert row["is_captured"] is True and row["fee_minor"] is None
            assert row["price_id"] is None
        else:
            assert row["is_captured"] is False
            assert row["fee_minor"] is None and row["price_id"] is None and row["rate_bps"] is None
            assert _int(row["refunded_minor"]) == 0
    # hand-checked figures: the price boundary, the half-up cases, the 2^63+ ETH amount
    assert _int(rows["pay_a1"]["fee_minor"]) == 290 + 30
    assert _int(rows["pay_a2"]["fee_minor"]) == 251 + 25  # 251.25
    assert _int(rows["pay_a3"]["fee_minor"]) == 50 + 25  # 49.975
    assert _int(rows["pay_a5"]["amount_minor"]) == ETH_BIG
    assert _int(rows["pay_a5"]["fee_minor"]) == 185_185_183_518_518_518
    assert _int(rows["pay_b1"]["fee_minor"]) == 401  # 401.2125 JPY
    assert _int(rows["pay_a2"]["refunded_minor"]) == 3_333  # the failed refund does not count
    assert _int(rows["pay_a7"]["refunded_minor"]) == 1_500
    assert rows["pay_a1"]["captured_date"] == date(2024, 3, 1)


def test_refund_fee_reversals_are_per_refund_and_full_refunds_reverse_the_whole_fee(built):
    reversals = expected_reversals()
    rows = {r["refund_id"]: r for r in built.query(
        "select * from analytics.int_refund_fee_reversals")}
    assert set(rows) == set(reversals)  # failed refunds are not there
    for rid, expected in reversals.items():
        assert _int(rows[rid]["fee_reversed_minor"]) == expected, rid
    fees = expected_fees()
    for pid in ("pay_a3", "pay_a6"):  # refunded in full, in two parts
        total = sum(_int(r["fee_reversed_minor"]) for r in rows.values() if r["payment_id"] == pid)
        assert total == fees[pid]["fee"], pid
    # pay_a3: F = 75, 999 then 1000 of 1999: prorate(75, 999, 1999) = 37.48 -> 37, then the
    # rest, 38
    assert _int(rows["re_a3_1"]["fee_reversed_minor"]) == 37
    assert _int(rows["re_a3_2"]["fee_reversed_minor"]) == 38
    # pay_a6's first partial reversal needs fee * refunded > 2^127 on the way
    fee_a6 = fees["pay_a6"]["fee"]
    assert fee_a6 * 987_654_321_098_765_432_101 > 2**127
    assert _int(rows["re_a6_1"]["fee_reversed_minor"]) == prorate(
        fee_a6, 987_654_321_098_765_432_101, ETH_HUGE)


def test_statement_lines_match(built):
    expected = expected_lines()
    rows = {r["line_id"]: r for r in built.query(
        "select * from analytics.fct_settlement_statement_lines")}
    assert set(rows) == set(expected)
    # the wallet payment and its refund are not on the statement (the top-up was the gross)
    assert "payment:pay_a7" not in rows and "refund:re_a7_1" not in rows
    assert not {r["payment_id"] for r in rows.values()} & WALLET_PAYMENTS
    for line_id, exp in expected.items():
        row = rows[line_id]
        assert row["line_type"] == exp["type"]
        assert row["merchant_id"] == exp["merchant_id"] and row["currency"] == exp["currency"]
        assert row["period_start"] == exp["day"] == row["period_end"]
        assert row["statement_id"] == f"{exp['merchant_id']}:{exp['currency']}:{exp['day']}"
        assert _int(row["gross_minor"]) == exp["gross"], line_id
        assert _int(row["fee_minor"]) == exp["fee"], line_id
        assert _int(row["net_minor"]) == exp["gross"] - exp["fee"], line_id


def test_statements_balance(built):
    # built without settlement_as_of: the books as of the run's day, through which quiet days
    # get statements too
    [run] = built.query("select max(as_of_date) as as_of from analytics.int_settlement_runs")
    expected = expected_statements(run["as_of"])
    rows = {r["statement_id"]: r for r in built.query(
        "select * from analytics.fct_settlement_statements")}
    assert set(rows) == set(expected)
    for sid, exp in expected.items():
        row = rows[sid]
        got = {"opening": row["opening_balance_minor"], "gross": row["gross_minor"],
               "refunds": row["refunds_minor"], "fees": row["fees_minor"],
               "net_activity": row["net_activity_minor"], "closing": row["closing_balance_minor"],
               "payment_count": row["payment_count"], "refund_count": row["refund_count"]}
        assert {k: _int(v) for k, v in got.items()} == exp, sid
        assert _int(row["chargebacks_minor"]) == _int(row["adjustments_minor"]) == 0
        assert _int(row["payouts_minor"]) == 0
        assert row["settlement_cycle"] == "daily"
    # mer_b has no activity on 2024-03-02: that day's statement carries 03-01's closing, and
    # 03-03 opens with it
    assert rows["mer_b:JPY:2024-03-03"]["opening_balance_minor"] == \
        rows["mer_b:JPY:2024-03-02"]["opening_balance_minor"] == \
        rows["mer_b:JPY:2024-03-02"]["closing_balance_minor"] == \
        rows["mer_b:JPY:2024-03-01"]["closing_balance_minor"] == 12_345 - 401
    assert rows["mer_b:JPY:2024-03-02"]["payment_count"] == 0
    # pay_a3 fully refunded: over its life the merchant gets 0 for it and pays no fee
    assert sum(_int(r["fees_minor"]) for r in rows.values()
               if r["currency"] == "USD" and r["merchant_id"] == "mer_a") == \
        expected_fees()["pay_a1"]["fee"] + expected_fees()["pay_a2"]["fee"] \
        - expected_reversals()["re_a2_1"] \
        + sum(expected_fees()[p]["fee"] for p in ("pay_f1", "pay_f2", "pay_f3"))


def test_merchant_daily_report(built):
    rows = {(r["merchant_id"], r["day"], r["payment_method_type"], r["currency"]): r
            for r in built.query("select * from analytics.rpt_merchant_daily")}
    usd = rows[("mer_a", date(2024, 3, 1), "card", "USD")]
    wallet = rows[("mer_a", date(2024, 3, 1), "wallet", "USD")]  # kept in the report
    assert wallet["payment_count"] == wallet["captured_count"] == 1
    assert _int(wallet["captured_minor"]) == 4_000 and _int(wallet["refunded_minor"]) == 1_500
    assert usd["payment_count"] == 4 and usd["captured_count"] == 3
    assert usd["success_rate"] == Decimal("0.750000")
    assert _int(usd["captured_minor"]) == 10_000 + 10_050 + 1_999
    assert _int(usd["refunded_minor"]) == 3_333 + 1_999 and usd["refund_count"] == 3
    assert _int(usd["average_ticket_minor"]) == 7_350  # 22049 / 3 = 7349.67 -> 7350
    jpy = rows[("mer_b", date(2024, 3, 3), "card", "JPY")]
    assert jpy["success_rate"] == Decimal("0.500000") and _int(jpy["average_ticket_minor"]) == 1_000
    eth = rows[("mer_a", date(2024, 3, 2), "crypto", "ETH")]
    assert _int(eth["captured_minor"]) == ETH_BIG + ETH_HUGE
    assert _int(eth["average_ticket_minor"]) == (ETH_BIG + ETH_HUGE + 1) // 2  # .5 rounds up


def test_x402_endpoint_report(built):
    rows = {(r["rule_id"], r["scheme"]): r
            for r in built.query("select * from analytics.rpt_x402_endpoint_daily")}
    assert set(rows) == {("xpr_detail", "exact"), ("xpr_detail", "token"),
                         ("xpr_filings", "exact")}
    exact, token = rows[("xpr_detail", "exact")], rows[("xpr_detail", "token")]
    assert (exact["calls"], exact["paid_calls"], exact["not_charged_calls"]) == (3, 2, 1)
    assert _int(exact["revenue_minor"]) == 100_000 and exact["payers"] == 2
    assert exact["path_pattern"] == "/company/detail" and exact["day"] == date(2024, 3, 2)
    assert (token["calls"], _int(token["revenue_minor"])) == (1, 50_000)
    filings = rows[("xpr_filings", "exact")]
    assert (filings["paid_calls"], _int(filings["revenue_minor"])) == (1, 30_000)
    # the x402 revenue is also in the merchant's USDC statement, fee at the merchant's price
    statement = {r["statement_id"]: r for r in built.query(
        "select * from analytics.fct_settlement_statements")}["mer_b:USDC:2024-03-02"]
    assert _int(statement["gross_minor"]) == 180_000
    assert _int(statement["fees_minor"]) == 3 * fee_minor(50_000, 100) + fee_minor(30_000, 100)


# --- the commission oracle: commission.md walked in plain Python --------------------------------


def _in_force(rows, at, **match):
    found = [r for r in rows if all(r[k] == v for k, v in match.items())
             and r["valid_from"] <= at and (r["valid_to"] is None or at < r["valid_to"])]
    assert len(found) <= 1, f"overlapping rows for {match} at {at}"
    return found[0] if found else None


def expected_commission() -> tuple[dict, dict]:
    """({(event_id, agent, level): amount}, {event_id: (F, channel_cost, commissions, net,
    negative_margin)}) for every captured, priced payment and its succeeded refunds."""
    merchants = {m["id"]: m for m in MERCHANTS}
    fees = expected_fees()
    rows, platform, per_payment = {}, {}, {}
    for p in PAYMENTS:
        if p["id"] not in fees:
            continue
        amount, at, f_fee = p["amount_minor"], p["captured_at"], fees[p["id"]]["fee"]
        up, paid_by_platform, negative, level = f_fee, 0, False, 1
        agent = merchants[p["merchant_id"]]["agent_id"]
        earned = {}
        while agent is not None:
            model = _in_force(COMMISSION_MODELS, at, agent_id=agent, currency=p["currency"])
            cost = _in_force([x for x in PRICES if x["subject_type"] == "agent"], at,
                             subject_id=agent, currency=p["currency"])
            kind = model["model"] if model else None
            if kind == "markup" and cost is not None:
                cost_fee = fee_minor(amount, cost["rate_bps"], cost["fixed_minor"] or 0)
                amount_earned, up = up - cost_fee, cost_fee
                negative |= amount_earned < 0
            elif kind == "percentage":
                amount_earned = fee_minor(amount, model["pct_bps"], 0)
                paid_by_platform += amount_earned
            elif kind == "fixed":
                amount_earned = model["fixed_minor"]
                paid_by_platform += amount_earned
            else:
                amount_earned = 0
            earned[(agent, level)] = amount_earned
            link = _in_force(AGENT_PARENTS, at, agent_id=agent)
            agent, level = (link["parent_id"] if link else None), level + 1
        channel = _in_force([x for x in PRICES if x["subject_type"] == "channel"], at,
                            subject_id=p["channel_id"], currency=p["currency"])
        channel_cost = fee_minor(amount, channel["rate_bps"], channel["fixed_minor"] or 0) \
            if channel else 0
        net = up - channel_cost - paid_by_platform
        for (agent_id, lvl), value in earned.items():
            rows[(p["id"], agent_id, lvl)] = value
        platform[p["id"]] = (f_fee, channel_cost, sum(earned.values()), net, net < 0 or negative,
                             channel["id"] if channel else None)
        per_payment[p["id"]] = (amount, f_fee, channel_cost, earned, channel)
    reversals = expected_reversals()
    refunds_of: dict[str, list] = defaultdict(list)
    for r in sorted(REFUNDS, key=lambda r: (r["succeeded_at"] or datetime.max, r["id"])):
        if r["status"] == "succeeded" and r["payment_id"] in per_payment:
            refunds_of[r["payment_id"]].append(r)
    for pid, refunds in refunds_of.items():
        # commission.md: round_half_up(x * refunded / captured) per refund, the refund
        # completing a full refund reversing what is left (warehouse.money.refund_reversals)
        amount, _f, channel_cost, earned, channel = per_payment[pid]
        amounts = [r["amount_minor"] for r in refunds]
        costs_back = refund_reversals(channel_cost, amounts, amount)
        earned_back = {k: refund_reversals(v, amounts, amount) for k, v in earned.items()}
        for i, r in enumerate(refunds):
            total = 0
            for (agent_id, lvl), backs in earned_back.items():
                rows[(r["id"], agent_id, lvl)] = -backs[i]
                total += backs[i]
            fee_back, cost_back = reversals[r["id"]], costs_back[i]
            platform[r["id"]] = (-fee_back, -cost_back, -total, -(fee_back - cost_back - total),
                                 False, channel["id"] if channel else None)
    return rows, platform


def test_commissions_match_the_oracle(built):
    expected_rows, expected_platform = expected_commission()
    assert sum(1 for v in expected_platform.values() if v[4]) >= 1, \
        "the generated world should contain a negative margin to check the flag"
    assert sum(1 for k in expected_rows if k[0].startswith("re_")) >= 10
    got = {(r["event_id"], r["beneficiary_id"], r["level"]): _int(r["amount_minor"])
           for r in built.query("select * from analytics.fct_commissions")}
    assert got == expected_rows
    platform = {r["event_id"]: (_int(r["merchant_fee_minor"]), _int(r["channel_cost_minor"]),
                                _int(r["agent_commission_minor"]), _int(r["platform_net_minor"]),
                                bool(r["negative_margin"]), r["channel_price_id"])
                for r in built.query("select * from analytics.fct_platform_revenue")}
    assert platform == expected_platform
    assert any(v[5] is None for v in platform.values()), "no unpriced channel: nothing checked"
    for fee, cost, commission, net, _neg, _price in platform.values():
        assert fee == cost + net + commission  # conservation, every row


def test_commission_rows_name_model_and_rate(built):
    rows = built.query("select * from analytics.fct_commissions where event_kind = 'payment'")
    models = {r["model"] for r in rows}
    assert {"markup", "percentage", "fixed"} <= models
    for r in rows:
        if r["model"] == "markup":
            assert r["rate_bps"] is not None and r["pct_bps"] is None
        elif r["model"] == "percentage":
            assert r["pct_bps"] is not None and r["rate_bps"] is None
        elif r["model"] == "fixed":
            assert r["fixed_minor"] is not None
    # agt_6 was re-parented at the cutover: its payments' chains differ before and after
    chains = defaultdict(set)
    for r in rows:
        chains[r["payment_id"]].add((r["level"], r["beneficiary_id"]))
    before = [c for pid, c in chains.items() if (1, "agt_6") in c and (2, "agt_5") in c]
    after = [c for pid, c in chains.items() if (1, "agt_6") in c and (2, "agt_8") in c]
    assert before and after


def test_finance_ties_out_per_day_and_currency(built):
    """settlement.md: statements' net + commissions + platform net + channel cost = gross -
    refunds, per day and currency (the dbt test assert_finance_tie_out says the same)."""
    assert "assert_finance_tie_out" in built.dbt_output
    tie: dict = defaultdict(int)
    for r in built.query("select * from analytics.fct_settlement_statements"):
        key = (r["period_start"], r["currency"])
        tie[key] += _int(r["net_activity_minor"]) - _int(r["opening_balance_minor"]) \
            - _int(r["gross_minor"]) + _int(r["refunds_minor"])
    for r in built.query("select * from analytics.fct_platform_revenue"):
        occurred = r["occurred_at"]
        key = (occurred.date() if hasattr(occurred, "date") else occurred, r["currency"])
        tie[key] += _int(r["agent_commission_minor"]) + _int(r["platform_net_minor"]) \
            + _int(r["channel_cost_minor"])
    assert tie and all(v == 0 for v in tie.values()), {k: v for k, v in tie.items() if v}


def _cycle_period(cycle: str, day: date) -> tuple[date, date]:
    if cycle == "daily":
        return day, day
    if cycle == "weekly":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=6)
    start = day.replace(day=1)
    following = (start + timedelta(days=32)).replace(day=1)
    return start, following - timedelta(days=1)


def test_agent_commission_statements(built):
    """Per agent, currency and the agent's cycle (monthly unless set): earned on payments,
    reversed by refunds, a running balance - all from the oracle's commission rows."""
    expected_rows, _ = expected_commission()
    when = {p["id"]: p["captured_at"] for p in PAYMENTS}
    when.update({r["id"]: r["succeeded_at"] for r in REFUNDS})
    figures: dict = defaultdict(lambda: [0, 0])
    ends: dict = {}
    for (event_id, agent, _level), amount in expected_rows.items():
        cycle = AGENT_CYCLES.get(agent, "monthly")
        start, end = _cycle_period(cycle, when[event_id].date())
        key = (agent, "USD", start)
        ends[key] = (cycle, end)
        figures[key][0 if event_id.startswith("pay_") else 1] += amount
    rows = {(r["agent_id"], r["currency"], r["period_start"]): r for r in built.query(
        "select * from analytics.fct_agent_commission_statements")}
    assert set(rows) == set(figures)
    balance: dict = defaultdict(int)
    for key in sorted(figures):
        earned, reversed_ = figures[key]
        row = rows[key]
        assert (row["settlement_cycle"], row["period_end"]) == ends[key]
        assert (_int(row["earned_minor"]), _int(row["reversed_minor"])) == (earned, reversed_)
        assert _int(row["opening_balance_minor"]) == balance[key[:2]]
        balance[key[:2]] += earned + reversed_
        assert _int(row["closing_balance_minor"]) == balance[key[:2]]
    assert any(_int(r["reversed_minor"]) != 0 for r in rows.values())
    cycles = {r["agent_id"]: r["settlement_cycle"] for r in rows.values()}
    assert {cycles.get("agt_2"), cycles.get("agt_9"), cycles.get("agt_1")} == {
        "weekly", "daily", "monthly"}, "every cycle must be exercised"


def test_reconciliation_finds_exactly_the_planted_matches_and_breaks(built):
    matches = {(r["match_type"], r["refund_id"] or r["payment_id"] or r["channel_reference"])
               for r in built.query("select * from analytics.fct_reconciliation_matches")}
    assert matches == {("exact_reference", "pay_a1"), ("exact_reference", "pay_a2"),
                       ("exact_reference", "pay_a8"),
                       ("exact_reference", "re_a2_1"),
                       ("fuzzy", "pay_f1"), ("payout_batch", "po_1"), ("chain", "pay_x1")}
    breaks = built.query("select * from analytics.fct_reconciliation_breaks")
    by_type = defaultdict(set)
    for r in breaks:
        by_type[r["break_type"]].add(r["refund_id"] or r["payment_id"] or r["channel_reference"])
    settled = {p["id"] for p in PAYMENTS
               if p["status"] in ("success", "partially_refunded", "refunded")
               and p["payment_method_type"] not in ("wallet", "agent_token")}
    seen = {"pay_a1", "pay_a2", "pay_a8", "pay_b1", "pay_f1", "pay_f2", "pay_f3", "pay_x1",
            "pay_x3", "pay_x4", "pay_a5", "pay_a6", SUCCESS_AGENT_PAYMENT["id"]}
    # succeeded refunds of card payments settle as channel lines; only two have one (re_a8_1's
    # payment is the status_mismatch: fully refunded in the ledger, only settled on the channel)
    card = {p["id"] for p in PAYMENTS if p["channel_id"] == "ch_card"}
    refunds_without_line = {r["id"] for r in REFUNDS if r["status"] == "succeeded"
                            and r["payment_id"] in card} - {"re_a2_1", "re_a3_1", "re_a8_1"}
    assert "re_a3_2" in refunds_without_line
    assert dict(by_type) == {
        # pay_f1: its fuzzy-matched line L7 says fee 0, the channel price in force says more
        "fee_mismatch": {"pay_a2", "pay_f1"}, "duplicate_in_channel": {"pay_a1"},
        "status_mismatch": {"pay_a4", "pay_a8", "pay_f1"},
        "amount_mismatch": {"pay_b1", "re_a3_1"},
        "missing_in_ledger": {"psp-only-1", "psp-refund-unknown", UNEXPLAINED_TX},
        "ambiguous": {"psp-unknown-2"},
        "currency_mismatch": {SUCCESS_AGENT_PAYMENT["id"], "pay_x4"}, "payout_mismatch": {"po_2"},
        "recipient_mismatch": {"pay_x3"}, "chain_reorged": {"pay_a5"},
        "chain_unconfirmed": {"pay_a6"},
        "missing_in_channel": (settled - seen) | refunds_without_line}
    rows = {(r["break_type"], r["refund_id"] or r["payment_id"] or r["channel_reference"]): r
            for r in breaks}
    assert _int(rows[("amount_mismatch", "pay_b1")]["delta_minor"]) == -345
    # refund amounts are signed as the channel reports them: ledger -999, channel -998
    refund_break = rows[("amount_mismatch", "re_a3_1")]
    assert (_int(refund_break["ledger_amount_minor"]), _int(refund_break["channel_amount_minor"]),
            _int(refund_break["delta_minor"]), refund_break["payment_id"]) == \
        (-999, -998, 1, "pay_a3")
    assert _int(rows[("payout_mismatch", "po_2")]["delta_minor"]) == -10
    fee = rows[("fee_mismatch", "pay_a2")]
    assert (_int(fee["ledger_amount_minor"]), _int(fee["channel_amount_minor"])) == \
        (fee_minor(10_050, 180, 10), 999)
    assert rows[("ambiguous", "psp-unknown-2")]["candidates"] == "pay_f2,pay_f3"
    # first seen once re_a8_1 (03-03, T+1) is overdue: 03-03 + 1 + 1 grace + 1 = 03-06, not the
    # payment line's day (second spec audit, breach 2)
    refunded = rows[("status_mismatch", "pay_a8")]
    assert (_int(refunded["ledger_amount_minor"]), _int(refunded["channel_amount_minor"]),
            refunded["first_seen"]) == (0, 2_500, date(2024, 3, 6))
    unexplained = rows[("missing_in_ledger", UNEXPLAINED_TX)]
    assert (unexplained["chain_tx_hash"], unexplained["channel"], unexplained["currency"],
            unexplained["ledger_amount_minor"], _int(unexplained["channel_amount_minor"])) == \
        (UNEXPLAINED_TX, "ch_x402_sim", "USDC", None, 12_345)
    assert all(r["status"] == "open" and r["age_days"] >= 0 for r in breaks)
    daily = {(r["day"], r["channel"], r["currency"]): r
             for r in built.query("select * from analytics.rpt_reconciliation_daily")}
    card = daily[(date(2024, 3, 1), "ch_card", "USD")]
    assert card["matched_count"] == 2 and _int(card["matched_amount_minor"]) == 20_050


def test_reconciliation_ids_are_stable_across_builds(built, tmp_path_factory, dbt_build):
    """Re-running gives the same matches and the same break ids."""
    query = "select {} from analytics.{} order by 1"
    before = (built.query(query.format("match_id", "fct_reconciliation_matches")),
              built.query(query.format("break_id, break_type", "fct_reconciliation_breaks")))
    assert dbt_build(built, tmp_path_factory.mktemp("rebuild")).returncode == 0  # same inputs
    after = (built.query(query.format("match_id", "fct_reconciliation_matches")),
             built.query(query.format("break_id, break_type", "fct_reconciliation_breaks")))
    assert before == after and before[0] and before[1]


def test_a_break_that_later_data_closes_is_resolved_not_deleted(built, tmp_path_factory,
                                                                 dbt_build):
    """pay_b2 has no channel line: missing_in_channel. A late line arrives -> the break is kept,
    resolved by the match that covers it; the line withdrawn again -> the break reopens with its
    first_seen. (The inputs end as they began, so later tests see the original state.)"""
    def breaks_of(payment_id):
        return [r for r in built.query("select * from analytics.fct_reconciliation_breaks")
                if r["payment_id"] == payment_id]

    [before] = breaks_of("pay_b2")
    assert (before["break_type"], before["status"]) == ("missing_in_channel", "open")
    late = _line("L_late", ref="chref-pay_b2", amount=1_000, currency="JPY", day="2024-03-05")
    cols = [c for c in late if late[c] is not None]
    built.execute_many(
        f"INSERT INTO {RAW_SCHEMA}.psp_lines ({', '.join(cols)}) "
        f"VALUES ({', '.join('?' for _ in cols)})",
        [tuple(Decimal(late[c]) if c.endswith("_minor") else late[c] for c in cols)])
    try:
        assert dbt_build(built, tmp_path_factory.mktemp("late")).returncode == 0
        [resolved] = breaks_of("pay_b2")
        [match] = [m for m in built.query("select * from analytics.fct_reconciliation_matches")
                   if m["payment_id"] == "pay_b2"]
        assert resolved["break_id"] == before["break_id"] and resolved["status"] == "resolved"
        assert resolved["resolved_by"] == "match:" + match["match_id"]
        assert resolved["resolved_at"] is not None
        assert resolved["first_seen"] == before["first_seen"]
    finally:
        built.execute_many(f"DELETE FROM {RAW_SCHEMA}.psp_lines WHERE psp_line_id = ?",
                           [("L_late",)])
        assert dbt_build(built, tmp_path_factory.mktemp("withdrawn")).returncode == 0
    [reopened] = breaks_of("pay_b2")
    assert (reopened["status"], reopened["resolved_at"], reopened["first_seen"]) == \
        ("open", None, before["first_seen"])


@pytest.mark.postgres
@pytest.mark.parametrize("model, key", [
    ("fct_settlement_statements", "statement_id"),
    ("fct_settlement_statement_lines", "line_id"),
    ("fct_payments", "payment_id"),
    ("rpt_merchant_daily", "merchant_id, day, channel_id, payment_method_type, currency"),
    ("rpt_agent_portfolio_daily", "agent_id, day, currency"),
    ("rpt_x402_endpoint_daily", "merchant_id, day, rule_id, scheme, currency"),
    ("fct_commissions", "commission_id"),
    ("fct_platform_revenue", "event_id"),
    ("fct_agent_commission_statements", "statement_id"),
    ("fct_agent_commission_statement_lines", "statement_id, line_id"),
    ("fct_reconciliation_matches", "match_id"),
    ("fct_reconciliation_breaks", "break_id"),
    ("rpt_reconciliation_daily", "day, channel, currency"),
])
def test_duckdb_and_postgres_give_identical_rows(built_duckdb, built_postgres, model, key):
    sql = f"select * from analytics.{model} order by {key}"
    duck, pg = built_duckdb.query(sql), built_postgres.query(sql)
    assert duck, f"{model} is empty: the comparison would prove nothing"
    assert [list(r) for r in duck] == [list(r) for r in pg]  # same columns, same order
    assert duck == pg
