"""Withdrawals on SQLite and Postgres: available balance from the settled statement, requests
within and above it, concurrency, approve/reject/mark-paid with ledger legs, roles, tenancy,
agents, idempotency; and serving.statements.settled_balances on a published snapshot."""

from __future__ import annotations

import threading
import uuid
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from serving import statements
from tests.serving.admin_helpers import (
    agent,
    bearer,
    create_postgres_statements,
    key_for,
    operator,
    publish_agent_statements,
    publish_statements,
)
from tests.serving.helpers import make_api, race
from warehouse.models import AuditLogEntry, LedgerEntry, OutboxEvent, Withdrawal

CLOCK = {"Clearhouse-Test-Clock": "2026-11-22T12:00:00Z"}  # settled through 2026-11-21 (T+1)
DAY = date(2026, 11, 20)


@pytest.fixture
def api(oltp_url, make_settings):
    return make_api(make_settings(database_url=oltp_url))


@pytest.fixture
def settled(monkeypatch):
    """Stand-in for the published statements: {(merchant_id, currency): (closing, period_end)},
    each statement settling the day after its period (T+1, as these tests' merchants do)."""
    book: dict[tuple[str, str], tuple[int, date]] = {}

    def fake(settings, merchant_id, day, currency=None):
        return [statements.SettledBalance(ccy, f"{mid}:{ccy}:{end}", end, closing)
                for (mid, ccy), (closing, end) in sorted(book.items())
                if mid == merchant_id and end + timedelta(days=1) <= day
                and currency in (None, ccy)]

    monkeypatch.setattr(statements, "settled_balances", fake)
    return book


def withdraw(api, key, amount="1000", currency="USD", idem=None, destination="acct-1"):
    return api.client.post("/api/v1/withdrawals",
                           json={"amount_minor": amount, "currency": currency,
                                 "destination": destination},
                           headers={**bearer(key), **CLOCK,
                                    "Idempotency-Key": idem or uuid.uuid4().hex})


def act(api, token, withdrawal_id, action, body=None, idem=None):
    return api.client.post(f"/api/v1/withdrawals/{withdrawal_id}/{action}", json=body,
                           headers={**bearer(token), **CLOCK,
                                    "Idempotency-Key": idem or uuid.uuid4().hex})


def available(api, key, currency="USD") -> str:
    resp = api.client.get(f"/api/v1/balances?currency={currency}", headers={**bearer(key), **CLOCK})
    assert resp.status_code == 200, resp.text
    (row,) = resp.json()["data"]
    return row["available_minor"]


def count(api, model, *where) -> int:
    with Session(api.engine) as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def funded(api, settled, closing=10_000, name="Acme"):
    merchant_id, key = api.merchant(name)
    settled[(merchant_id, "USD")] = (closing, DAY)
    return merchant_id, key


def test_within_balance_is_requested_with_audit_and_outbox(api, settled):
    merchant_id, key = funded(api, settled)
    resp = withdraw(api, key, amount=4000)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["id"].startswith("po_") and body["status"] == "requested"
    assert body["amount_minor"] == "4000" and body["merchant_id"] == merchant_id
    assert body["owner_type"] == "merchant" and body["destination"] == "acct-1"
    balance = api.client.get("/api/v1/balances", headers={**bearer(key), **CLOCK}).json()["data"]
    assert balance == [{
        "object": "balance", "owner_type": "merchant", "owner_id": merchant_id, "currency": "USD",
        "available_minor": "6000", "settled_minor": "10000", "withheld_minor": "4000",
        "settled_through": "2026-11-21",
        "statement": {"id": f"{merchant_id}:USD:2026-11-20", "period_end": "2026-11-20",
                      "closing_balance_minor": "10000", "currency": "USD"}}]
    with Session(api.engine) as s:
        event = s.scalars(select(OutboxEvent).where(OutboxEvent.aggregate_id == body["id"])).one()
        assert event.event_type == "withdrawal.requested"
        assert event.payload["merchant_id"] == merchant_id  # webhooks route on it
        entry = s.scalars(select(AuditLogEntry).where(AuditLogEntry.resource_id == body["id"])).one()
        assert entry.action == "withdrawal.requested"
    assert count(api, LedgerEntry) == 0  # a request moves no money yet


def test_above_balance_is_422_and_writes_nothing(api, settled):
    _, key = funded(api, settled)
    resp = withdraw(api, key, amount="10001")
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "insufficient_available_balance"
    assert error["details"]["available_minor"] == "10000"
    assert error["details"]["requested_minor"] == "10001"
    assert count(api, Withdrawal) == 0 and count(api, OutboxEvent) == 0
    assert count(api, AuditLogEntry, AuditLogEntry.resource_type == "withdrawal") == 0
    assert withdraw(api, key, amount="10000").status_code == 201  # the whole balance is fine


def test_balance_uses_only_settled_periods_and_currency(api, settled):
    merchant_id, key = api.merchant()
    settled[(merchant_id, "USD")] = (5_000, date(2026, 11, 22))  # not settled yet at T+1
    assert available(api, key) == "0"
    assert withdraw(api, key, amount=1).status_code == 422
    settled[(merchant_id, "EUR")] = (700, DAY)
    assert available(api, key, "EUR") == "700"
    resp = withdraw(api, key, amount=701, currency="EUR")
    assert resp.status_code == 422 and resp.json()["error"]["details"]["available_minor"] == "700"


def test_two_requests_together_above_balance_second_refused(api, settled):
    _, key = funded(api, settled)
    assert withdraw(api, key, amount=6000).status_code == 201
    second = withdraw(api, key, amount=6000)
    assert second.status_code == 422
    assert second.json()["error"]["details"]["available_minor"] == "4000"
    assert count(api, Withdrawal) == 1


def test_concurrent_requests_never_exceed_the_balance(api, settled):
    merchant_id, key = funded(api, settled)
    results = []

    def hit():
        results.append(withdraw(api, key, amount=3000))

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in results) == [201] * 3 + [422] * 5, \
        [r.text for r in results]
    with Session(api.engine) as s:
        amounts = s.scalars(select(Withdrawal.amount_minor)
                            .where(Withdrawal.owner_id == merchant_id)).all()
    assert sum(amounts) == 9000
    assert available(api, key) == "1000"


def test_approve_posts_balanced_ledger_then_mark_paid(api, settled):
    merchant_id, key = funded(api, settled)
    wid = withdraw(api, key, amount=2500).json()["id"]
    finance = operator(api, "finance")
    approved = act(api, finance, wid, "approve")
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["status"] == "approved" and body["decided_by"].startswith("finance:")
    assert body["decided_at"] == "2026-11-22T12:00:00.000Z"
    with Session(api.engine) as s:
        legs = s.scalars(select(LedgerEntry).order_by(LedgerEntry.amount_minor)).all()
    assert [(leg.kind, leg.account, leg.currency, leg.amount_minor) for leg in legs] == [
        ("payout", "payouts_in_transit:USD", "USD", -2500),
        ("payout", f"merchant_payable:{merchant_id}", "USD", 2500)]
    assert len({leg.transaction_id for leg in legs}) == 1
    assert available(api, key) == "7500"  # approved still withheld

    assert act(api, finance, wid, "mark-paid").status_code == 403  # platform_admin only
    paid = api.client.post(f"/api/v1/withdrawals/{wid}/mark-paid", headers={
        **bearer(api.admin_token), "Clearhouse-Test-Clock": "2026-11-23T09:00:00Z",
        "Idempotency-Key": uuid.uuid4().hex})  # the bank transfer went out the next morning
    assert paid.status_code == 200 and paid.json()["status"] == "paid"
    # the statement dates the payout when it was paid; decided_at stays the approval
    assert (paid.json()["paid_at"], paid.json()["decided_at"]) == \
        ("2026-11-23T09:00:00.000Z", "2026-11-22T12:00:00.000Z")
    with Session(api.engine) as s:
        paid_legs = s.execute(select(LedgerEntry.account, LedgerEntry.amount_minor)
                              .where(LedgerEntry.transaction_id != legs[0].transaction_id)
                              .order_by(LedgerEntry.amount_minor)).all()
        events = s.scalars(select(OutboxEvent.event_type).order_by(OutboxEvent.created_at,
                                                                   OutboxEvent.id)).all()
    assert [tuple(r) for r in paid_legs] == [("bank:USD", -2500), ("payouts_in_transit:USD", 2500)]
    assert events == ["withdrawal.requested", "withdrawal.approved", "withdrawal.paid"]
    assert available(api, key) == "7500"  # statements do not show payouts yet

    again = act(api, api.admin_token, wid, "approve")
    assert again.status_code == 409 and again.json()["error"]["code"] == "illegal_transition"
    assert again.json()["error"]["message"] == f"withdrawal {wid} is paid and cannot become approved"
    assert act(api, api.admin_token, wid, "reject", {"reason": "late"}).status_code == 409
    assert count(api, LedgerEntry) == 4


def test_reject_frees_the_balance_and_needs_a_reason(api, settled):
    _, key = funded(api, settled)
    wid = withdraw(api, key, amount=10_000).json()["id"]
    assert available(api, key) == "0"
    missing = act(api, api.admin_token, wid, "reject", {})
    assert missing.status_code == 422 and missing.json()["error"]["details"]["field"] == "reason"
    rejected = act(api, api.admin_token, wid, "reject", {"reason": "destination not verified"})
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["reason"] == "destination not verified"
    assert available(api, key) == "10000"
    assert count(api, LedgerEntry) == 0
    assert act(api, api.admin_token, wid, "approve").status_code == 409
    assert act(api, api.admin_token, wid, "mark-paid").status_code == 409
    assert withdraw(api, key, amount=10_000).status_code == 201


def test_roles_and_tenancy(api, settled):
    merchant_id, key = funded(api, settled)
    other_id, other_key = funded(api, settled, name="Other")
    wid = withdraw(api, key, amount=100).json()["id"]
    other_wid = withdraw(api, other_key, amount=200).json()["id"]
    _, developer = key_for(api, merchant_id=merchant_id, role="merchant_developer")
    finance = operator(api, "finance")

    for credential in (developer, finance, api.admin_token):
        resp = withdraw(api, credential, amount=1)
        assert resp.status_code == 403, (credential, resp.text)
    assert act(api, key, wid, "approve").status_code == 403
    assert act(api, key, wid, "reject", {"reason": "x"}).status_code == 403
    assert api.client.get("/api/v1/withdrawals", headers=bearer(developer)).status_code == 403
    assert withdraw(api, key, amount=1, idem=None).status_code == 201

    # Another tenant's withdrawal is 404 (also for approving a missing one).
    assert api.client.get(f"/api/v1/withdrawals/{other_wid}", headers=bearer(key)).status_code == 404
    assert api.client.get(f"/api/v1/withdrawals/{wid}", headers=bearer(key)).status_code == 200
    assert act(api, api.admin_token, "po_missing", "approve").status_code == 404
    mine = api.client.get("/api/v1/withdrawals", headers=bearer(key)).json()
    assert {w["owner_id"] for w in mine["data"]} == {merchant_id} and len(mine["data"]) == 2
    everything = api.client.get("/api/v1/withdrawals?limit=2", headers=bearer(finance)).json()
    assert len(everything["data"]) == 2 and everything["has_more"] is True
    rest = api.client.get(f"/api/v1/withdrawals?starting_after={everything['data'][1]['id']}",
                          headers=bearer(finance)).json()
    assert [w["id"] for w in rest["data"]] == [wid] and rest["has_more"] is False
    assert api.client.get(f"/api/v1/withdrawals/{other_wid}",
                          headers=bearer(finance)).json()["owner_id"] == other_id

    # Balances: operators name the owner; a merchant cannot ask for another's.
    resp = api.client.get(f"/api/v1/balances?merchant_id={other_id}",
                          headers={**bearer(finance), **CLOCK})
    assert resp.status_code == 200 and resp.json()["data"][0]["available_minor"] == "9800"
    assert api.client.get("/api/v1/balances", headers=bearer(finance)).status_code == 422
    assert api.client.get(f"/api/v1/balances?merchant_id={other_id}",
                          headers=bearer(key)).status_code == 404


def test_agent_with_no_commission_statement_has_nothing_to_withdraw(api):
    agent_id = agent(api, "Agent A")
    _, agent_key = key_for(api, agent_id=agent_id)
    assert available(api, agent_key) == "0"  # nothing published yet
    resp = withdraw(api, agent_key, amount=1)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["details"] == {"field": "amount_minor", "available_minor": "0",
                                               "requested_minor": "1", "currency": "USD"}
    assert api.client.get("/api/v1/withdrawals", headers=bearer(agent_key)).json() == {
        "data": [], "has_more": False}
    assert count(api, Withdrawal) == 0


def agent_balance(api, key, clock: str, **query) -> dict:
    resp = api.client.get("/api/v1/balances", params={"currency": "USD", **query},
                          headers={**bearer(key), "Clearhouse-Test-Clock": clock})
    assert resp.status_code == 200, resp.text
    (row,) = resp.json()["data"]
    return row


def test_agent_withdraws_the_commission_of_ended_periods(oltp_url, make_settings):
    """No stand-in: an agent's balance is the closing balance of its latest commission statement
    whose period has ended (published as the pipeline publishes it), less its withdrawals."""
    settings = make_settings(database_url=oltp_url)
    api = make_api(settings)
    agent_id, other_id = agent(api, "Agent A"), agent(api, "Agent B")
    _, key = key_for(api, agent_id=agent_id)
    _, other_key = key_for(api, agent_id=other_id)
    publish_agent_statements(settings, [
        (agent_id, "USD", date(2026, 10, 1), date(2026, 10, 31), 1_200),
        (agent_id, "USD", date(2026, 11, 1), date(2026, 11, 30), 800),  # November still runs
        (other_id, "USD", date(2026, 10, 1), date(2026, 10, 31), 5_000)])
    row = agent_balance(api, key, "2026-11-22T12:00:00Z")
    assert (row["owner_type"], row["owner_id"], row["available_minor"]) == ("agent", agent_id,
                                                                             "1200")
    assert row["statement"]["id"] == f"{agent_id}:USD:2026-10-01"
    assert withdraw(api, key, amount=1_201).status_code == 422
    created = withdraw(api, key, amount=1_000)
    assert created.status_code == 201, created.text
    assert created.json()["agent_id"] == agent_id and created.json()["merchant_id"] is None
    assert available(api, key) == "200"
    finance = operator(api)
    for action in ("approve", "mark-paid"):
        assert act(api, finance if action == "approve" else api.admin_token,
                   created.json()["id"], action).status_code == 200
    with Session(api.engine) as s:  # approved: agent payable -> payouts in transit; paid: -> bank
        legs = s.execute(select(LedgerEntry.account, LedgerEntry.amount_minor)
                         .where(LedgerEntry.merchant_id == agent_id)).all()
    assert sorted((a.split(":")[0], int(m)) for a, m in legs) == sorted(
        [("agent_payable", 1_000), ("payouts_in_transit", -1_000),
         ("payouts_in_transit", 1_000), ("bank", -1_000)])
    # Once November has ended its commission is payable too; the paid 1,000 stays deducted.
    row = agent_balance(api, key, "2026-12-01T00:00:00Z")
    assert (row["available_minor"], row["settled_minor"], row["withheld_minor"]) == (
        "1000", "2000", "1000")
    # Each agent sees its own; finance names the agent; a merchant cannot look.
    assert agent_balance(api, other_key, "2026-12-01T00:00:00Z")["available_minor"] == "5000"
    assert agent_balance(api, finance, "2026-12-01T00:00:00Z",
                         agent_id=agent_id)["available_minor"] == "1000"
    assert api.client.get(f"/api/v1/balances?agent_id={agent_id}",
                          headers=bearer(other_key)).status_code == 404
    _, merchant_key = api.merchant()
    assert api.client.get(f"/api/v1/balances?agent_id={agent_id}",
                          headers=bearer(merchant_key)).status_code == 404


def test_idempotent_replay_and_key_reuse(api, settled):
    _, key = funded(api, settled)
    first = withdraw(api, key, amount=3000, idem="w-1")
    again = withdraw(api, key, amount=3000, idem="w-1")
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = withdraw(api, key, amount=3001, idem="w-1")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert count(api, Withdrawal) == 1
    # A refusal is replayed too, even after the balance would allow it.
    refused = withdraw(api, key, amount=8000, idem="w-2")
    assert refused.status_code == 422
    wid = first.json()["id"]
    assert act(api, api.admin_token, wid, "reject", {"reason": "dup"}, idem="r-1").status_code == 200
    replay = withdraw(api, key, amount=8000, idem="w-2")
    assert replay.status_code == 422 and replay.headers["Idempotent-Replayed"] == "true"
    wid2 = withdraw(api, key, amount=10).json()["id"]
    approved = act(api, api.admin_token, wid2, "approve", idem="a-1")
    replayed = act(api, api.admin_token, wid2, "approve", idem="a-1")
    assert approved.status_code == replayed.status_code == 200
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert count(api, LedgerEntry) == 2  # approved once


def test_bad_input_is_422(api, settled):
    _, key = funded(api, settled)
    for body, field in (({"amount_minor": "12.50", "currency": "USD", "destination": "a"},
                         "amount_minor"),
                        ({"amount_minor": 0, "currency": "USD", "destination": "a"},
                         "amount_minor"),
                        ({"amount_minor": 1, "currency": "XXQ", "destination": "a"}, "currency"),
                        ({"amount_minor": 1, "currency": "USD"}, "destination")):
        resp = api.client.post("/api/v1/withdrawals", json=body,
                               headers={**bearer(key), "Idempotency-Key": uuid.uuid4().hex})
        assert resp.status_code == 422 and resp.json()["error"]["details"]["field"] == field
    assert count(api, Withdrawal) == 0


# --- serving.statements.settled_balances against real published statements -------------------

ROWS = [  # merchant, currency, period, opening, closing, payouts in the period
    ("mer_a", "USD", date(2026, 11, 19), 0, 500, 100),
    ("mer_a", "USD", date(2026, 11, 20), 500, 971, 0),
    ("mer_a", "USD", date(2026, 11, 21), 971, 1500, 50),
    ("mer_a", "EUR", date(2026, 11, 18), 0, 42, 0),
    ("mer_b", "USD", date(2026, 11, 20), 0, 7, 0),
]


def _check_settled_balances(settings):
    # each statement settles the day after its period (settles_on = period_end + 1)
    got = statements.settled_balances(settings, "mer_a", date(2026, 11, 21))
    assert got == [
        statements.SettledBalance("EUR", "mer_a:EUR:2026-11-18", date(2026, 11, 18), 42, 0),
        statements.SettledBalance("USD", "mer_a:USD:2026-11-20", date(2026, 11, 20), 971, 100)]
    usd = statements.settled_balances(settings, "mer_a", date(2026, 11, 30), "USD")
    assert [(b.statement_id, b.closing_balance_minor, b.paid_out_minor) for b in usd] == \
        [("mer_a:USD:2026-11-21", 1500, 150)]
    assert statements.settled_balances(settings, "mer_a", date(2026, 11, 18)) == []
    assert statements.settled_balances(settings, "mer_z", date(2026, 11, 30)) == []


def test_settled_balances_from_published_parquet(make_settings):
    import duckdb

    from warehouse.published import published_path

    settings = make_settings()
    assert statements.settled_balances(settings, "mer_a", DAY) == []  # nothing published: 0
    settings.published_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    money = "DECIMAL(38,0)"
    con.execute(f"""CREATE TABLE s (statement_id VARCHAR, merchant_id VARCHAR, period_start DATE,
        period_end DATE, settles_on DATE, currency VARCHAR, opening_balance_minor {money},
        closing_balance_minor {money}, payouts_minor {money})""")
    con.execute("CREATE TABLE l (statement_id VARCHAR, merchant_id VARCHAR)")
    for merchant_id, ccy, day, opening, closing, payouts in ROWS:
        con.execute("INSERT INTO s VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [f"{merchant_id}:{ccy}:{day}", merchant_id, day, day,
                     day + timedelta(days=1), ccy, opening, closing, payouts])
    for table, mart in (("s", "fct_settlement_statements"), ("l", "fct_settlement_statement_lines")):
        con.execute(f"COPY {table} TO '{published_path(settings, mart)}' (FORMAT parquet)")
    con.close()
    _check_settled_balances(settings)


def test_settled_balances_from_postgres_analytics(make_settings, pg_url):
    settings = make_settings(warehouse_url=pg_url)
    assert statements.settled_balances(settings, "mer_a", DAY) == []  # no mart yet: 0
    create_postgres_statements(pg_url, [
        (f"{merchant_id}:{ccy}:{day}", merchant_id, day, day, day + timedelta(days=1), ccy,
         opening, closing, payouts)
        for merchant_id, ccy, day, opening, closing, payouts in ROWS])
    _check_settled_balances(settings)


def test_withdrawal_against_a_published_statement(oltp_url, make_settings):
    """No stand-in: the balance comes from a Parquet snapshot as the pipeline publishes it."""
    settings = make_settings(database_url=oltp_url)
    api = make_api(settings)
    merchant_id, key = api.merchant()
    assert available(api, key) == "0"  # nothing published yet
    publish_statements(settings, [merchant_id], DAY)  # closing balance 971 USD
    assert available(api, key) == "971"
    assert withdraw(api, key, amount=972).status_code == 422
    assert withdraw(api, key, amount=971).status_code == 201
    assert available(api, key) == "0"


def test_merchant_balance_after_a_cycle_change_counts_exactly_the_ended_periods(
        oltp_url, make_settings):
    """Monthly -> daily on 2 March: the March statement (1-31, opened first) and a daily one of
    2 March overlap, and the daily one's opening carries March's activity so far. In mid-March
    only the daily statement has ended: its own 971 is available, not March's; in April both
    are."""
    settings = make_settings(database_url=oltp_url)
    api = make_api(settings)
    merchant_id, key = api.merchant()
    publish_statements(settings, [merchant_id], periods=[
        (date(2026, 3, 1), date(2026, 3, 31), "monthly"),
        (date(2026, 3, 2), date(2026, 3, 2), "daily")])
    mid_march = agent_balance(api, key, "2026-03-10T08:00:00Z")
    assert (mid_march["available_minor"], mid_march["statement"]["id"]) == (
        "971", f"{merchant_id}:USD:2026-03-02")
    assert agent_balance(api, key, "2026-04-10T08:00:00Z")["available_minor"] == "1942"


def test_a_paid_withdrawal_on_the_statement_is_not_deducted_twice(oltp_url, make_settings):
    """Once the pipeline puts a paid withdrawal on the statement (payouts), the closing balance
    already carries it: the available balance must not subtract it again."""
    settings = make_settings(database_url=oltp_url)
    api = make_api(settings)
    merchant_id, key = api.merchant()
    publish_statements(settings, [merchant_id], DAY)  # 971 USD
    created = withdraw(api, key, amount=300)
    assert created.status_code == 201, created.text
    for action in ("approve", "mark-paid"):  # finance approves; the platform marks it paid
        assert act(api, api.admin_token, created.json()["id"], action).status_code == 200
    assert available(api, key) == "671"  # paid, not yet on a statement
    publish_statements(settings, [merchant_id], DAY, payouts_minor=300)  # now it is: closing 671
    assert available(api, key) == "671"


def test_agent_balance_after_a_cycle_change_counts_exactly_the_ended_periods(oltp_url,
                                                                            make_settings):
    """Monthly -> daily on 1 March: the March statement (1-31) and a daily one of 2 March overlap.
    On 3 March only the daily one has ended; from 1 April both have."""
    settings = make_settings(database_url=oltp_url)
    api = make_api(settings)
    agent_id = agent(api, "Agent Switch")
    _, key = key_for(api, agent_id=agent_id)
    publish_agent_statements(settings, [
        (agent_id, "USD", date(2026, 3, 1), date(2026, 3, 31), 100),
        (agent_id, "USD", date(2026, 3, 2), date(2026, 3, 2), 50)])
    assert agent_balance(api, key, "2026-03-03T08:00:00Z")["available_minor"] == "50"
    assert agent_balance(api, key, "2026-04-01T08:00:00Z")["available_minor"] == "150"


# --- under concurrency (SQLite serialises writers; Postgres locks the merchant) ---------


def withdrawn(api, merchant_id, statuses=("requested", "approved", "paid")):
    with Session(api.engine) as s:
        return s.scalars(select(Withdrawal.amount_minor).where(
            Withdrawal.owner_id == merchant_id, Withdrawal.status.in_(statuses))).all()


def test_many_uneven_concurrent_requests_stay_within_balance(api, settled):
    merchant_id, key = funded(api, settled, closing=10_000)
    results = race(12, lambda i: withdraw(api, key, amount=str(1000 + 500 * (i % 4))))
    assert all(r.status_code in (201, 422) for r in results), [r.text for r in results]
    total = sum(withdrawn(api, merchant_id))
    assert total <= 10_000
    assert int(available(api, key)) == 10_000 - total >= 0


def test_same_key_withdrawal_race_is_one_withdrawal(api, settled):
    merchant_id, key = funded(api, settled, closing=10_000)
    idem = uuid.uuid4().hex
    results = race(8, lambda i: withdraw(api, key, amount="3000", idem=idem))
    assert {r.status_code for r in results} == {201}, [r.text for r in results]
    assert len({r.json()["id"] for r in results}) == 1
    assert withdrawn(api, merchant_id) == [3000]


def test_requests_racing_a_reject(api, settled):
    merchant_id, key = funded(api, settled, closing=10_000)
    first = withdraw(api, key, amount="6000").json()

    def go(i):
        if i == 0:
            return act(api, api.admin_token, first["id"], "reject", {"reason": "no"})
        return withdraw(api, key, amount="3000")

    results = race(6, go)
    assert results[0].status_code == 200, results[0].text
    total = sum(withdrawn(api, merchant_id))
    assert total <= 10_000, total
    assert int(available(api, key)) >= 0


def test_approve_and_reject_race_one_wins(api, settled):
    merchant_id, key = funded(api, settled, closing=10_000)
    w = withdraw(api, key, amount="6000").json()

    def go(i):
        if i % 2:
            return act(api, api.admin_token, w["id"], "approve")
        return act(api, api.admin_token, w["id"], "reject", {"reason": "no"})

    results = race(6, go)
    assert sorted(r.status_code for r in results) == [200] + [409] * 5, [r.text for r in results]
