"""An agent downloads its commission statements (CSV and PDF) from a published snapshot: the
commission lines by model and level, a late payment's adjustment line naming it, balances that
run from line to line; another agent's are a 404."""

from __future__ import annotations

import csv
import io
from datetime import date

from tests.serving.admin_helpers import agent, bearer, key_for, publish_agent_statements
from tests.serving.helpers import make_api


def test_agent_csv_and_pdf_show_adjustments_naming_the_late_item(oltp_url, make_settings):
    settings = make_settings(database_url=oltp_url)
    api = make_api(settings)
    agent_id, other_id = agent(api, "Agent Late"), agent(api, "Agent Other")
    _, key = key_for(api, agent_id=agent_id)
    publish_agent_statements(settings, [
        (agent_id, "USD", date(2026, 9, 1), date(2026, 9, 30), 500),
        (agent_id, "USD", date(2026, 10, 1), date(2026, 10, 31), 1_200, 75),
        (other_id, "USD", date(2026, 10, 1), date(2026, 10, 31), 9_999)])
    resp = api.client.get(f"/api/v1/settlements/{agent_id}?period=2026-10", headers=bearer(key))
    assert resp.status_code == 200, resp.text
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [(r["line_type"], r["line_id"], r["net_minor"], r["balance_minor"]) for r in rows] == [
        ("opening_balance", "", "", "500"),
        ("commission", "percentage:1", "1200", "1700"),
        ("adjustment", f"pay_late:{agent_id}:1", "75", "1775"),
        ("closing_balance", "", "1275", "1775")]
    assert rows[2]["description"] == "late payment pay_late of period 2026-09-01"
    pdf = api.client.get(f"/api/v1/settlements/{agent_id}?period=2026-10&format=pdf",
                         headers=bearer(key))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    from pypdf import PdfReader

    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "late payment pay_late of period 2026-09-01" in text
    assert api.client.get(f"/api/v1/settlements/{other_id}?period=2026-10",
                          headers=bearer(key)).status_code == 404
