"""The audit's scenario: ledger rows, PSP settlement CSVs, bank statements (camt.053, MT940,
BAI2) and chain files, landed over four runs. Expected results are derived from
shared/spec/reconciliation.md, psp-settlement-csv.md and money.md, not from the models."""

from __future__ import annotations

import datetime as dt
import json

T0 = dt.datetime(2024, 1, 1)
HEADER = ("record_type,channel_reference,merchant_reference,transaction_at,currency,gross_minor,"
          "fee_minor,net_minor,payout_id,payout_date")


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def channel(cid, window=1, kind="card"):
    return {"id": cid, "name": cid, "channel_type": kind, "status": "active",
            "settlement_window_days": window, "created_at": T0, "updated_at": T0}


def payment(pid, amount, ch, *, currency="USD", status="success", ref=None,
            at="2024-03-01 10:00:00", method="card", refunded=0):
    return {"id": pid, "merchant_id": "mer_a", "merchant_reference": f"order-{pid}",
            "amount_minor": amount, "currency": currency, "status": status,
            "payment_method_type": method, "channel_id": ch,
            "channel_reference": ref if ref is not None else f"chref-{pid}",
            "risk_decision": "approve", "customer_id": "cus_1", "refunded_minor": refunded,
            "captured_at": ts(at) if status not in ("failed", "cancelled") else None,
            "created_at": ts(at), "updated_at": ts(at)}


def unreferenced(p: dict) -> dict:
    """A payment the ledger holds no channel_reference for (the channel's id never came back):
    a line whose channel reference names nothing may be fuzzy-matched to it. A line's unknown
    reference contradicts a payment whose own channel_reference differs (no fuzzy match)."""
    return {**p, "channel_reference": None}


def refund(rid, pid, amount, *, at="2024-03-01 15:00:00", currency="USD"):
    return {"id": rid, "payment_id": pid, "merchant_id": "mer_a", "amount_minor": amount,
            "currency": currency, "status": "succeeded", "reason": "requested_by_customer",
            "channel_reference": f"chref-{rid}", "succeeded_at": ts(at), "created_at": ts(at),
            "updated_at": ts(at)}


def price(pid, ch, bps, *, currency="USD", fixed=0, valid_from=T0, valid_to=None):
    return {"id": pid, "subject_type": "channel", "subject_id": ch, "currency": currency,
            "rate_bps": bps, "fixed_minor": fixed, "valid_from": valid_from,
            "valid_to": valid_to, "created_at": T0, "updated_at": T0}


def row(kind, ref, mref, at, ccy, gross, fee, payout="", pdate=""):
    return ",".join([kind, ref or "", mref or "", at or "", ccy, str(gross), str(fee),
                     str(gross - fee), payout, pdate])


def psp(rows: list[str]) -> bytes:
    return ("\r\n".join([HEADER, *rows]) + "\r\n").encode()


AT = "2024-03-01T10:00:00Z"

# --- channels, prices, ledger ------------------------------------------------------------------

CHANNELS = [channel(c) for c in ("ch_ax", "ch_b1", "ch_b2", "ch_b3", "ch_b3p", "ch_b4", "ch_b5",
                                 "ch_d", "ch_f", "ch_h", "ch_eth")]
CHANNELS += [channel("ch_c", window=2), channel("ch_crypto_sim", window=0, kind="crypto")]
PRICES = [price(f"prc_{c}", c, 300) for c in ("ch_ax", "ch_b1", "ch_b2", "ch_b3", "ch_b3p",
                                               "ch_b4", "ch_b5")]
PRICES += [price("prc_c", "ch_c", 0), price("prc_c_eur", "ch_c", 0, currency="EUR"),
           price("prc_d", "ch_d", 0), price("prc_d_eur", "ch_d", 0, currency="EUR"),
           # ch_f: 1.00 % until 2024-03-01 12:00, 2.00 % from then
           price("prc_f_old", "ch_f", 100, valid_to=ts("2024-03-01 12:00:00")),
           price("prc_f_new", "ch_f", 200, valid_from=ts("2024-03-01 12:00:00")),
           # ch_h: 0.50 %: 500 -> 2.5 -> 3 half-up; 1500 -> 7.5 -> 8
           price("prc_h", "ch_h", 50),
           # ch_eth: 0.25 % on wei
           price("prc_eth", "ch_eth", 25, currency="ETH"),
           price("prc_crypto", "ch_crypto_sim", 0, currency="USDC")]

ETH_A = 123456789012345678901          # > 2^63
ETH_A_FEE = 308641972530864197         # round_half_up(ETH_A * 25 / 10000) = ...197.2525 -> 197
ETH_B = 10 ** 19 + 2                   # 10 ETH and 2 wei
ETH_B_FEE = 25 * 10 ** 15              # (10^19 + 2) * 25 / 10000 = 2.5e16 + 0.005 -> 2.5e16

BASE = "eip155:8453"
USDC = "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"
COLLECTION = "0xcf2f5e3ce56bdea96e82153b27612ccf9f75dc7d"
TX = {k: "0x" + (k * 32) for k in ("a1", "a2", "a3", "a4", "a5")}
# a1 unconfirmed, a2 reorged, a3 re-mined (same log index), a4 nobody's, a5 re-mined (new index)

PAYMENTS = [
    # exact references
    payment("pay_ax1", 1_000, "ch_ax"), payment("pay_ax2", 2_000, "ch_ax"),
    payment("pay_ax3", 3_000, "ch_ax"), payment("pay_ax4", 4_000, "ch_ax"),
    # payouts, one per bank format
    payment("pay_b1a", 1_000, "ch_b1", status="partially_refunded", refunded=500),
    payment("pay_b1b", 2_000, "ch_b1"),
    payment("pay_b2", 5_000, "ch_b2"), payment("pay_b3", 6_000, "ch_b3"),
    payment("pay_b3p", 7_000, "ch_b3p"), payment("pay_b4", 8_000, "ch_b4"),
    payment("pay_b5a", 1_000, "ch_b5"), payment("pay_b5b", 2_000, "ch_b5"),
    # fuzzy (T+2): payments with no channel reference of their own
    unreferenced(payment("pay_c1", 1_111, "ch_c")),
    unreferenced(payment("pay_c2a", 2_222, "ch_c")),
    unreferenced(payment("pay_c2b", 2_222, "ch_c", at="2024-03-01 11:00:00")),
    unreferenced(payment("pay_c3", 3_333, "ch_c")),
    unreferenced(payment("pay_c4", 4_444, "ch_c")),
    unreferenced(payment("pay_c5", 5_555, "ch_c", currency="EUR")),
    # break classes
    payment("pay_d_amt", 1_000, "ch_d"),
    payment("pay_d_ccy", 1_000, "ch_d"),
    payment("pay_d_failed", 1_000, "ch_d", status="failed"),
    payment("pay_d_cancel", 1_000, "ch_d", status="cancelled"),
    payment("pay_d_refunded", 1_000, "ch_d", status="refunded", refunded=1_000),
    payment("pay_d_rev", 1_000, "ch_d"),
    payment("pay_d_late", 1_000, "ch_d"),
    # fees
    payment("pay_f1", 10_000, "ch_f", at="2024-03-01 10:00:00"),
    payment("pay_f2", 10_000, "ch_f", at="2024-03-01 14:00:00"),
    payment("pay_f3", 10_000, "ch_f", at="2024-03-01 14:00:00"),
    payment("pay_h1", 500, "ch_h"), payment("pay_h2", 1_500, "ch_h"),
    payment("pay_eth_a", ETH_A, "ch_eth", currency="ETH"),
    payment("pay_eth_b", ETH_B, "ch_eth", currency="ETH"),
    # chain
    payment("pay_k_unconf", 1_000_000, "ch_crypto_sim", currency="USDC", ref=TX["a1"],
            method="crypto"),
    payment("pay_k_reorg", 2_000_000, "ch_crypto_sim", currency="USDC", ref=TX["a2"],
            method="crypto"),
    payment("pay_k_remine", 3_000_000, "ch_crypto_sim", currency="USDC", ref=TX["a3"],
            method="crypto"),
    payment("pay_k_remine2", 5_000_000, "ch_crypto_sim", currency="USDC", ref=TX["a5"],
            method="crypto"),
    # fuzzy: a line valued the day before the capture (T-1)
    unreferenced(payment("pay_c6", 6_666, "ch_c", at="2024-03-02 10:00:00")),
]
REFUNDS = [refund("re_b1", "pay_b1a", 500), refund("re_d_full", "pay_d_refunded", 1_000)]

LEDGER = {"channels": CHANNELS, "prices": PRICES, "payments": PAYMENTS, "refunds": REFUNDS}

# --- PSP settlement files ----------------------------------------------------------------------

PSP_FIRST = {
    "ch_ax_2024-03-02.csv": psp([
        row("payment", "chref-pay_ax1", "pay_ax1", AT, "USD", 1_000, 30),
        row("payment", "psp-mangled-ax2", "pay_ax2", AT, "USD", 2_000, 60),
        row("payment", "", "pay_ax3", AT, "USD", 3_000, 90),
        row("payment", "chref-pay_ax4", "", AT, "USD", 4_000, 120)]),
    "ch_b1_2024-03-02.csv": psp([
        row("payment", "chref-pay_b1a", "pay_b1a", AT, "USD", 1_000, 30, "po_b1", "2024-03-03"),
        row("payment", "chref-pay_b1b", "pay_b1b", AT, "USD", 2_000, 60, "po_b1", "2024-03-03"),
        row("refund", "chref-re_b1", "re_b1", "2024-03-01T15:00:00Z", "USD", -500, 0, "po_b1",
            "2024-03-03"),
        row("payout", "", "", "", "USD", 2_410, 0, "po_b1", "2024-03-03")]),
    "ch_b2_2024-03-02.csv": psp([
        row("payment", "chref-pay_b2", "pay_b2", AT, "USD", 5_000, 150, "po_b2", "2024-03-03"),
        row("payout", "", "", "", "USD", 4_850, 0, "po_b2", "2024-03-03")]),
    "ch_b3_2024-03-02.csv": psp([
        row("payment", "chref-pay_b3", "pay_b3", AT, "USD", 6_000, 180, "po_b3", "2024-03-03"),
        row("payout", "", "", "", "USD", 5_820, 0, "po_b3", "2024-03-03")]),
    "ch_b3p_2024-03-02.csv": psp([
        row("payment", "chref-pay_b3p", "pay_b3p", AT, "USD", 7_000, 210, "po_b3p", "2024-03-03"),
        row("payout", "", "", "", "USD", 6_790, 0, "po_b3p", "2024-03-03")]),
    "ch_b4_2024-03-02.csv": psp([
        row("payment", "chref-pay_b4", "pay_b4", AT, "USD", 8_000, 240, "po_b4", "2024-03-03"),
        row("payout", "", "", "", "USD", 7_760, 0, "po_b4", "2024-03-03")]),
    # a payout batch paying lines of two settlement days
    "ch_b5_2024-03-01.csv": psp([
        row("payment", "chref-pay_b5a", "pay_b5a", AT, "USD", 1_000, 30, "po_b5", "2024-03-03")]),
    "ch_b5_2024-03-02.csv": psp([
        row("payment", "chref-pay_b5b", "pay_b5b", AT, "USD", 2_000, 60, "po_b5", "2024-03-03"),
        row("payout", "", "", "", "USD", 2_910, 0, "po_b5", "2024-03-03")]),
    # fuzzy: unknown channel references
    "ch_c_2024-03-03.csv": psp([
        row("payment", "psp-c1", "", AT, "USD", 1_111, 0, "po_c", "2024-03-03")]),
    "ch_c_2024-03-02.csv": psp([
        row("payment", "psp-c2", "", AT, "USD", 2_222, 0),
        row("payment", "psp-c3a", "", AT, "USD", 3_333, 0),
        row("payment", "psp-c3b", "", AT, "USD", 3_333, 0),
        row("payment", "psp-c5", "", AT, "USD", 5_555, 0)]),
    "ch_c_2024-03-01.csv": psp([
        row("payment", "psp-c6", "", AT, "USD", 6_666, 0)]),
    "ch_c_2024-03-04.csv": psp([   # T+3 on a T+2 channel
        row("payment", "psp-c4", "", AT, "USD", 4_444, 0)]),
    "ch_d_2024-03-02.csv": psp([
        row("payment", "chref-pay_d_amt", "pay_d_amt", AT, "USD", 990, 0),
        row("payment", "chref-pay_d_ccy", "pay_d_ccy", AT, "EUR", 1_000, 0),
        row("payment", "chref-pay_d_failed", "pay_d_failed", AT, "USD", 1_000, 0),
        row("payment", "chref-pay_d_cancel", "pay_d_cancel", AT, "USD", 1_000, 0),
        row("payment", "chref-pay_d_refunded", "pay_d_refunded", AT, "USD", 1_000, 0),
        row("payment", "chref-pay_d_rev", "pay_d_rev", AT, "USD", 1_000, 0),
        # the channel says it refunded pay_d_rev, which the ledger never refunded
        row("refund", "psp-rev-refund", "pay_d_rev", "2024-03-01T16:00:00Z", "USD", -1_000, 0),
        row("payment", "ghost-d", "", AT, "USD", 700, 0)]),
    "ch_f_2024-03-02.csv": psp([
        row("payment", "chref-pay_f1", "pay_f1", "2024-03-01T10:00:00Z", "USD", 10_000, 100),
        row("payment", "chref-pay_f2", "pay_f2", "2024-03-01T14:00:00Z", "USD", 10_000, 100),
        row("payment", "chref-pay_f3", "pay_f3", "2024-03-01T14:00:00Z", "USD", 10_000, 200)]),
    "ch_h_2024-03-02.csv": psp([
        row("payment", "chref-pay_h1", "pay_h1", AT, "USD", 500, 3),
        row("payment", "chref-pay_h2", "pay_h2", AT, "USD", 1_500, 8)]),
    "ch_eth_2024-03-02.csv": psp([
        row("payment", "chref-pay_eth_a", "pay_eth_a", AT, "ETH", ETH_A, ETH_A_FEE),
        row("payment", "chref-pay_eth_b", "pay_eth_b", AT, "ETH", ETH_B, ETH_B_FEE)]),
}

# landed before the third run: the late lines
PSP_LATE = {
    "ch_d_2024-03-04.csv": psp([
        row("payment", "chref-pay_d_late", "pay_d_late", AT, "USD", 1_000, 0),
        row("refund", "chref-re_d_full", "re_d_full", "2024-03-01T15:00:00Z", "USD", -1_000, 0)]),
}

# --- bank statements ---------------------------------------------------------------------------


def _camt_entry(amount: str, inner: str) -> str:
    return (f'<Ntry><Amt Ccy="USD">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>'
            "<BookgDt><Dt>2024-03-03</Dt></BookgDt><ValDt><Dt>2024-03-03</Dt></ValDt>"
            f"<NtryDtls><TxDtls>{inner}</TxDtls></NtryDtls></Ntry>")


CAMT = f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
<BkToCstmrStmt><GrpHdr><MsgId>AUDITB-M1</MsgId><CreDtTm>2024-03-03T18:00:00+00:00</CreDtTm></GrpHdr>
<Stmt><Id>AUDITB-ST1</Id><ElctrncSeqNb>1</ElctrncSeqNb><CreDtTm>2024-03-03T18:00:00+00:00</CreDtTm>
<Acct><Id><IBAN>DE89370400440532013000</IBAN></Id><Ccy>USD</Ccy></Acct>
<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="USD">0.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2024-03-03</Dt></Dt></Bal>
<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="USD">101.70</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2024-03-03</Dt></Dt></Bal>
{_camt_entry("24.10", "<RmtInf><Ustrd>PSP SETTLEMENT ACQUIRER B1</Ustrd><Ustrd>po_b1</Ustrd></RmtInf>")}
{_camt_entry("48.50", "<Refs><EndToEndId>po_b2</EndToEndId></Refs>")}
{_camt_entry("29.10", "<Refs><EndToEndId>po_b5</EndToEndId></Refs>")}
</Stmt></BkToCstmrStmt></Document>
""".encode()

MT940 = """:20:AUDITB0303
:25:NL91ABNA0417164300
:28C:00001/001
:60F:C240302USD0,00
:61:2403030303C58,20NTRFNONREF
:86:166?00GUTSCHRIFT?109251?20SVWZ+PSP AUSZAHLUNG?21po_b3?32ACQUIRER B3
:61:2403030303C67,90NTRFNONREF
:86:PAYOUT FROM ACQUIRER B3P
po_b3p
:62F:C240303USD126,10
-""".replace("\n", "\r\n").encode()

BAI2 = b"""01,CLEARHOUSE,AUDITBANK,240303,0800,1,,,2/
02,CLEARHOUSE,AUDITBANK,1,240303,0800,USD,2/
03,123456789,USD,010,0,,,015,7760,,/
16,165,7760,Z,BR1,CR1,ACH CREDIT ACQUIRER B4
88,SETTLEMENT po_b4
49,15520,4/
98,15520,1,6/
99,15520,1,8/
"""

BANK_FIRST = {"auditb_camt_20240303.xml": CAMT, "auditb_mt940_20240303.sta": MT940,
              "auditb_bai2_20240303.bai2": BAI2}

# --- chain -------------------------------------------------------------------------------------

TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
BLOCK_TS = int(dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC).timestamp())


def _pad(address: str) -> str:
    return "0x" + "0" * 24 + address[2:]


def log(tx, value, block, *, index=0, removed=False, to=COLLECTION):
    return {"address": USDC, "topics": [TRANSFER, _pad("0x" + "11" * 20), _pad(to)],
            "data": "0x" + format(value, "064x"), "blockNumber": hex(block),
            "blockHash": "0x" + format(block, "064x"), "transactionHash": tx,
            "logIndex": hex(index), "blockTimestamp": hex(BLOCK_TS), "removed": removed}


def chain_file(latest, logs) -> bytes:
    return json.dumps({"network": BASE, "latest_block": latest, "logs": logs}).encode()


CHAIN_FIRST = {"eip155-8453_20240303.json": chain_file(1_000, [
    log(TX["a1"], 1_000_000, 995),                 # 6 confirmations
    log(TX["a2"], 2_000_000, 900),
    log(TX["a2"], 2_000_000, 900, removed=True),   # reorged away
    log(TX["a3"], 3_000_000, 900),
    log(TX["a4"], 4_000_000, 900),                 # nobody's payment
    log(TX["a5"], 5_000_000, 900, index=1),
])}
# the reorg takes TX a3's block; the transaction is mined again in block 950, same log index
CHAIN_LATE = {"eip155-8453_20240305.json": chain_file(1_100, [
    log(TX["a3"], 3_000_000, 900, removed=True),
    log(TX["a3"], 3_000_000, 950),
    log(TX["a5"], 5_000_000, 900, index=1, removed=True),
    log(TX["a5"], 5_000_000, 950, index=7),
])}
