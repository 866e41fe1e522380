"""The agent's paying client and research task against the in-process API, on SQLite and
Postgres: token and x402 `exact` payments, typed refusals, and what the report says was spent."""

from __future__ import annotations

import base64
import json

import pytest
from eth_account import Account

from clearhouse.agent import PayingClient, PaymentRefused
from clearhouse.agent.research import run_research
from serving import cache
from tests.clearhouse.x402_market import PAY_TO, PRICES, build_market
from tests.serving.helpers import make_api
from warehouse.money import Money

DETAIL, OFFICERS, FILINGS = "/company/detail", "/company/officers", "/company/filings"


@pytest.fixture
def market(oltp_url, make_settings):
    cache.clear()
    yield build_market(make_api(make_settings(database_url=oltp_url)))
    cache.clear()


def test_token_pays_until_the_budget_is_gone(market):
    issued = market.issue_token(amount_minor=PRICES[DETAIL] + PRICES[OFFICERS] + 10_000,
                                per_call_cap_minor=PRICES[DETAIL],
                                allowed_merchants=[market.seller_id], allowed_paths=["/company/*"])
    client = PayingClient(market.gateway, token=issued["token"], http=market.api.client)

    free = client.get("/company/basic", params={"name": "Acme"})
    assert free.status_code == 200 and free.json()["name"] == "Acme"
    assert client.purchases == []  # nothing priced, nothing bought

    detail = client.get(DETAIL, params={"name": "Acme"})
    assert detail.status_code == 200 and detail.json()["name"] == "Acme"
    receipt = json.loads(base64.b64decode(detail.headers["PAYMENT-RESPONSE"]))
    (bought,) = client.purchases
    assert (bought.status, bought.scheme, bought.amount_minor, bought.currency) == (
        "paid", "token", PRICES[DETAIL], "USDC")
    assert bought.transaction == receipt["transaction"] and bought.transaction.startswith("pay_")
    assert bought.payer == issued["id"] and bought.url.endswith(f"{DETAIL}?name=Acme")

    assert client.get(OFFICERS, params={"name": "Acme"}).status_code == 200
    with pytest.raises(PaymentRefused) as refused:  # 10_000 left, detail costs 50_000
        client.get(DETAIL, params={"name": "Globex"})
    assert refused.value.reason == "token_budget_exhausted" and refused.value.status == 402
    assert "left on the token" in refused.value.message
    assert [p.status for p in client.purchases] == ["paid", "paid", "refused"]
    assert client.purchases[-1].reason == "token_budget_exhausted"

    token = market.token(issued["id"])
    assert int(token["spent_minor"]) == client.spent_minor() == PRICES[DETAIL] + PRICES[OFFICERS]
    assert token["calls"] == 2
    settled = [u for u in market.usage() if u["status"] == "settled"]
    assert sorted(u["payment_id"] for u in settled) == sorted(
        p.transaction for p in client.purchases if p.status == "paid")


def test_refusals_are_typed_and_nothing_is_charged(market):
    narrow = market.issue_token(amount_minor=1_000_000, per_call_cap_minor=PRICES[OFFICERS],
                                allowed_paths=["/company/officers", "/company/detail"])
    client = PayingClient(market.gateway, token=narrow["token"], http=market.api.client)
    with pytest.raises(PaymentRefused) as capped:
        client.get(DETAIL, params={"name": "Acme"})
    assert capped.value.reason == "token_per_call_cap_exceeded"

    scoped = market.issue_token(amount_minor=1_000_000, allowed_paths=["/company/officers"])
    client = PayingClient(market.gateway, token=scoped["token"], http=market.api.client)
    with pytest.raises(PaymentRefused) as out_of_scope:
        client.get(DETAIL, params={"name": "Acme"})
    assert (out_of_scope.value.reason, out_of_scope.value.status) == ("token_scope_path", 403)

    # The client's own cap refuses before any payment is sent.
    cautious = PayingClient(market.gateway, token=scoped["token"], http=market.api.client,
                            max_per_call_minor=PRICES[OFFICERS] - 1)
    with pytest.raises(PaymentRefused) as too_dear:
        cautious.get(OFFICERS, params={"name": "Acme"})
    assert too_dear.value.reason == "client_cap_exceeded"
    # A v1-only rule offers no token scheme: a token-only client cannot pay it.
    with pytest.raises(PaymentRefused) as no_offer:
        client.get(FILINGS, params={"name": "Acme"})
    assert no_offer.value.reason == "no_supported_offer"
    assert no_offer.value.purchase.amount_minor == PRICES[FILINGS]

    assert [u for u in market.usage() if u["status"] == "settled"] == []
    for issued in (narrow, scoped):
        assert int(market.token(issued["id"])["spent_minor"]) == 0


def test_exact_payments_with_a_funded_account(market):
    account = Account.create()
    funds = PRICES[DETAIL] + PRICES[FILINGS] + PRICES[OFFICERS]
    market.fund(account.address, funds)
    seller_before = market.balance(PAY_TO)
    client = PayingClient(market.gateway, account=account, http=market.api.client)

    # An upstream 404 is returned as is and charged nothing.
    missing = client.get(DETAIL, params={"name": "Unknown Co"})
    assert missing.status_code == 404 and client.purchases[-1].status == "not_charged"
    assert market.balance(account.address) == funds

    assert client.get(DETAIL, params={"name": "Acme"}).status_code == 200
    assert client.get(FILINGS, params={"name": "Acme"}).status_code == 200  # v1 only
    v2, v1 = client.purchases[1:]
    assert (v2.scheme, v2.x402_version, v2.network, v2.currency) == (
        "exact", 2, "eip155:84532", "USDC")
    assert (v1.scheme, v1.x402_version, v1.network, v1.currency) == (
        "exact", 1, "base-sepolia", "USDC")
    for bought in (v2, v1):
        assert bought.status == "paid" and bought.payer == account.address.lower()
        assert bought.transaction.startswith("0x") and len(bought.transaction) == 66

    assert market.balance(account.address) == PRICES[OFFICERS]

    with pytest.raises(PaymentRefused) as broke:  # 20_000 left, detail costs 50_000
        client.get(DETAIL, params={"name": "Globex"})
    assert broke.value.reason == "insufficient_funds"
    assert client.get(OFFICERS, params={"name": "Globex"}).status_code == 200

    assert market.balance(account.address) == 0
    assert market.balance(PAY_TO) - seller_before == client.spent_minor() == funds
    settled = {u["tx_hash"] for u in market.usage() if u["status"] == "settled"}
    assert settled == {p.transaction for p in client.purchases if p.status == "paid"}


def test_exact_client_cap_replaces_x402_default(market):
    account = Account.create()
    market.fund(account.address, 10_000_000)
    capped = PayingClient(market.gateway, account=account, http=market.api.client,
                          max_per_call_minor=PRICES[OFFICERS])
    with pytest.raises(PaymentRefused) as refused:
        capped.get(DETAIL, params={"name": "Acme"})
    assert refused.value.reason == "client_cap_exceeded"
    assert capped.get(OFFICERS, params={"name": "Acme"}).status_code == 200
    assert market.balance(account.address) == 10_000_000 - PRICES[OFFICERS]


def test_research_report_spend_matches_the_token(market, tmp_path):
    budget = 2 * PRICES[DETAIL] + PRICES[OFFICERS] + 10_000  # runs out on the third company
    issued = market.issue_token(amount_minor=budget, per_call_cap_minor=PRICES[DETAIL],
                                allowed_merchants=[market.seller_id])
    companies = ["Acme", "Globex", "Initech", "Hooli"]
    summary = run_research("http://testserver", market.seller_id, companies,
                           token=issued["token"], report_path=tmp_path / "report.md",
                           http=market.api.client)

    spent = sum(p.amount_minor for p in summary.paid)
    assert spent == int(market.token(issued["id"])["spent_minor"])
    assert summary.stopped_by == "token_budget_exhausted"
    assert [p.reason for p in summary.refused] == ["token_budget_exhausted"]
    bought = {(p.url.split("?")[0].rsplit("/", 1)[-1], p.url.split("name=")[1])
              for p in summary.paid}
    assert bought == {("detail", "Acme"), ("officers", "Acme"), ("detail", "Globex")}
    report = summary.report_path.read_text()
    assert f"Spent {Money(spent, 'USDC')} on 3 paid calls; 1 refused." in report
    assert "token_budget_exhausted" in report and issued["id"] in report
    for name in companies:  # every company gets at least the free basics
        assert f"## {name}" in report
        basic = market.api.client.get(f"/x402/{market.seller_id}/company/basic",
                                      params={"name": name}).json()
        assert f"{basic['sector']} company from {basic['country']}" in report
    for p in summary.paid:
        assert p.transaction in report


def test_research_with_an_account_spends_what_the_chain_moved(market, tmp_path):
    account = Account.create()
    market.fund(account.address, 1_000_000)
    summary = run_research("http://testserver", market.seller_id, ["Acme", "Unknown Ltd"],
                           account=account, report_path=tmp_path / "r.md",
                           http=market.api.client)
    assert [p.status for p in summary.purchases] == ["paid", "paid", "not_charged"]
    assert 1_000_000 - market.balance(account.address) == summary.spent()["USDC"].amount_minor
    assert account.address in summary.report_path.read_text()


def test_a_report_on_a_seller_of_another_shape_is_still_written(tmp_path):
    """`clearhouse agent research` against a seller whose API is not the demo's company API:
    the calls were paid for, so the report is written with the answers as they came (it ended
    in a KeyError on revenue_minor, after paying)."""
    from clearhouse.agent.research import CompanyFindings, ResearchSummary, render_report

    found = CompanyFindings("Acme", facts={"/company/basic": {"name": "Acme"},
                                           "/company/detail": {"company": "Acme"},
                                           "/company/officers": "not json"})
    summary = ResearchSummary(tmp_path / "r.md", [found], [], None)
    report = render_report(summary, "http://gw", token="cpt_x")
    assert '- detail: {"company": "Acme"}' in report
    assert '- officers: "not json"' in report
    assert '- basic: {"name": "Acme"}' in report
