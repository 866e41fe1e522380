"""Factories for the administration and tenancy tests: operators, agents, keys, statements."""

from __future__ import annotations

import uuid
from datetime import date

from tests.serving.helpers import Api


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def admin(api: Api) -> dict[str, str]:
    return bearer(api.admin_token)


def operator(api: Api, role: str = "finance", email: str | None = None) -> str:
    """A new operator through the API; returns its JWT."""
    resp = api.client.post("/api/v1/users", headers=admin(api),
                           json={"email": email or f"{role}-{uuid.uuid4().hex[:8]}@clearhouse.test",
                                 "role": role})
    assert resp.status_code == 201, resp.text
    return resp.json()["token"]


def agent(api: Api, name: str, parent_id: str | None = None,
          valid_from: str = "2021-01-01T00:00:00Z") -> str:
    resp = api.client.post("/api/v1/agents", headers=admin(api),
                           json={"name": name, "parent_id": parent_id, "valid_from": valid_from})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def key_for(api: Api, *, merchant_id: str | None = None, agent_id: str | None = None,
            role: str | None = None) -> tuple[str, str]:
    """A new API key made by the platform admin; returns (key id, key)."""
    body = {"merchant_id": merchant_id, "agent_id": agent_id}
    if role:
        body["role"] = role
    resp = api.client.post("/api/v1/api-keys", headers=admin(api), json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"], resp.json()["key"]


def publish_statements(settings, merchant_ids: list[str], day: date = date(2026, 11, 20),
                       payouts_minor: int = 0, periods: list[tuple] | None = None) -> None:
    """Publish one statement per merchant as the pipeline would (DuckDB warehouse: Parquet):
    a 1000 USD payment with a 29 fee, less `payouts_minor` paid out in the period. `periods`,
    rows of (period_start, period_end, settlement_cycle), gives each merchant one such
    statement per period instead, balances chained in order of period start as
    fct_settlement_statements chains them."""
    heads, lines = [], []
    for merchant_id in merchant_ids:
        opening = 0
        for start, end, cycle in sorted(periods or [(day, day, "daily")]):
            sid = f"{merchant_id}:USD:{start.isoformat()}"
            closing = opening + 971 - payouts_minor
            heads.append((sid, merchant_id, cycle, start, end, end, "closed", "USD", opening, 1000,
                          0, 0, 29, 0, opening + 971, payouts_minor, closing))
            lines.append((sid, merchant_id, start, end, "payment", "ln1", "pay_x", None, None,
                          None, f"{start.isoformat()} 10:00:00", "USD", 1000, 29, None, 1, 1000,
                          29, 971, None, None))
            opening = closing
    publish_statement_marts(settings, heads, lines)


def publish_statement_marts(settings, heads: list[tuple], lines: list[tuple]) -> None:
    """fct_settlement_statements and fct_settlement_statement_lines as Parquet, from rows in
    the column order below (what the API reads of them)."""
    import duckdb

    from warehouse.published import published_path

    settings.published_dir.mkdir(parents=True, exist_ok=True)
    money = "DECIMAL(38,0)"
    con = duckdb.connect()
    con.execute(f"""CREATE TABLE s (statement_id VARCHAR, merchant_id VARCHAR,
        settlement_cycle VARCHAR, period_start DATE, period_end DATE, settles_on DATE,
        status VARCHAR, currency VARCHAR, opening_balance_minor {money}, gross_minor {money},
        refunds_minor {money}, chargebacks_minor {money}, fees_minor {money},
        adjustments_minor {money}, net_activity_minor {money}, payouts_minor {money},
        closing_balance_minor {money})""")
    con.execute(f"""CREATE TABLE l (statement_id VARCHAR, merchant_id VARCHAR, period_start DATE,
        period_end DATE, line_type VARCHAR, line_id VARCHAR, payment_id VARCHAR,
        refund_id VARCHAR, payout_id VARCHAR, adjustment_id VARCHAR, occurred_at TIMESTAMP,
        txn_currency VARCHAR, txn_gross_minor {money}, txn_fee_minor {money}, fx_rate_id VARCHAR,
        fx_rate DECIMAL(28,12), gross_minor {money}, fee_minor {money}, net_minor {money},
        description VARCHAR, created_by VARCHAR)""")
    if heads:
        con.executemany(f"INSERT INTO s VALUES ({', '.join('?' * 17)})", heads)
    if lines:
        con.executemany(f"INSERT INTO l VALUES ({', '.join('?' * 21)})", lines)
    for table, mart in (("s", "fct_settlement_statements"), ("l", "fct_settlement_statement_lines")):
        con.execute(f"COPY {table} TO '{published_path(settings, mart)}' (FORMAT parquet)")
    con.close()


def publish_agent_statements(settings, statements: list[tuple]) -> None:
    """Publish agents' commission statements as the pipeline would (DuckDB warehouse: Parquet):
    rows of (agent_id, currency, period_start, period_end, net_minor[, late_minor]): a commission
    line of net_minor, and with late_minor an adjustment line for a late payment 'pay_late'
    naming it; each agent's balances run from 0 in period order, as
    fct_agent_commission_statements computes them."""
    import duckdb

    from warehouse.published import published_path

    settings.published_dir.mkdir(parents=True, exist_ok=True)
    money = "DECIMAL(38,0)"
    con = duckdb.connect()
    con.execute(f"""CREATE TABLE s (statement_id VARCHAR, agent_id VARCHAR, currency VARCHAR,
        period_start DATE, period_end DATE, settlement_cycle VARCHAR,
        opening_balance_minor {money}, earned_minor {money}, reversed_minor {money},
        net_minor {money}, closing_balance_minor {money}, payment_count BIGINT,
        refund_count BIGINT, adjustments_minor {money}, adjustment_count BIGINT,
        status VARCHAR)""")
    con.execute(f"""CREATE TABLE l (statement_id VARCHAR, line_id VARCHAR, line_type VARCHAR,
        agent_id VARCHAR, currency VARCHAR, statement_cycle VARCHAR, period_start DATE,
        period_end DATE, model VARCHAR, level INTEGER, commission_id VARCHAR, event_id VARCHAR,
        natural_period_start DATE, earned_minor {money}, reversed_minor {money},
        net_minor {money}, payment_count BIGINT, refund_count BIGINT, description VARCHAR)""")
    balance: dict[tuple[str, str], int] = {}
    for agent_id, ccy, start, end, net, *late in sorted(statements,
                                                         key=lambda r: (r[0], r[1], r[2])):
        late_minor = late[0] if late else 0
        sid = f"{agent_id}:{ccy}:{start.isoformat()}"
        opening = balance.get((agent_id, ccy), 0)
        total = net + late_minor
        balance[(agent_id, ccy)] = opening + total
        con.execute("INSERT INTO s VALUES (?, ?, ?, ?, ?, 'monthly', ?, ?, 0, ?, ?, ?, 0, ?, ?,"
                    " 'closed')", [sid, agent_id, ccy, start, end, opening, net, total,
                                   opening + total, 1 + bool(late), late_minor, int(bool(late))])
        con.execute("INSERT INTO l VALUES (?, 'percentage:1', 'commission', ?, ?, 'monthly', ?,"
                    " ?, 'percentage', 1, NULL, NULL, NULL, ?, 0, ?, 1, 0, NULL)",
                    [sid, agent_id, ccy, start, end, net, net])
        if late:
            con.execute("INSERT INTO l VALUES (?, ?, 'adjustment', ?, ?, 'monthly', ?, ?, "
                        "'percentage', 1, ?, 'pay_late', ?, ?, 0, ?, 1, 0, ?)",
                        [sid, f"pay_late:{agent_id}:1", agent_id, ccy, start, end,
                         f"pay_late:{agent_id}:1", start, late_minor, late_minor,
                         "late payment pay_late of period 2026-09-01"])
    for table, mart in (("s", "fct_agent_commission_statements"),
                        ("l", "fct_agent_commission_statement_lines")):
        con.execute(f"COPY {table} TO '{published_path(settings, mart)}' (FORMAT parquet)")
    con.close()


def create_postgres_statements(pg_url: str, rows: list[tuple]) -> None:
    """The statement mart's balance columns as the pipeline leaves them on a Postgres warehouse
    (schema analytics); rows: (statement_id, merchant_id, period_start, period_end, settles_on,
    currency, opening, closing, payouts)."""
    import psycopg

    with psycopg.connect(pg_url) as con:
        con.execute("CREATE SCHEMA analytics")
        con.execute("""CREATE TABLE analytics.fct_settlement_statements (statement_id text,
            merchant_id text, period_start date, period_end date, settles_on date,
            currency text, opening_balance_minor numeric(38,0),
            closing_balance_minor numeric(38,0), payouts_minor numeric(38,0))""")
        con.cursor().executemany("INSERT INTO analytics.fct_settlement_statements VALUES "
                                 "(%s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
