"""The third audit's scenario (docs/audits/2026-12-05-reconciliation-psp-csv-3.md): the chain
side (crypto and x402 payments against ERC-20 Transfer logs), payout batches with a mismatch in
each bank format, fuzzy matching at the edges of a T+3 window, fees across a price change, and
days of the daily report with only breaks or only pending payments. Every expectation is worked
out by hand from shared/spec/reconciliation.md and psp-settlement-csv.md (the tests say which
sentence), not read off the models.

Conventions shared with scenario.py: `recon_grace_days` = 1 (the project's default), a payment
captured on day D on a T+N channel is pending through D + N + 1 and a break from D + N + 2;
`recon_chain_confirmations` = 10 (the default), confirmations = newest block - block + 1 (a log
in the newest block has 1). All files are landed before the first run; a run for a past day
sees no file settled, no bank line booked and no block mined after it.
"""

from __future__ import annotations

from tests.dbt.reconciliation_spec.scenario import (
    COLLECTION,
    USDC,
    _pad,
    chain_file,
    channel,
    log,
    payment,
    price,
    psp,
    row,
    ts,
    unreferenced,
)

AT = "2024-03-01T10:00:00Z"

# --- chain -------------------------------------------------------------------------------------

# Base Sepolia's USDC contract: a real token contract, but not the asset USDC on Base mainnet
SEPOLIA_USDC = "0x036cbd53842c5426634e7929541ec2318f3dcf7e"
OTHER = "0x" + "22" * 20
FEE_WALLET = "0x" + "33" * 20
# an x402 seller's payTo as the gateway records it: EIP-55 mixed-case checksum spelling
PAY_TO_EIP55 = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
TX = {k: "0x" + (k * 32) for k in ("b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9")}
# the x402 gateway wrote its transaction hash with upper-case hex digits
TX_X402_LEDGER = "0x" + ("b3" * 32).upper()
HEAD = 1_000


def _crypto(pid, amount, tx):
    return payment(pid, amount, "ch_crypto_sim", currency="USDC", ref=tx, method="crypto")


CHAIN_PAYMENTS = [
    _crypto("pay_k_token", 1_000_000, TX["b1"]),     # Transfer of another token contract
    _crypto("pay_k_value", 2_000_000, TX["b2"]),     # Transfer of 1.99 for 2.00
    payment("pay_k_x402", 3_000_000, "ch_x402_sim", currency="USDC", ref=TX_X402_LEDGER,
            method="x402"),
    _crypto("pay_k_to", 4_000_000, TX["b4"]),        # Transfer to another address
    _crypto("pay_k_conf10", 5_000_000, TX["b5"]),    # exactly 10 confirmations
    _crypto("pay_k_conf9", 6_000_000, TX["b6"]),     # 9 confirmations
    _crypto("pay_k_feelog", 7_000_000, TX["b7"]),    # a fee Transfer beside the payment's
    _crypto("pay_k_twice", 8_000_000, TX["b8"]),     # two Transfers of the amount in one tx
    # the ledger says failed; its Transfer is on chain, confirmed, to the collection address
    payment("pay_k_failed", 9_000_000, "ch_crypto_sim", currency="USDC", ref=TX["b9"],
            method="crypto", status="failed"),
]

X402_USAGE = [{
    "id": "xu_k1", "merchant_id": "mer_a", "rule_id": "xr_k1", "http_method": "GET",
    "path": "/v1/weather", "scheme": "exact", "x402_version": 1, "network": "eip155:8453",
    "asset": USDC, "amount_atomic": 3_000_000, "pay_to": PAY_TO_EIP55,
    "payer": "0x" + "44" * 20, "token_id": None, "status": "settled", "upstream_status": 200,
    "tx_hash": TX_X402_LEDGER, "payment_id": "pay_k_x402", "error_reason": None,
    "settled_at": ts("2024-03-01 10:00:00"), "created_at": ts("2024-03-01 10:00:00"),
    "updated_at": ts("2024-03-01 10:00:00")}]


def _log(tx, value, block=900, *, index=0, to=COLLECTION, token=USDC):
    entry = log(tx, value, block, index=index, to=to)
    entry["address"] = token
    entry["topics"][2] = _pad(to)
    return entry


CHAIN = {"eip155-8453_20240301.json": chain_file(HEAD, [
    _log(TX["b1"], 1_000_000, token=SEPOLIA_USDC),
    _log(TX["b2"], 1_990_000),
    _log(TX["b3"], 3_000_000, to=PAY_TO_EIP55.lower()),
    _log(TX["b4"], 4_000_000, to=OTHER),
    _log(TX["b5"], 5_000_000, HEAD - 9),             # 1000 - 991 + 1 = 10
    _log(TX["b6"], 6_000_000, HEAD - 8),             # 1000 - 992 + 1 = 9
    _log(TX["b7"], 300_000, index=0, to=FEE_WALLET),
    _log(TX["b7"], 7_000_000, index=1),
    _log(TX["b8"], 8_000_000, index=0),
    _log(TX["b8"], 8_000_000, index=1),
    _log(TX["b9"], 9_000_000),
]),
    # a second getLogs window overlapping the first: the payment's log of b7 again, same block
    "eip155-8453_20240302.json": chain_file(HEAD, [_log(TX["b7"], 7_000_000, index=1)])}

# --- payouts and bank statements ---------------------------------------------------------------

PAYOUT_PAYMENTS = [
    payment("pay_xm1", 10_000, "ch_xm"), payment("pay_xm2", 5_000, "ch_xm"),
    payment("pay_xc1", 20_000, "ch_xc"), payment("pay_xc2", 1_000, "ch_xc"),
    payment("pay_xa1", 8_000, "ch_xa"),
    # its line comes only in the corrected ch_xa file (run 2)
    payment("pay_xa2", 3_000, "ch_xa", at="2024-03-02 10:00:00"),
    payment("pay_xg1", 5_000, "ch_xg"),
]


def pay(pid, amount, fee=0, payout="", pdate="", at=AT, ref=None):
    return row("payment", f"chref-{pid}" if ref is None else ref, pid, at, "USD", amount, fee,
               payout, pdate)


def payout(pid, amount, pdate="2024-03-03"):
    return row("payout", "", "", "", "USD", amount, 0, pid, pdate)


PAYOUT_FILES = {
    # po_xm1: 9700 + 4850 = 14550; the MT940 credit is 145,60 (+10)
    "ch_xm_2024-03-02.csv": psp([pay("pay_xm1", 10_000, 300, "po_xm1", "2024-03-03"),
                                 pay("pay_xm2", 5_000, 150, "po_xm1", "2024-03-03"),
                                 payout("po_xm1", 14_550)]),
    # po_xc1: 19400, credited 195.00 (+100) on camt EndToEndId; po_xc2: 970, credited 9.70 on
    # camt Ustrd, and the bank debits 9.70 with the same reference
    "ch_xc_2024-03-02.csv": psp([pay("pay_xc1", 20_000, 600, "po_xc1", "2024-03-03"),
                                 payout("po_xc1", 19_400),
                                 pay("pay_xc2", 1_000, 30, "po_xc2", "2024-03-03"),
                                 payout("po_xc2", 970)]),
    # po_xa1: 7760, credited 77.35 (-25) on BAI2 with the id in the 88 continuation
    "ch_xa_2024-03-02.csv": psp([pay("pay_xa1", 8_000, 240, "po_xa1", "2024-03-03"),
                                 payout("po_xa1", 7_760)]),
    # po_xg1: the payout row says 4900 while its one line nets 4850; the bank credits 49.00
    "ch_xg_2024-03-02.csv": psp([pay("pay_xg1", 5_000, 150, "po_xg1", "2024-03-03"),
                                 payout("po_xg1", 4_900)]),
}

# Before run 2, ch_xa re-sends its 03-02 file under the same name with a line it had left out
# (pay_xa2, in no payout); po_xa1's lines and row are unchanged.
PAYOUT_FILES_LATE = {
    "ch_xa_2024-03-02.csv": psp([pay("pay_xa1", 8_000, 240, "po_xa1", "2024-03-03"),
                                 payout("po_xa1", 7_760),
                                 pay("pay_xa2", 3_000, 90)]),
}

MT940 = """:20:AUDITRC3
:25:NL39RABO0300065264
:28C:00003/001
:60F:C240302USD0,00
:61:2403030303C145,60NTRFNONREF
:86:PSP PAYOUT po_xm1
:61:2403030303C12,34NTRFNONREF
:86:PSP PAYOUT po_xm9
:61:2403030303D20,00NTRFNONREF
:86:ACCOUNT FEE MARCH
:62F:C240303USD137,94
-""".replace("\n", "\r\n").encode()


def _camt_entry(amount: str, side: str, inner: str) -> str:
    return (f'<Ntry><Amt Ccy="USD">{amount}</Amt><CdtDbtInd>{side}</CdtDbtInd><Sts>BOOK</Sts>'
            "<BookgDt><Dt>2024-03-03</Dt></BookgDt><ValDt><Dt>2024-03-03</Dt></ValDt>"
            f"<NtryDtls><TxDtls>{inner}</TxDtls></NtryDtls></Ntry>")


def _camt(extra: str = "", closing: str = "244.00") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
<BkToCstmrStmt><GrpHdr><MsgId>RC3-M1</MsgId><CreDtTm>2024-03-03T18:00:00+00:00</CreDtTm></GrpHdr>
<Stmt><Id>RC3-ST1</Id><ElctrncSeqNb>1</ElctrncSeqNb><CreDtTm>2024-03-03T18:00:00+00:00</CreDtTm>
<Acct><Id><IBAN>FR7630006000011234567890189</IBAN></Id><Ccy>USD</Ccy></Acct>
<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="USD">0.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2024-03-03</Dt></Dt></Bal>
<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="USD">{closing}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2024-03-03</Dt></Dt></Bal>
{_camt_entry("195.00", "CRDT", "<Refs><EndToEndId>po_xc1</EndToEndId></Refs><RmtInf><Ustrd>ACQUIRER XC SETTLEMENT</Ustrd></RmtInf>")}
{_camt_entry("9.70", "CRDT", "<Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs><RmtInf><Ustrd>SETTLEMENT po_xc2</Ustrd></RmtInf>")}
{_camt_entry("9.70", "DBIT", "<Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs><RmtInf><Ustrd>RECALL po_xc2</Ustrd></RmtInf>")}
{_camt_entry("49.00", "CRDT", "<Refs><EndToEndId>po_xg1</EndToEndId></Refs>")}
{extra}
</Stmt></BkToCstmrStmt></Document>
""".encode()


CAMT = _camt()
# Before run 2 the bank re-issues the same statement (same Stmt Id, sequence number and day) with
# an entry it had left out; the payout credits are unchanged.
CAMT_REISSUED = _camt(_camt_entry("1.00", "CRDT", "<RmtInf><Ustrd>INTEREST</Ustrd></RmtInf>"),
                      "245.00")

BAI2 = b"""01,CLEARHOUSE,AUDITBANK,240303,0800,1,,,2/
02,CLEARHOUSE,AUDITBANK,1,240303,0800,USD,2/
03,555000111,USD,010,0,,,015,7735,,/
16,165,7735,Z,BR7,CR7,ACH CREDIT ACQUIRER XA
88,SETTLEMENT po_xa1
49,15470,4/
98,15470,1,6/
99,15470,1,8/
"""

BANK = {"rc3_mt940_20240303.sta": MT940, "rc3_camt_20240303.xml": CAMT,
        "rc3_bai2_20240303.bai2": BAI2}
BANK_LATE = {"rc3_camt_20240303_reissued.xml": CAMT_REISSUED}

# --- fuzzy on a T+3 channel --------------------------------------------------------------------

# The fuzzy candidates have no channel reference of their own (unreferenced): a line's unknown
# channel reference contradicts a payment whose channel_reference differs.
FUZZY_PAYMENTS = [
    # its line valued 03-01: T+0, the window's first day
    unreferenced(payment("pay_xf0", 1_001, "ch_xf")),
    unreferenced(payment("pay_xf3", 1_003, "ch_xf")),    # valued 03-04: T+3, the last day
    unreferenced(payment("pay_xf4", 1_004, "ch_xf")),    # valued 03-05: T+4, one day outside
    # pay_xfa is matched by its reference; the unreferenced 20.00 line has pay_xfb only
    payment("pay_xfa", 2_000, "ch_xf"), unreferenced(payment("pay_xfb", 2_000, "ch_xf")),
    # pay_xfd is matched by its platform id (merchant_reference, no channel reference on either
    # side: but for its own line it would be psp-xfe's candidate too)
    unreferenced(payment("pay_xfd", 4_000, "ch_xf")),
    unreferenced(payment("pay_xfe", 4_000, "ch_xf")),
]

FUZZY_FILES = {
    "ch_xf_2024-03-01.csv": psp([row("payment", "psp-xf0", "", AT, "USD", 1_001, 0)]),
    "ch_xf_2024-03-02.csv": psp([pay("pay_xfa", 2_000),
                                 row("payment", "psp-xfb", "", AT, "USD", 2_000, 0),
                                 row("payment", "", "pay_xfd", AT, "USD", 4_000, 0),
                                 row("payment", "psp-xfe", "", AT, "USD", 4_000, 0)]),
    "ch_xf_2024-03-04.csv": psp([row("payment", "psp-xf3", "", AT, "USD", 1_003, 0)]),
    "ch_xf_2024-03-05.csv": psp([row("payment", "psp-xf4", "", AT, "USD", 1_004, 0)]),
}

# --- fees across a price change ----------------------------------------------------------------

CHANGE = ts("2024-03-02 00:00:00")
PRICES = [price("prc_xp_old", "ch_xp", 200, valid_to=CHANGE),
          price("prc_xp_new", "ch_xp", 300, valid_from=CHANGE),
          # 2.90 % + 0.30 on ch_xq: 10000 -> 290 + 30 = 320
          price("prc_xq", "ch_xq", 290, fixed=30)]

FEE_PAYMENTS = [
    payment("pay_xp1", 10_000, "ch_xp"),   # 03-01: 2 % -> 200; the line says 200
    payment("pay_xp2", 10_000, "ch_xp"),   # 03-01: 2 % -> 200; the line says 300
    payment("pay_xp3", 10_000, "ch_xp", at="2024-03-02 09:00:00"),  # 3 % -> 300; says 300
    payment("pay_xq1", 10_000, "ch_xq"), payment("pay_xq2", 10_000, "ch_xq"),
]

FEE_FILES = {
    # settled on 03-02, when 3 % is in force; the payments were made under 2 %
    "ch_xp_2024-03-02.csv": psp([pay("pay_xp1", 10_000, 200), pay("pay_xp2", 10_000, 300)]),
    "ch_xp_2024-03-03.csv": psp([pay("pay_xp3", 10_000, 300, at="2024-03-02T09:00:00Z")]),
    "ch_xq_2024-03-02.csv": psp([pay("pay_xq1", 10_000, 320), pay("pay_xq2", 10_000, 290)]),
}

# --- daily figures: a day with only breaks, a day with only a pending payment -------------------

DAILY_PAYMENTS = [
    # captured 02-28 on T+1, no line: missing_in_channel first seen 02-28 + 1 + 1 + 1 = 03-02
    payment("pay_xb1", 1_000, "ch_xb", at="2024-02-28 10:00:00"),
    # captured 03-02 on T+2, no line: pending through 03-05
    payment("pay_xn1", 2_500, "ch_xn", at="2024-03-02 10:00:00"),
]

DAILY_FILES = {"ch_xb_2024-03-02.csv": psp([row("payment", "ghost-xb", "", AT, "USD", 500, 0)])}

# --- ledger ------------------------------------------------------------------------------------

CHANNELS = [channel(c) for c in ("ch_xm", "ch_xc", "ch_xa", "ch_xg", "ch_xp", "ch_xq", "ch_xb")]
CHANNELS += [channel("ch_xf", window=3), channel("ch_xn", window=2),
             channel("ch_crypto_sim", window=0, kind="crypto"),
             channel("ch_x402_sim", window=0, kind="x402")]

LEDGER = {"channels": CHANNELS, "prices": PRICES,
          "payments": CHAIN_PAYMENTS + PAYOUT_PAYMENTS + FUZZY_PAYMENTS + FEE_PAYMENTS
          + DAILY_PAYMENTS,
          "x402_usage": X402_USAGE}

PSP = {**PAYOUT_FILES, **FUZZY_FILES, **FEE_FILES, **DAILY_FILES}
