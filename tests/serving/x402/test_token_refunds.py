"""Refunding an agent-token payment through POST /api/v1/refunds gives the money back to the
buyer merchant whose balance paid it (the capture debited the buyer's merchant_payable), not to
a channel: no channel ever held it. Card and on-chain `exact` payments still refund against
their channel's receivable. A refund does not restore the token's budget (a spending cap)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.serving.x402.helpers import (
    DETAIL,
    PRICE,
    auth_headers,
    ledger_balances,
    legs_of,
    sign_authorization,
    token_header,
    token_offer,
)
from warehouse.models import LedgerEntry, Payment


def refund_legs(api, refund_id: str) -> dict[str, int]:
    with Session(api.engine) as session:
        legs = list(session.scalars(select(LedgerEntry).where(LedgerEntry.refund_id == refund_id)))
    assert {leg.kind for leg in legs} == {"refund"} and len({leg.transaction_id
                                                              for leg in legs}) == 1
    return {leg.account: leg.amount_minor for leg in legs}


def balance_of(api, account: str) -> int:
    with Session(api.engine) as session:
        return sum(session.scalars(select(LedgerEntry.amount_minor)
                                   .where(LedgerEntry.account == account)))


def refund(shop, payment_id: str, amount: int | None = None) -> dict:
    response = shop.api.refund(shop.seller_key, payment_id,
                               amount=None if amount is None else str(amount))
    assert response.status_code == 201, response.text
    return response.json()


def test_a_token_payment_refund_credits_the_buyer_merchant(shop):
    buyer_id, buyer_key = shop.api.merchant("Research Agent Co")
    issued = shop.client.post("/api/v1/payment-tokens", headers=auth_headers(buyer_key),
                              json={"agent_name": "research-agent",
                                    "amount_minor": str(3 * PRICE)})
    assert issued.status_code == 201, issued.text
    token = issued.json()
    offer = token_offer(shop.get())
    paid = shop.get(DETAIL, "Acme", {"PAYMENT-SIGNATURE": token_header(token["token"], offer)})
    assert paid.status_code == 200, paid.text
    [payment] = shop.payments()
    assert payment.channel_id == "ch_agent_token"
    buyer, seller = f"merchant_payable:{buyer_id}", f"merchant_payable:{shop.seller_id}"
    assert legs_of(shop.api, payment.id) == {buyer: PRICE, seller: -PRICE}

    part = PRICE // 4
    first = refund(shop, payment.id, part)

    assert first["amount_minor"] == str(part)
    # the seller gives back (debit), the buyer's balance is credited back; no channel involved
    assert refund_legs(shop.api, first["id"]) == {seller: part, buyer: -part}
    assert balance_of(shop.api, buyer) == PRICE - part
    assert balance_of(shop.api, seller) == -(PRICE - part)
    assert ledger_balances(shop.api)
    with Session(shop.api.engine) as session:
        assert session.get(Payment, payment.id).status == "partially_refunded"
        assert not list(session.scalars(select(LedgerEntry).where(
            LedgerEntry.account.like("channel_receivable:%"))))

    rest = refund(shop, payment.id)

    assert rest["amount_minor"] == str(PRICE - part)
    assert refund_legs(shop.api, rest["id"]) == {seller: PRICE - part, buyer: -(PRICE - part)}
    assert balance_of(shop.api, buyer) == 0 and balance_of(shop.api, seller) == 0
    assert ledger_balances(shop.api)
    with Session(shop.api.engine) as session:
        assert session.get(Payment, payment.id).status == "refunded"
    # the budget is a spending cap: a refund does not give the agent more to spend
    body = shop.client.get(f"/api/v1/payment-tokens/{token['id']}",
                           headers=auth_headers(buyer_key)).json()
    assert (body["spent_minor"], body["remaining_minor"], body["calls"]) == (
        str(PRICE), str(2 * PRICE), 1)


def test_card_and_onchain_refunds_still_credit_the_channel(shop):
    card = shop.api.pay(shop.seller_key, amount="1000")
    assert card.status_code == 201, card.text
    card_id = card.json()["id"]
    [card_payment] = shop.payments(id=card_id)
    card_channel = card_payment.channel_id
    assert card_payment.status == "success"
    assert card_channel not in ("ch_agent_token", "ch_x402_sim")
    card_refund = refund(shop, card_id, 300)
    assert refund_legs(shop.api, card_refund["id"]) == {
        f"merchant_payable:{shop.seller_id}": 300, f"channel_receivable:{card_channel}": -300}

    assert shop.pay(sign_authorization(shop.payer)).status_code == 200
    [onchain] = shop.payments(channel_id="ch_x402_sim")
    onchain_refund = refund(shop, onchain.id, PRICE // 2)
    assert refund_legs(shop.api, onchain_refund["id"]) == {
        f"merchant_payable:{shop.seller_id}": PRICE // 2,
        "channel_receivable:ch_x402_sim": -(PRICE // 2)}
    assert ledger_balances(shop.api)
