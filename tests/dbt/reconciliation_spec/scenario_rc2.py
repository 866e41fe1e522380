"""The second audit's scenario (docs/audits/2026-12-05-reconciliation-psp-csv-2.md): ledger rows,
PSP settlement CSVs and bank statements (MT940, camt.053, BAI2) landed over two deliveries.
Every expectation is worked out by hand from shared/spec/reconciliation.md,
psp-settlement-csv.md and money.md (the tests say which sentence), not read off the models.

Conventions shared with scenario.py: `recon_grace_days` = 1 (the project's default), payments
captured on day D on a T+N channel are pending through D + N + 1 and a break from D + N + 2.
2024 is a leap year: 02-28 + 2 days = 03-01.
"""

from __future__ import annotations

from tests.dbt.reconciliation_spec.scenario import (
    channel,
    payment,
    price,
    psp,
    refund,
    row,
    unreferenced,
)

AT = "2024-03-01T10:00:00Z"

# --- channels, prices, ledger ------------------------------------------------------------------

CHANNELS = [channel(c) for c in ("ch_r", "ch_u", "ch_w", "ch_p", "ch_q")]
CHANNELS += [channel("ch_t0", window=0), channel("ch_v", window=2)]
# ch_p charges 3.00 % (the fees on its lines are right); the other channels have no price, so
# no fee_mismatch can arise on them
PRICES = [price("prc_p", "ch_p", 300)]

# RFC 4180: a platform id holding a comma and double quotes travels quoted, quotes doubled
ODD_ID = 'pay_q,"1"'

PAYMENTS = [
    # A. fully refunded in the ledger on 03-03, the channel's refund line comes 03-04
    payment("pay_r1", 1_000, "ch_r", status="refunded", refunded=1_000),
    # A'. fully refunded 03-01, the channel never reports the refund
    payment("pay_r2", 2_000, "ch_r", status="refunded", refunded=2_000),
    # B. captured 02-28 (T+1): a missing_in_channel break from 03-02, closed by a 03-04 line
    payment("pay_r3", 3_000, "ch_r", at="2024-02-28 10:00:00"),
    # E. captured 03-04: after the first run's day
    payment("pay_e1", 4_000, "ch_r", at="2024-03-04 10:00:00"),
    # C. one file with 12 lines: pay_u1 on line 2 and again on line 11
    *[payment(f"pay_u{i}", 1_000, "ch_u") for i in range(1, 11)],
    # D. a corrected file re-sent under the same name
    payment("pay_w1", 1_000, "ch_w"), payment("pay_w2", 2_000, "ch_w"),
    # payouts
    payment("pay_p1", 10_000, "ch_p"), payment("pay_p2", 20_000, "ch_p"),
    payment("pay_p3", 5_000, "ch_p"), payment("pay_p4", 4_000, "ch_p"),
    # T+0 channel
    payment("pay_t0a", 1_500, "ch_t0"),
    payment("pay_t0b", 2_500, "ch_t0", at="2024-03-02 10:00:00"),
    # RFC 4180 quoting
    payment(ODD_ID, 1_234, "ch_q"),
    # fuzzy on a T+2 channel: two candidates, one of them later named by its own line (by its
    # platform id: neither has a channel reference, so psp-v1's contradicts neither)
    unreferenced(payment("pay_v1a", 7_777, "ch_v")),
    unreferenced(payment("pay_v1b", 7_777, "ch_v", at="2024-03-01 11:00:00")),
]
REFUNDS = [refund("re_r1", "pay_r1", 1_000, at="2024-03-03 09:00:00"),
           refund("re_r2", "pay_r2", 2_000, at="2024-03-01 12:00:00")]

LEDGER = {"channels": CHANNELS, "prices": PRICES, "payments": PAYMENTS, "refunds": REFUNDS}


# --- PSP settlement files ----------------------------------------------------------------------

def pay(pid, amount, fee=0, payout="", pdate="", at=AT):
    return row("payment", f"chref-{pid}", pid, at, "USD", amount, fee, payout, pdate)


W_V1 = psp([row("payment", "chref-pay_w1", "pay_w1", AT, "USD", 990, 0)])
W_V2 = psp([row("payment", "chref-pay_w1", "pay_w1", AT, "USD", 990, 0),
            pay("pay_w2", 2_000)])

PSP_FIRST = {
    "ch_r_2024-03-02.csv": psp([pay("pay_r1", 1_000), pay("pay_r2", 2_000)]),
    # line 2: pay_u1; lines 3-10: pay_u3..pay_u10; line 11: pay_u1 again; line 12: pay_u2
    "ch_u_2024-03-02.csv": psp([pay("pay_u1", 1_000),
                                *[pay(f"pay_u{i}", 1_000) for i in range(3, 11)],
                                pay("pay_u1", 1_000), pay("pay_u2", 1_000)]),
    "ch_w_2024-03-02.csv": W_V1,
    "ch_p_2024-03-02.csv": psp([
        pay("pay_p1", 10_000, 300, "po_p1", "2024-03-03"),
        row("payout", "", "", "", "USD", 9_700, 0, "po_p1", "2024-03-03"),
        pay("pay_p2", 20_000, 600, "po_p2", "2024-03-03"),
        row("payout", "", "", "", "USD", 19_400, 0, "po_p2", "2024-03-03"),
        pay("pay_p3", 5_000, 150, "po_p3", "2024-03-03"),
        # a fee adjustment in the batch: gross 0, fee 25, net -25
        row("fee_adjustment", "adj-p3", "", AT, "USD", 0, 25, "po_p3", "2024-03-03"),
        row("payout", "", "", "", "USD", 4_825, 0, "po_p3", "2024-03-03"),
        pay("pay_p4", 4_000, 120, "po_p4", "2024-03-03"),
        row("payout", "", "", "", "USD", 3_880, 0, "po_p4", "2024-03-03")]),
    "ch_q_2024-03-02.csv": psp([
        'payment,,"pay_q,""1""",2024-03-01T10:00:00Z,USD,1234,0,1234,,']),
    "ch_v_2024-03-02.csv": psp([row("payment", "psp-v1", "", AT, "USD", 7_777, 0)]),
}

PSP_LATE = {
    "ch_r_2024-03-04.csv": psp([
        row("refund", "chref-re_r1", "re_r1", "2024-03-03T09:00:00Z", "USD", -1_000, 0),
        pay("pay_r3", 3_000, at="2024-02-28T10:00:00Z")]),
    "ch_u_2024-03-04.csv": psp([pay("pay_u2", 1_000)]),
    "ch_v_2024-03-04.csv": psp([pay("pay_v1a", 7_777)]),
    "ch_w_2024-03-02.csv": W_V2,   # the same name, corrected content
}


# --- bank statements ---------------------------------------------------------------------------

MT940 = """:20:AUDITRC2
:25:NL20INGB0001234567
:28C:00007/001
:60F:C240302USD0,00
:61:2403030303C97,00NTRFNONREF
:86:PSP PAYOUT PO_P1
:62F:C240303USD97,00
-""".replace("\n", "\r\n").encode()


def _camt(seq: int, day: str, entries: list[tuple[str, str]]) -> bytes:
    total = sum(int(a.replace(".", "")) for a, _ in entries)
    ntry = "".join(
        f'<Ntry><Amt Ccy="USD">{a}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>'
        f"<BookgDt><Dt>{day}</Dt></BookgDt><ValDt><Dt>{day}</Dt></ValDt>"
        f"<NtryDtls><TxDtls>{inner}</TxDtls></NtryDtls></Ntry>" for a, inner in entries)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
<BkToCstmrStmt><GrpHdr><MsgId>RC2-M{seq}</MsgId><CreDtTm>{day}T18:00:00+00:00</CreDtTm></GrpHdr>
<Stmt><Id>RC2-ST{seq}</Id><ElctrncSeqNb>{seq}</ElctrncSeqNb><CreDtTm>{day}T18:00:00+00:00</CreDtTm>
<Acct><Id><IBAN>DE02120300000000202051</IBAN></Id><Ccy>USD</Ccy></Acct>
<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="USD">0.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>{day}</Dt></Dt></Bal>
<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="USD">{total // 100}.{total % 100:02d}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>{day}</Dt></Dt></Bal>
{ntry}
</Stmt></BkToCstmrStmt></Document>
""".encode()


# po_p2 is credited one cent short; po_p4 is credited on 03-03 and again on 03-04
CAMT_1 = _camt(1, "2024-03-03", [
    ("193.99", "<RmtInf><Ustrd>PSP SETTLEMENT po_p2</Ustrd></RmtInf>"),
    ("38.80", "<Refs><EndToEndId>po_p4</EndToEndId></Refs>")])
CAMT_2 = _camt(2, "2024-03-04", [("38.80", "<Refs><EndToEndId>po_p4</EndToEndId></Refs>")])

# the payout id in the 16 record's own text, no 88 continuation
BAI2 = b"""01,CLEARHOUSE,AUDITBANK,240303,0800,1,,,2/
02,CLEARHOUSE,AUDITBANK,1,240303,0800,USD,2/
03,987654321,USD,010,0,,,015,4825,,/
16,165,4825,Z,BR9,CR9,PSP PAYOUT po_p3/
49,9650,3/
98,9650,1,5/
99,9650,1,7/
"""

BANK_FIRST = {"rc2_mt940_20240303.sta": MT940, "rc2_camt_20240303.xml": CAMT_1,
              "rc2_bai2_20240303.bai2": BAI2}
BANK_LATE = {"rc2_camt_20240304.xml": CAMT_2}
