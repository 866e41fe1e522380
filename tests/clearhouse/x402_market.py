"""A market for the agent tests: a seller's gateway on the simulated company-information API
(detail and officers for x402 v2+v1 and tokens, filings for v1 only) and a buyer merchant."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from serving.x402 import chain
from serving.x402.networks import NETWORKS
from tests.serving.helpers import Api

SEPOLIA = NETWORKS["eip155:84532"]
USDC = SEPOLIA.asset("USDC")
PAY_TO = "0x" + "cd" * 20
PRICES = {"/company/detail": 50_000, "/company/officers": 20_000, "/company/filings": 30_000}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Market:
    api: Api
    seller_id: str
    seller_key: str
    buyer_id: str
    buyer_key: str

    @property
    def gateway(self) -> str:
        return f"http://testserver/x402/{self.seller_id}"

    def issue_token(self, **body) -> dict:
        body = {"agent_name": "test-agent", "currency": "USDC", **body}
        issued = self.api.client.post("/api/v1/payment-tokens", json=body,
                                      headers=auth(self.buyer_key))
        assert issued.status_code == 201, issued.text
        return issued.json()

    def token(self, token_id: str) -> dict:
        return self.api.client.get(f"/api/v1/payment-tokens/{token_id}",
                                   headers=auth(self.buyer_key)).json()

    def fund(self, address: str, amount: int) -> None:
        funded = self.api.client.post("/api/v1/x402/faucet", headers=auth(self.buyer_key),
                                      json={"address": address, "amount_minor": amount})
        assert funded.status_code == 200, funded.text

    def balance(self, address: str) -> int:
        with Session(self.api.engine) as session:
            return chain.balance_of(session, SEPOLIA, USDC.address, address)

    def usage(self) -> list[dict]:
        answer = self.api.client.get("/api/v1/x402/usage?limit=100", headers=auth(self.seller_key))
        return answer.json()["data"]


def build_market(api: Api) -> Market:
    seller_id, seller_key = api.merchant("Company Info GmbH")
    buyer_id, buyer_key = api.merchant("Research Buyer")
    client = api.client
    put = client.put("/api/v1/x402/gateway", headers=auth(seller_key),
                     json={"upstream_url": "http://company-info.sim"})
    assert put.status_code == 200, put.text
    for path, amount in PRICES.items():
        rule = client.post("/api/v1/x402/pricing-rules", headers=auth(seller_key), json={
            "path_pattern": path, "amount_minor": amount, "pay_to": PAY_TO,
            "protocol_versions": [1] if path.endswith("filings") else [2, 1]})
        assert rule.status_code == 201, rule.text
    return Market(api, seller_id, seller_key, buyer_id, buyer_key)
