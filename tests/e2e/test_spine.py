"""The spine end to end: simulate a day through the API -> extract -> dbt (Dagster) -> statement
download through the API; on SQLite+DuckDB and on Postgres, with the same figures on both."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from clearhouse.channel_files import write_day
from clearhouse.simulator import run_day, set_up_merchants
from ingest.files.warehouse_io import open_files_writer
from orchestration.run import run_pipeline
from serving.app import create_app
from serving.services.payments import price_in_force
from tests.conftest import create_pg_database, drop_pg_database, require_postgres
from warehouse.migrate import upgrade
from warehouse.models import Merchant, Payment, Refund
from warehouse.money import FxRate, Money, convert, fee_minor, refund_reversals

DAY = date(2026, 11, 20)
PAYMENTS = 150


def settlement_currency(engine, merchant_id: str) -> str:
    with Session(engine) as s:
        return s.get(Merchant, merchant_id).settlement_currency


def expected_statements(engine) -> dict[tuple[str, str], dict[str, int]]:
    """What each (merchant, currency) statement must say, from the API's own rows + money core."""
    figures: dict = defaultdict(lambda: defaultdict(int))
    with Session(engine) as s:
        # Wallet spends are the merchant's own stored value, not settled money: not on statements.
        payments = {p.id: p for p in s.scalars(select(Payment).where(
            Payment.captured_at.is_not(None), Payment.payment_method_type != "wallet"))}
        fees = {}
        for p in payments.values():
            price = price_in_force(s, subject_type="merchant", subject_id=p.merchant_id,
                                   currency=p.currency, at=p.captured_at)
            fees[p.id] = fee_minor(p.amount_minor, price.rate_bps, price.fixed_minor or 0)
            if p.captured_at.date() == DAY:
                f = figures[(p.merchant_id, p.currency)]
                f["gross"] += p.amount_minor
                f["fees"] += fees[p.id]
        refunds_of: dict[str, list] = defaultdict(list)
        for r in s.scalars(select(Refund).order_by(Refund.succeeded_at, Refund.id)):
            if r.payment_id in payments:  # not a wallet payment's refund
                refunds_of[r.payment_id].append(r)
        for pid, refunds in refunds_of.items():
            backs = refund_reversals(fees[pid], [r.amount_minor for r in refunds],
                                     payments[pid].amount_minor)
            for r, reversal in zip(refunds, backs, strict=True):
                if r.succeeded_at.date() == DAY:
                    f = figures[(r.merchant_id, r.currency)]
                    f["refunds"] += r.amount_minor
                    f["fees"] -= reversal
    return figures


def download(client, key, merchant_id, day: date = DAY) -> list[dict]:
    resp = client.get(f"/api/v1/settlements/{merchant_id}?period={day}&format=csv",
                      headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(resp.text)))


def check_pdf(client, merchant) -> None:
    """The PDF statement carries what the CSV carries: every statement, every line's reference
    and the balances, in major units."""
    from pypdf import PdfReader

    resp = client.get(f"/api/v1/settlements/{merchant.id}?period={DAY}&format=pdf",
                      headers={"Authorization": f"Bearer {merchant.api_key}"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(resp.content)).pages)
    assert merchant.name in text and DAY.isoformat() in text
    rows = download(client, merchant.api_key, merchant.id)
    assert rows, "the merchant has statements: the PDF check would prove nothing"
    for row in rows:
        if row["line_type"] == "opening_balance":
            assert row["statement_id"] in text
        elif row["line_type"] == "closing_balance":
            assert str(Money(int(row["balance_minor"]), row["currency"])) in text
        else:
            assert (row["payment_id"] or row["refund_id"]) in text
            assert str(Money(int(row["balance_minor"]), row["currency"])) in text


def check_agent_statements(client, engine, merchants) -> None:
    """Each agent downloads its own commission statements (CSV): lines add up to the closing
    balance; another agent's are a 404; an agent with merchants that paid earned something."""
    from serving.auth import new_api_key
    from warehouse.models import Agent

    with Session(engine) as s:
        agents = {a.id: a.name for a in s.scalars(select(Agent))}
        keys = {agent_id: new_api_key(s, agent_id=agent_id, role="agent")[1]
                for agent_id in agents}
        s.commit()
    earned_any = pdf_checked = False
    for agent_id, key in keys.items():
        resp = client.get(f"/api/v1/settlements/{agent_id}?period={DAY}",
                          headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 200, resp.text
        rows = list(csv.DictReader(io.StringIO(resp.text)))
        for closing in (r for r in rows if r["line_type"] == "closing_balance"):
            lines = [r for r in rows if r["statement_id"] == closing["statement_id"]
                     and r["line_type"] == "commission"]
            assert sum(int(r["net_minor"]) for r in lines) == int(closing["net_minor"])
            assert int(closing["balance_minor"]) == int(closing["net_minor"])  # first day
            earned_any |= int(closing["earned_minor"]) > 0
            if int(closing["earned_minor"]) > 0 and not pdf_checked:
                check_agent_pdf(client, key, agent_id, agents[agent_id], rows)
                pdf_checked = True
    assert earned_any and pdf_checked
    check_agent_withdrawal(client, keys)
    one, other = list(keys)[:2]
    resp = client.get(f"/api/v1/settlements/{other}?period={DAY}",
                      headers={"Authorization": f"Bearer {keys[one]}"})
    assert resp.status_code == 404


def check_agent_withdrawal(client, keys: dict[str, str]) -> None:
    """Once the day's commission periods have ended, an agent can withdraw exactly what its latest
    commission statement says it earned, per currency, and not a minor unit more."""
    clock = {"Clearhouse-Test-Clock": "2026-12-01T09:00:00Z"}  # every period of DAY has ended
    withdrawn = False
    for agent_id, key in keys.items():
        auth = {"Authorization": f"Bearer {key}", **clock}
        rows = list(csv.DictReader(io.StringIO(client.get(
            f"/api/v1/settlements/{agent_id}?period={DAY}", headers=auth).text)))
        closing = {r["currency"]: int(r["balance_minor"])
                   for r in sorted(rows, key=lambda r: r["period_end"])
                   if r["line_type"] == "closing_balance"}
        resp = client.get("/api/v1/balances", headers=auth)
        assert resp.status_code == 200, resp.text
        available = {b["currency"]: int(b["available_minor"]) for b in resp.json()["data"]}
        assert available == closing, agent_id
        for ccy, amount in closing.items():
            if amount <= 0 or withdrawn:
                continue
            for extra, status in ((1, 422), (0, 201)):
                resp = client.post("/api/v1/withdrawals", headers={
                    **auth, "Idempotency-Key": f"e2e-{agent_id}-{ccy}-{extra}"}, json={
                    "amount_minor": str(amount + extra), "currency": ccy, "destination": "iban-1"})
                assert resp.status_code == status, resp.text
            withdrawn = True
            after = client.get(f"/api/v1/balances?currency={ccy}", headers=auth).json()["data"]
            assert after[0]["available_minor"] == "0"
    assert withdrawn


def check_agent_pdf(client, key, agent_id, agent_name, rows) -> None:
    """The agent's PDF commission statement shows its name, each statement and every balance."""
    from pypdf import PdfReader

    resp = client.get(f"/api/v1/settlements/{agent_id}?period={DAY}&format=pdf",
                      headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(resp.content)).pages)
    assert agent_name in text
    for row in rows:
        assert row["statement_id"] in text or row["line_type"] != "opening_balance"
        assert str(Money(int(row["balance_minor"]), row["currency"])) in text


def run_spine(make_settings, **urls) -> dict:
    settings = make_settings(**urls)
    upgrade(settings.oltp_url)
    app = create_app(settings)
    merchants = set_up_merchants(app.state.engine, settings.home_dir / "demo" / "creds.json")
    with TestClient(app) as client:
        first = run_day(client, merchants, day=DAY, payments=PAYMENTS, seed=7, concurrency=1)
        assert not first.errors and first.payments == PAYMENTS
        assert first.declined > 0 and first.refunds > 0
        assert first.wallet_topups >= 3 and first.wallet_spends == 2 * first.wallet_topups
        written = write_day(app.state.engine, settings.landing_dir, DAY)
        assert written["psp"] >= 3 and written["bank"] >= 2 and written["fx"] == 1
        # the books as of the next day: DAY closed, the next day open (and quiet)
        result = run_pipeline(settings, days=[DAY], ephemeral=True, as_of=DAY + timedelta(days=1))
        # The marts finance reads carry their figures into the Dagster UI.
        statements_meta = result["marts"]["fct_settlement_statements"]
        assert statements_meta["dagster/row_count"] == 2 * len(merchants)  # daily merchants
        assert "| currency | status | statements |" in statements_meta["summary"]
        assert {"fct_platform_revenue", "rpt_reconciliation_daily",
                "fct_reconciliation_breaks"} <= set(result["marts"])
        landed = landed_figures(settings, app.state.engine)
        expected = expected_statements(app.state.engine)
        by_name = {}
        for m in merchants:
            rows = download(client, m.api_key, m.id)
            settle = settlement_currency(app.state.engine, m.id)
            closings = [r for r in rows if r["line_type"] == "closing_balance"]
            # One statement for the day, in the merchant's settlement currency (all converted).
            assert [r["currency"] for r in closings] == [settle]
            [closing] = closings
            lines = [r for r in rows if r["line_type"] in ("payment", "refund")]
            assert {r["txn_currency"] for r in lines} == {c for (mid, c) in expected if mid == m.id}
            for ccy in {r["txn_currency"] for r in lines}:
                exp = expected[(m.id, ccy)]
                mine = [r for r in lines if r["txn_currency"] == ccy]
                # Ties out to the API's payments, in their own currency, to the minor unit.
                assert sum(int(r["txn_gross_minor"]) for r in mine
                           if r["line_type"] == "payment") == exp["gross"]
                assert -sum(int(r["txn_gross_minor"]) for r in mine
                            if r["line_type"] == "refund") == exp["refunds"]
                assert sum(int(r["txn_fee_minor"]) for r in mine) == exp["fees"]
                by_name[(m.name, ccy)] = (exp["gross"], exp["refunds"], exp["fees"], len(mine))
            for r in lines:  # every converted line: money.md's rule with the rate it names
                if r["txn_currency"] != settle:
                    assert r["fx_rate_id"], r
                    rate = FxRate(r["fx_rate_id"], r["txn_currency"], settle,
                                  Decimal(r["fx_rate"]), "ecb", DAY)
                    assert int(r["gross_minor"]) == convert(
                        Money(int(r["txn_gross_minor"]), r["txn_currency"]), rate).money.amount_minor
            assert int(closing["net_minor"]) == sum(int(r["net_minor"]) for r in lines)
            assert int(closing["fee_minor"]) == sum(int(r["fee_minor"]) for r in lines)
            assert int(closing["balance_minor"]) == int(closing["net_minor"])  # first day
            by_name[(m.name, "closing")] = int(closing["balance_minor"])
            # the next day had no activity: its (open) statement carries the balance, no lines
            quiet = download(client, m.api_key, m.id, DAY + timedelta(days=1))
            assert [r["line_type"] for r in quiet] == ["opening_balance", "closing_balance"]
            assert {int(r["balance_minor"]) for r in quiet} == {int(closing["balance_minor"])}

        # Re-running the day and the pipeline doubles nothing.
        again = run_day(client, merchants, day=DAY, payments=PAYMENTS, seed=7, concurrency=1)
        assert again.replayed == PAYMENTS and not again.errors
        run_pipeline(settings, days=[DAY], ephemeral=True)
        for m in merchants[:3]:
            rows = download(client, m.api_key, m.id)
            for closing in (r for r in rows if r["line_type"] == "closing_balance"):
                assert int(closing["balance_minor"]) == by_name[(m.name, "closing")]

        # Another merchant's statement is a 404; a file was written per merchant.
        other = client.get(f"/api/v1/settlements/{merchants[1].id}?period={DAY}",
                           headers={"Authorization": f"Bearer {merchants[0].api_key}"})
        assert other.status_code == 404
        files = sorted((settings.statements_dir / DAY.isoformat()).glob("*.csv"))
        assert len(files) == len(merchants)
        assert len(list((settings.statements_dir / DAY.isoformat()).glob("*.pdf"))) == len(merchants)
        agent_files = settings.statements_dir / DAY.isoformat() / "agents"
        assert sorted(p.stem for p in agent_files.glob("*.csv")) == \
            sorted(p.stem for p in agent_files.glob("*.pdf")) != []
        check_pdf(client, merchants[0])
        check_lineage_query(settings)
        check_agent_statements(client, app.state.engine, merchants)
        # The channels' files again (the same bytes): loaded once, nothing doubles.
        write_day(app.state.engine, settings.landing_dir, DAY)
        run_pipeline(settings, days=[DAY], ephemeral=True)
        assert landed_figures(settings, app.state.engine) == landed
    app.state.engine.dispose()
    by_name[("files", "")] = landed
    return by_name


README = Path(__file__).resolve().parents[2] / "README.md"


def check_lineage_query(settings) -> None:
    """The README's one query from a statement line to its payment, channel line, bank credit and
    commissions works as printed, for a card payment of an agent's merchant."""
    text = README.read_text()
    block = text.split("**From a statement line to everything behind it**", 1)[1]
    query = block.split("```sql", 1)[1].split("```", 1)[0]
    writer = open_files_writer(settings)
    try:
        [(line_id,)] = writer.fetchall(
            "SELECT min(sl.line_id) FROM analytics.fct_settlement_statement_lines sl "
            "JOIN analytics.fct_payments p ON p.payment_id = sl.payment_id "
            "JOIN analytics.fct_commissions c ON c.event_id = sl.payment_id "
            "JOIN analytics.fct_reconciliation_matches m ON m.payment_id = sl.payment_id "
            "WHERE sl.item_type = 'payment' AND p.channel_id LIKE 'ch_card%'")
        assert line_id, "no card payment with commissions: the lineage check would prove nothing"
        rows = writer.fetchall(query.replace("'payment:pay_...'", f"'{line_id}'").rstrip("; \n"))
    finally:
        writer.close()
    assert rows
    for (found, _sid, status, _channel, match_type, psp_line, payout, bank_credit, _tx,
         beneficiary, level, commission) in rows:
        assert found == line_id and status in ("success", "partially_refunded", "refunded")
        assert match_type == "exact_reference" and psp_line and payout and bank_credit
        assert beneficiary and level >= 1 and commission is not None


def landed_figures(settings, engine) -> tuple:
    """The channels' files for the day loaded in full: one PSP line per captured card/wallet-less
    payment, and each payout's bank credit equal to its PSP payout row."""
    writer = open_files_writer(settings)
    try:
        statuses = dict(writer.fetchall(
            "SELECT status, count(*) FROM raw.landed_files GROUP BY status"))
        psp_payments = writer.fetchall(
            "SELECT count(*), CAST(sum(gross_minor) AS VARCHAR(40)) FROM raw.psp_lines "
            "WHERE record_type = 'payment' AND format = 'psp_csv' AND superseded_by IS NULL")[0]
        payouts = dict(writer.fetchall(
            "SELECT payout_id, CAST(gross_minor AS VARCHAR(40)) FROM raw.psp_lines "
            "WHERE record_type = 'payout' AND superseded_by IS NULL"))
        credits = dict(writer.fetchall(
            "SELECT coalesce(end_to_end_id, customer_reference), "
            "CAST(amount_minor AS VARCHAR(40)) "
            "FROM raw.bank_statement_lines WHERE superseded_by IS NULL"))
        continuity_ok = not writer.fetchall(
            "SELECT 1 FROM raw.bank_statements WHERE balance_check = 'mismatch'")
    finally:
        writer.close()
    with Session(engine) as s:
        captured = s.scalars(select(Payment).where(
            Payment.captured_at.is_not(None), Payment.payment_method_type.not_in(
                ("wallet", "crypto")))).all()
    assert statuses == {"loaded": statuses.get("loaded", 0)} and statuses["loaded"] >= 6
    assert psp_payments[0] == len(captured)
    assert int(psp_payments[1]) == sum(p.amount_minor for p in captured)
    fiat = {k: v for k, v in payouts.items() if k.split("_")[-2] not in ("usdc", "usdt")}
    assert fiat and all(credits.get(pid) == amount for pid, amount in fiat.items())
    assert continuity_ok
    return (statuses["loaded"], psp_payments[0], int(psp_payments[1]), len(fiat),
            sum(int(v) for v in fiat.values()))


@pytest.mark.slow
def test_spine_gives_the_same_statements_on_duckdb_and_postgres(make_settings, tmp_path, capfd):
    embedded = run_spine(make_settings, home=tmp_path / "embedded")
    # run_pipeline without verbose: none of dbt's log lines reach stdout.
    assert "Running with dbt=" not in capfd.readouterr().out
    require_postgres()
    oltp, warehouse = create_pg_database("ch_e2e_api"), create_pg_database("ch_e2e_wh")
    try:
        on_postgres = run_spine(make_settings, home=tmp_path / "pg", database_url=oltp,
                                warehouse_url=warehouse)
    finally:
        from warehouse.connections import _engine_for

        _engine_for.cache_clear()
        drop_pg_database(oltp)
        drop_pg_database(warehouse)
    assert embedded == on_postgres
    assert len(embedded) >= 8
