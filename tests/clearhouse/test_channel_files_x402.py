"""write_day: paid x402 calls settle on chain and agent-token payments stay inside the platform,
so neither produces a PSP settlement file, a payout or a bank line."""

from __future__ import annotations

from datetime import UTC, datetime

from eth_account import Account
from sqlalchemy import select
from sqlalchemy.orm import Session

from clearhouse.agent import PayingClient
from clearhouse.channel_files import write_day
from serving import cache
from serving.x402.booking import TOKEN_CHANNEL, X402_CHANNEL
from tests.clearhouse.x402_market import build_market
from tests.serving.helpers import make_api
from warehouse.models import Payment


def test_write_day_ignores_x402_and_agent_token_payments(oltp_url, make_settings):
    cache.clear()
    settings = make_settings(database_url=oltp_url)
    market = build_market(make_api(settings))
    engine = market.api.engine
    card = market.api.pay(market.buyer_key, amount="2500")
    assert card.status_code == 201 and card.json()["status"] == "success", card.text
    account = Account.create()
    market.fund(account.address, 1_000_000)
    paid = PayingClient(market.gateway, account=account, http=market.api.client)
    assert paid.get("/company/detail", params={"name": "Acme"}).status_code == 200
    token = market.issue_token(amount_minor=1_000_000)["token"]
    agent = PayingClient(market.gateway, token=token, http=market.api.client)
    assert agent.get("/company/officers", params={"name": "Acme"}).status_code == 200

    today = datetime.now(UTC).date()
    with Session(engine) as session:
        booked = {p.channel_id: p for p in session.scalars(select(Payment))}
    assert booked[X402_CHANNEL].captured_at.date() == today
    assert booked[TOKEN_CHANNEL].captured_at.date() == today
    card_channel = booked[next(c for c in booked if c not in (X402_CHANNEL, TOKEN_CHANNEL))]

    written = write_day(engine, settings.landing_dir, today)

    psp = {p.name: p.read_text() for p in (settings.landing_dir / "psp").iterdir()}
    assert set(psp) == {f"{card_channel.channel_id}_{today.isoformat()}.csv"}
    assert card_channel.id in next(iter(psp.values()))
    everything = "".join(p.read_text(errors="replace") for p in
                         settings.landing_dir.rglob("*") if p.is_file())
    for channel in (X402_CHANNEL, TOKEN_CHANNEL):
        assert booked[channel].id not in everything and channel not in everything
    assert not any("USDC" in p.name for p in (settings.landing_dir / "bank").iterdir())
    assert written.get("psp") == 1 and "chain" not in written
