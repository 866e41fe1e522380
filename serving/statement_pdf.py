"""Settlement statements as PDF documents (fpdf2): a header, then per statement (one per
currency and period) its balances and its lines with a running balance.

The figures are the same the CSV carries (serving/statements.py reads them from the marts);
amounts are shown in major units by the money core (`Money`), never through float. fpdf2
costs ~1 s to import, so it is imported only when a PDF is asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

from serving import statements
from warehouse.money import Money
from warehouse.settings import Settings

SUMMARY = (("Opening balance", 5), ("Gross payments", 6), ("Refunds", 7), ("Fees", 8),
           ("Net activity", 9), ("Payouts", 10), ("Closing balance", 11))
COLUMNS = (("Time (UTC)", 34), ("Type", 16), ("Reference", 62), ("Gross", 26), ("Fee", 20),
           ("Net", 26), ("Balance", 28))  # widths in mm: 212 of the landscape A4's 277


def _money(minor, currency: str) -> str:
    return str(Money(int(minor), currency))


def render(settings: Settings, merchant_id: str, merchant_name: str, start: date,
           end: date) -> bytes:
    """The whole document; a statement with no activity in the period says so."""
    from fpdf import FPDF

    pdf = FPDF(orientation="L", format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.set_title(f"Settlement statement {merchant_id} {start}..{end}")
    pdf.set_author("Clearhouse")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 9, "Clearhouse settlement statement", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    for text in (f"Merchant: {merchant_name} ({merchant_id})",
                 f"Period: {start.isoformat()} to {end.isoformat()} (UTC days)",
                 f"Generated: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"):
        pdf.cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
    heads = statements.statements(settings, merchant_id, start, end)
    if not heads:
        pdf.ln(4)
        pdf.cell(0, 6, "No statement activity in this period.", new_x="LMARGIN", new_y="NEXT")
    lines = statements.statement_lines(settings, merchant_id, start, end)
    pending = next(lines, None)
    for head in heads:
        statement_id, currency, opening = head[0], head[4], int(head[5])
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 7, f"Statement {statement_id} - {currency}, {head[2]} to {head[3]}",
                 new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=9)
        for label, index in SUMMARY:
            pdf.cell(45, 5.5, label)
            pdf.cell(50, 5.5, _money(head[index], currency), align="R", new_x="LMARGIN",
                     new_y="NEXT")
        pdf.ln(2)
        pdf.set_font("Helvetica", "B", 8)
        for title, width in COLUMNS:
            pdf.cell(width, 6, title, border="B", align="L" if width > 30 else "R")
        pdf.ln()
        pdf.set_font("Helvetica", size=8)
        balance = opening
        while pending is not None and pending[0] == statement_id:
            _sid, line_type, line_id, payment_id, refund_id, occurred_at, gross, fee, net = pending
            balance += int(net)
            cells = (str(occurred_at)[:19], line_type, payment_id or refund_id or line_id,
                     _money(gross, currency), _money(fee, currency), _money(net, currency),
                     _money(balance, currency))
            for text, (_title, width) in zip(cells, COLUMNS, strict=True):
                pdf.cell(width, 5, text, align="L" if width > 30 else "R")
            pdf.ln()
            pending = next(lines, None)
    return bytes(pdf.output())


def stream(settings: Settings, merchant_id: str, merchant_name: str, start: date,
           end: date, chunk: int = 64 * 1024) -> Iterator[bytes]:
    document = render(settings, merchant_id, merchant_name, start, end)
    for offset in range(0, len(document), chunk):
        yield document[offset:offset + chunk]
