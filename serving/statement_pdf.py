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

SUMMARY = (("Opening balance", "opening_balance_minor"), ("Gross payments", "gross_minor"),
           ("Refunds", "refunds_minor"), ("Chargebacks", "chargebacks_minor"),
           ("Fees", "fees_minor"), ("Adjustments", "adjustments_minor"),
           ("Net activity", "net_activity_minor"), ("Payouts", "payouts_minor"),
           ("Closing balance", "closing_balance_minor"))
COLUMNS = (("Time (UTC)", 34), ("Type", 16), ("Reference", 62), ("Gross", 26), ("Fee", 20),
           ("Net", 26), ("Balance", 28))  # widths in mm: 212 of the landscape A4's 277


def _latin1(text: str) -> str:
    """The PDF's core fonts cover Latin-1 only: anything else shows as '?', never an error."""
    return text.encode("latin-1", "replace").decode("latin-1")


def _money(minor, currency: str) -> str:
    return str(Money(int(minor), currency))


def _document(kind: str, who: str, entity_id: str, start: date, end: date):
    """A landscape A4 document with the Clearhouse header: kind, who, period, generated."""
    from fpdf import FPDF

    pdf = FPDF(orientation="L", format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.set_title(f"{kind} {entity_id} {start}..{end}")
    pdf.set_author("Clearhouse")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 9, f"Clearhouse {kind.lower()}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    for text in (_latin1(who), f"Period: {start.isoformat()} to {end.isoformat()} (UTC days)",
                 f"Generated: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"):
        pdf.cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
    return pdf


def render(settings: Settings, merchant_id: str, merchant_name: str, start: date,
           end: date) -> bytes:
    """The whole document; a statement with no activity in the period says so."""
    pdf = _document("Settlement statement", f"Merchant: {merchant_name} ({merchant_id})",
                    merchant_id, start, end)
    heads = statements.statements(settings, merchant_id, start, end)
    if not heads:
        pdf.ln(4)
        pdf.cell(0, 6, "No statement activity in this period.", new_x="LMARGIN", new_y="NEXT")
    lines = statements.statement_lines(settings, merchant_id, start, end)
    pending = next(lines, None)
    for head in heads:
        statement_id, currency = head["statement_id"], head["currency"]
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 7, f"Statement {statement_id} - {currency}, {head['settlement_cycle']} "
                       f"{head['period_start']} to {head['period_end']} ({head['status']}, "
                       f"settles {head['settles_on']})", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=9)
        for label, key in SUMMARY:
            pdf.cell(45, 5.5, label)
            pdf.cell(50, 5.5, _money(head[key], currency), align="R", new_x="LMARGIN",
                     new_y="NEXT")
        pdf.ln(2)
        pdf.set_font("Helvetica", "B", 8)
        for title, width in COLUMNS:
            pdf.cell(width, 6, title, border="B", align="L" if width > 30 else "R")
        pdf.ln()
        pdf.set_font("Helvetica", size=8)
        balance = int(head["opening_balance_minor"])
        while pending is not None and pending["statement_id"] == statement_id:
            line = pending
            balance += int(line["net_minor"])
            reference = (line["payment_id"] or line["refund_id"] or line["payout_id"]
                         or line["adjustment_id"] or line["line_id"])
            cells = (str(line["occurred_at"])[:19], line["line_type"], reference,
                     _money(line["gross_minor"], currency), _money(line["fee_minor"], currency),
                     _money(line["net_minor"], currency), _money(balance, currency))
            for text, (_title, width) in zip(cells, COLUMNS, strict=True):
                pdf.cell(width, 5, text, align="L" if width > 30 else "R")
            pdf.ln()
            if line["description"] or line["fx_rate_id"]:  # why a line is there, which rate
                pdf.set_font("Helvetica", "I", 7)
                note = "; ".join(x for x in (
                    line["description"],
                    line["created_by"] and f"by {line['created_by']}",  # a manual adjustment
                    line["fx_rate_id"] and f"{Money(int(line['txn_gross_minor']), line['txn_currency'])}"
                    f" at {line['fx_rate']} ({line['fx_rate_id']})") if x)
                pdf.cell(0, 4, _latin1("    " + note[:160]), new_x="LMARGIN", new_y="NEXT")
                pdf.set_font("Helvetica", size=8)
            pending = next(lines, None)
    return bytes(pdf.output())


AGENT_COLUMNS = (("Model", 40), ("Level", 16), ("Payments", 22), ("Refunds", 22),
                 ("Earned", 34), ("Reversed", 34), ("Net", 34), ("Balance", 34))


def render_agent(settings: Settings, agent_id: str, agent_name: str, start: date,
                 end: date) -> bytes:
    """An agent's commission statements (settlement.md): per statement the opening balance, one
    row per model and level with earned, reversed and net, and the closing balance - the rows of
    the agent CSV (serving.statements.stream_agent_csv), laid out as a document."""
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO("".join(
        statements.stream_agent_csv(settings, agent_id, start, end)))))
    pdf = _document("Commission statement", f"Agent: {agent_name} ({agent_id})", agent_id,
                    start, end)
    if not rows:
        pdf.ln(4)
        pdf.cell(0, 6, "No commission in this period.", new_x="LMARGIN", new_y="NEXT")
    for row in rows:
        currency = row["currency"]
        if row["line_type"] == "opening_balance":
            pdf.ln(4)
            pdf.set_font("Helvetica", "B", 12)
            pdf.cell(0, 7, f"Statement {row['statement_id']} - {currency}, {row['period_start']}"
                           f" to {row['period_end']}", new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", size=9)
            pdf.cell(0, 6, f"Opening balance {_money(row['balance_minor'], currency)}",
                     new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", "B", 8)
            for title, width in AGENT_COLUMNS:
                pdf.cell(width, 6, title, border="B", align="L" if width == 40 else "R")
            pdf.ln()
            pdf.set_font("Helvetica", size=8)
        elif row["line_type"] in ("commission", "adjustment"):
            if row["line_type"] == "adjustment":  # a late row or a correction, named below
                pdf.set_font("Helvetica", "I", 8)
                pdf.cell(0, 5, _latin1(row["description"]), new_x="LMARGIN", new_y="NEXT")
            cells = (row["model"], row["level"], row["payment_count"], row["refund_count"],
                     *(_money(row[k], currency) for k in ("earned_minor", "reversed_minor",
                                                          "net_minor", "balance_minor")))
            for text, (_title, width) in zip(cells, AGENT_COLUMNS, strict=True):
                pdf.cell(width, 5, str(text), align="L" if width == 40 else "R")
            pdf.ln()
            pdf.set_font("Helvetica", size=8)
        else:
            pdf.set_font("Helvetica", "B", 9)
            pdf.cell(0, 6, f"Earned {_money(row['earned_minor'], currency)}, reversed "
                           f"{_money(row['reversed_minor'], currency)}, net "
                           f"{_money(row['net_minor'], currency)}; closing balance "
                           f"{_money(row['balance_minor'], currency)}",
                     new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", size=8)
    return bytes(pdf.output())


def chunked(document: bytes, chunk: int = 64 * 1024) -> Iterator[bytes]:
    for offset in range(0, len(document), chunk):
        yield document[offset:offset + chunk]


def stream(settings: Settings, merchant_id: str, merchant_name: str, start: date,
           end: date, chunk: int = 64 * 1024) -> Iterator[bytes]:
    return chunked(render(settings, merchant_id, merchant_name, start, end), chunk)
