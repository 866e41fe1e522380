"""Helpers for the x402 tests: a seller's gateway on the simulated company-information API, funded
payers, EIP-3009 authorizations signed by hand, and read-outs of what the database holds."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass

from eth_account import Account
from eth_account.messages import encode_typed_data
from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.x402 import chain
from serving.x402.networks import NETWORKS
from serving.x402.verify import EIP712_DOMAIN, TRANSFER_WITH_AUTHORIZATION
from tests.serving.helpers import Api
from warehouse.models import (
    AgentPaymentToken,
    LedgerEntry,
    Payment,
    PaymentEvent,
    SimChainLog,
    X402Usage,
)

SEPOLIA = NETWORKS["eip155:84532"]
BASE = NETWORKS["eip155:8453"]
USDC = SEPOLIA.asset("USDC")
PRICE = 10_000  # 0.01 USDC
PAY_TO = "0x" + "ab" * 20
FUNDS = 1_000_000
DETAIL = "/company/detail"


def b64(document: dict) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def unb64(value: str) -> dict:
    return json.loads(base64.b64decode(value))


def auth_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- EIP-3009 by hand ---------------------------------------------------------------------------


def sign_authorization(account, *, to: str = PAY_TO, value: int = PRICE,
                       valid_after: int | None = None, valid_before: int | None = None,
                       nonce: str | None = None, network=SEPOLIA, asset=USDC,
                       domain_name: str | None = None, signer=None) -> dict:
    """An `exact` payload {authorization, signature}: `account` is `from`, `signer` (default the
    same account) signs, over the asset's EIP-712 domain unless `domain_name` overrides it."""
    now = int(time.time())
    authorization = {
        "from": account.address, "to": to, "value": str(value),
        "validAfter": str(now - 600 if valid_after is None else valid_after),
        "validBefore": str(now + 300 if valid_before is None else valid_before),
        "nonce": nonce or "0x" + secrets.token_hex(32)}
    typed = {
        "types": {"EIP712Domain": EIP712_DOMAIN,
                  "TransferWithAuthorization": TRANSFER_WITH_AUTHORIZATION},
        "primaryType": "TransferWithAuthorization",
        "domain": {"name": domain_name or asset.eip712_name, "version": asset.eip712_version,
                   "chainId": network.chain_id, "verifyingContract": asset.address},
        "message": {**authorization, "value": value,
                    "validAfter": int(authorization["validAfter"]),
                    "validBefore": int(authorization["validBefore"])}}
    signed = Account.sign_message(encode_typed_data(full_message=typed),
                                  (signer or account).key)
    signature = "0x" + signed.signature.hex().removeprefix("0x")  # hexbytes 0.x and 1.x alike
    return {"authorization": authorization, "signature": signature}


def exact_offer(*, amount: int = PRICE, pay_to: str = PAY_TO, network=SEPOLIA, asset=USDC,
                max_timeout_seconds: int = 60) -> dict:
    """The v2 `exact` requirement the gateway offers for a rule (what `accepted` must echo)."""
    return {"scheme": "exact", "network": network.caip2, "asset": asset.address,
            "amount": str(amount), "payTo": pay_to, "maxTimeoutSeconds": max_timeout_seconds,
            "extra": {"name": asset.eip712_name, "version": asset.eip712_version}}


def v2_header(payload: dict, accepted: dict | None = None) -> str:
    return b64({"x402Version": 2, "accepted": accepted or exact_offer(), "payload": payload})


def v1_header(payload: dict, network: str = "base-sepolia") -> str:
    return b64({"x402Version": 1, "scheme": "exact", "network": network, "payload": payload})


def token_header(secret: str, accepted: dict) -> str:
    return b64({"x402Version": 2, "accepted": accepted, "payload": {"token": secret}})


def facilitator_request(payload: dict, requirements: dict | None = None,
                        version: int = 2) -> dict:
    """A /facilitator/verify or /settle body for an `exact` payload (v2, or v1)."""
    requirements = requirements or exact_offer()
    if version == 2:
        payment = {"x402Version": 2, "accepted": requirements, "payload": payload}
    else:
        payment = {"x402Version": 1, "scheme": "exact", "network": requirements["network"],
                   "payload": payload}
    return {"x402Version": version, "paymentPayload": payment,
            "paymentRequirements": requirements}


def required(response) -> dict:
    """The decoded PAYMENT-REQUIRED header of a 402."""
    return unb64(response.headers["PAYMENT-REQUIRED"])


def refusal_reason(response) -> str:
    """The machine reason of a 402: the v2 header's `error`, which must agree with the body's."""
    assert response.status_code == 402, response.text
    reason = required(response).get("error")
    assert response.json()["error"] == reason, (response.json(), reason)
    return reason


def token_offer(response) -> dict:
    return next(a for a in required(response)["accepts"] if a["scheme"] == "token")


# --- the shop: a seller with a gateway and a priced path, and a funded payer --------------------


@dataclass
class Shop:
    api: Api
    seller_id: str
    seller_key: str
    rule_id: str
    payer: object  # eth_account LocalAccount, holding FUNDS

    @property
    def client(self):
        return self.api.client

    @property
    def headers(self) -> dict[str, str]:
        return auth_headers(self.seller_key)

    def url(self, path: str = DETAIL, name: str = "Acme") -> str:
        return f"/x402/{self.seller_id}{path}?name={name}"

    def get(self, path: str = DETAIL, name: str = "Acme", headers=None):
        return self.client.get(self.url(path, name), headers=headers or {})

    def pay(self, payload: dict, path: str = DETAIL, name: str = "Acme", accepted=None):
        return self.get(path, name, {"PAYMENT-SIGNATURE": v2_header(payload, accepted)})

    def add_rule(self, path_pattern: str, **fields) -> dict:
        body = {"path_pattern": path_pattern, "amount_minor": PRICE, "pay_to": PAY_TO, **fields}
        response = self.client.post("/api/v1/x402/pricing-rules", json=body, headers=self.headers)
        assert response.status_code == 201, response.text
        return response.json()

    def fund(self, address: str, amount: int = FUNDS) -> None:
        response = self.client.post("/api/v1/x402/faucet", headers=self.headers,
                                    json={"address": address, "amount_minor": amount})
        assert response.status_code == 200, response.text

    def new_payer(self, amount: int = FUNDS):
        account = Account.create()
        if amount:
            self.fund(account.address, amount)
        return account

    # read-outs

    def balance(self, address: str) -> int:
        with Session(self.api.engine) as session:
            return chain.balance_of(session, SEPOLIA, USDC.address, address)

    def balances(self) -> tuple[int, int]:
        """(the payer's balance, pay_to's balance) on the simulated chain."""
        return self.balance(self.payer.address), self.balance(PAY_TO)

    def usages(self, **where) -> list[X402Usage]:
        return rows(self.api, X402Usage, **where)

    def transfers(self, **where) -> list[SimChainLog]:
        """Chain logs of executed authorizations (mints excluded)."""
        return [log for log in rows(self.api, SimChainLog, **where)
                if log.from_address != chain.ZERO_ADDRESS]

    def payments(self, **where) -> list[Payment]:
        return rows(self.api, Payment, **where)


def settlement_paths(shop: Shop):
    """Yield once with the Postgres fast path (serving/x402/fast_path.py) allowed and once with
    it off, so a test covers both ways a paid call settles (SQLite only has the ORM path)."""
    settings = shop.client.app.state.settings
    for fast in (True, False):
        settings.payments_fast_path = fast
        yield "fast path allowed" if fast else "ORM path"


def rows(api: Api, model, **where) -> list:
    with Session(api.engine) as session:
        query = select(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return list(session.scalars(query))


def legs_of(api: Api, payment_id: str) -> dict[str, int]:
    with Session(api.engine) as session:
        legs = session.scalars(select(LedgerEntry).where(LedgerEntry.payment_id == payment_id))
        return {leg.account: leg.amount_minor for leg in legs}


def event_trail(api: Api, payment_id: str) -> list[str]:
    with Session(api.engine) as session:
        return [e.to_status for e in session.scalars(
            select(PaymentEvent).where(PaymentEvent.payment_id == payment_id)
            .order_by(PaymentEvent.id))]


def ledger_balances(api: Api) -> bool:
    """Every ledger transaction's legs sum to zero per currency."""
    with Session(api.engine) as session:
        totals: dict = defaultdict(int)
        for leg in session.scalars(select(LedgerEntry)):
            totals[(leg.transaction_id, leg.currency)] += leg.amount_minor
    return all(total == 0 for total in totals.values())


def token_row(api: Api, token_id: str) -> AgentPaymentToken:
    with Session(api.engine) as session:
        return session.get(AgentPaymentToken, token_id)


def build_shop(api: Api, *, rule: dict | None = None, gateway: dict | None = None) -> Shop:
    seller_id, seller_key = api.merchant("Company Info GmbH")
    headers = auth_headers(seller_key)
    response = api.client.put("/api/v1/x402/gateway", headers=headers,
                              json={"upstream_url": "http://company-info.sim", **(gateway or {})})
    assert response.status_code == 200, response.text
    response = api.client.post("/api/v1/x402/pricing-rules", headers=headers, json={
        "path_pattern": DETAIL, "amount_minor": PRICE, "pay_to": PAY_TO,
        "description": "company detail", **(rule or {})})
    assert response.status_code == 201, response.text
    shop = Shop(api, seller_id, seller_key, response.json()["id"], Account.create())
    shop.fund(shop.payer.address)
    return shop
