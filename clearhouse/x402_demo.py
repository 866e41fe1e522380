"""The demo's x402 act, against the running API: a merchant sells its company-information API
per call, wallets pay it on the simulated chain with the stock x402 client, and a buyer
merchant's research agent spends an agent payment token on it until the budget runs out.

Re-running is safe: merchants are found by name (a fresh API key is issued when the saved one
is gone), the gateway is PUT again and an existing pricing rule (409 rule_exists) is kept. The
calls themselves are new payments at wall-clock time (today's blocks), which no Idempotency-Key
replays, so the demo plays the act once per demo day: `record_played` notes it in
HOME/demo/x402_act.json and `played_for` finds it on a re-run.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import httpx
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from clearhouse.agent.client import PayingClient, PaymentRefused
from clearhouse.agent.research import ResearchSummary, run_research
from clearhouse.simulator import SimMerchant
from serving.auth import issue_api_key
from serving.schemas import MerchantCreate
from serving.services.admin import create_merchant
from serving.x402.sim_company_info import BASE_URL as COMPANY_INFO_URL
from warehouse.models import Merchant, X402Usage

SELLER, BUYER = "Company Info Sim", "Northwind Research"
PAY_TO = "0x" + hashlib.sha256(b"clearhouse-demo-company-info").hexdigest()[:40]
# path, price (USDC atomic = minor units), x402 versions offered, description
RULES = [("/company/detail", 50_000, [2, 1], "Company detail: size, revenue, credit rating"),
         ("/company/officers", 20_000, [2, 1], "The company's officers"),
         ("/company/filings", 30_000, [1], "Annual filings (x402 v1 clients)")]
PLAYED = "x402_act.json"  # under HOME/demo/: the demo days the act was played for
WALLETS, WALLET_FUNDING = 3, 1_000_000  # 1.00 USDC each from the faucet
TOKEN_BUDGET, TOKEN_CAP = 500_000, 50_000  # 0.50 USDC, at most 0.05 a call
COMPANIES = ["Acme Robotics", "Globex", "Initech", "Umbrella Logistics", "Stark Semiconductors",
             "Wayne Energy", "Unknown Ventures", "Hooli", "Cyberdyne", "Soylent", "Tyrell",
             "Wonka Industries"]


@dataclass
class X402Result:
    paid_calls: int = 0  # settled x402 `exact` payments on chain
    by_version: dict[int, int] = field(default_factory=dict)
    exact_revenue_minor: int = 0
    refused: list[str] = field(default_factory=list)
    research: ResearchSummary | None = None
    seller_id: str = ""
    seller_name: str = SELLER

    @property
    def token_calls(self) -> int:
        return len(self.research.paid) if self.research else 0

    @property
    def token_spent_minor(self) -> int:
        return sum(p.amount_minor for p in self.research.paid) if self.research else 0


def _merchant(engine: Engine, name: str, saved: dict[str, SimMerchant]) -> SimMerchant:
    with Session(engine) as session:
        found = session.scalars(select(Merchant).where(Merchant.name == name)
                                .order_by(Merchant.id)).first()
        if found is None:
            found, key = create_merchant(session, MerchantCreate(
                name=name, settlement_currency="USDC", kyc_tier=3))
        elif found.id in saved:
            key = saved[found.id].api_key
        else:  # keys are stored hashed: a lost key is replaced, never recovered
            key = issue_api_key(session, found.id)
        session.commit()
        return SimMerchant(found.id, name, key)


def set_up_merchants(engine: Engine, credentials_file: Path) -> tuple[SimMerchant, SimMerchant]:
    saved = {}
    if credentials_file.exists():
        saved = {m["id"]: SimMerchant(**m) for m in json.loads(credentials_file.read_text())}
    seller, buyer = _merchant(engine, SELLER, saved), _merchant(engine, BUYER, saved)
    credentials_file.parent.mkdir(parents=True, exist_ok=True)
    credentials_file.write_text(json.dumps([seller.__dict__, buyer.__dict__], indent=2))
    credentials_file.chmod(0o600)
    return seller, buyer


def _checked(response: httpx.Response, *ok: int) -> dict:
    if response.status_code not in ok:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: "
                           f"{response.status_code} {response.text[:300]}")
    return response.json()


def configure_seller(http: httpx.Client, seller: SimMerchant) -> None:
    auth = {"Authorization": f"Bearer {seller.api_key}"}
    _checked(http.put("/api/v1/x402/gateway", headers=auth,
                      json={"upstream_url": COMPANY_INFO_URL}), 200)
    for path, amount, versions, description in RULES:
        created = http.post("/api/v1/x402/pricing-rules", headers=auth, json={
            "path_pattern": path, "amount_minor": amount, "pay_to": PAY_TO,
            "description": description, "protocol_versions": versions})
        if created.status_code == 409 and created.json()["error"]["code"] == "rule_exists":
            continue
        _checked(created, 201)


def _receipt(response: httpx.Response) -> dict | None:
    value = response.headers.get("PAYMENT-RESPONSE") or response.headers.get("X-PAYMENT-RESPONSE")
    return json.loads(base64.b64decode(value)) if value else None


async def _stock_client_calls(base: str, seller_id: str, accounts, result: X402Result) -> None:
    """Each wallet buys every priced path with the x402 package's own httpx client: v2 where
    offered, v1 (from the 402's body) for the v1-only rule."""
    from x402 import x402Client
    from x402.http.clients.httpx import x402_httpx_transport
    from x402.mechanisms.evm.exact.register import register_exact_evm_client
    from x402.mechanisms.evm.signers import EthAccountSigner

    for account, company in zip(accounts, COMPANIES, strict=False):
        client = register_exact_evm_client(x402Client(), EthAccountSigner(account))
        async with httpx.AsyncClient(transport=x402_httpx_transport(client), base_url=base,
                                     timeout=60) as http:
            for path, _amount, _versions, _ in RULES:
                response = await http.get(f"/x402/{seller_id}{path}", params={"name": company})
                receipt = _receipt(response)
                if response.status_code != 200 or not receipt or not receipt.get("success"):
                    result.refused.append(f"{path}: {response.status_code}")
                    continue
                version = 2 if "PAYMENT-RESPONSE" in response.headers else 1
                result.paid_calls += 1
                result.by_version[version] = result.by_version.get(version, 0) + 1
                result.exact_revenue_minor += int(receipt["amount"])


def run_x402(engine: Engine, base: str, home: Path) -> X402Result:
    """The act, against the API at `base`; the agent's report goes to HOME/demo/."""
    from eth_account import Account

    seller, buyer = set_up_merchants(engine, home / "demo" / "x402_credentials.json")
    result = X402Result(seller_id=seller.id)
    with httpx.Client(base_url=base, timeout=60) as http:
        configure_seller(http, seller)
        accounts = [Account.create() for _ in range(WALLETS)]
        for account in accounts:
            _checked(http.post("/api/v1/x402/faucet", json={
                "address": account.address, "amount_minor": WALLET_FUNDING},
                headers={"Authorization": f"Bearer {buyer.api_key}"}), 200)
        asyncio.run(_stock_client_calls(base, seller.id, accounts, result))
        # A wallet the faucet never funded: the chain refuses, nothing is charged.
        with PayingClient(f"{base}/x402/{seller.id}", account=Account.create()) as broke:
            try:
                broke.get("/company/detail", params={"name": COMPANIES[0]})
            except PaymentRefused as exc:
                result.refused.append(f"/company/detail: {exc.reason} (unfunded wallet)")
        issued = _checked(http.post("/api/v1/payment-tokens", json={
            "agent_name": "research-agent", "amount_minor": TOKEN_BUDGET, "currency": "USDC",
            "per_call_cap_minor": TOKEN_CAP, "allowed_merchants": [seller.id],
            "allowed_paths": ["/company/*"]},
            headers={"Authorization": f"Bearer {buyer.api_key}"}), 201)
    result.research = run_research(base, seller.id, COMPANIES, token=issued["token"],
                                   report_path=home / "demo" / "agent_research.md")
    result.refused += [f"{p.url.rsplit('/', 1)[-1]}: {p.reason}" for p in result.research.refused]
    return result


def played_for(engine: Engine, home: Path, day: date) -> dict | None:
    """What an earlier run's act did for the demo day `day` (from HOME/demo/x402_act.json), or
    None when it was not played for that day on this API database (a fresh database: the seller
    the file names has no usage rows)."""
    path = home / "demo" / PLAYED
    earlier = json.loads(path.read_text()).get(day.isoformat()) if path.exists() else None
    if earlier is None:
        return None
    with Session(engine) as session:
        used = session.scalar(select(func.count()).select_from(X402Usage)
                              .where(X402Usage.merchant_id == earlier["seller_id"]))
    return earlier if used else None


def record_played(home: Path, day: date, result: X402Result, at: datetime) -> None:
    """Note that the act was played for the demo day `day`, with its figures."""
    path = home / "demo" / PLAYED
    played = json.loads(path.read_text()) if path.exists() else {}
    played[day.isoformat()] = {
        "played_at": at.isoformat(timespec="seconds"), "seller_id": result.seller_id,
        "paid_calls": result.paid_calls, "token_calls": result.token_calls,
        "report": str(result.research.report_path) if result.research else None}
    path.write_text(json.dumps(played, indent=2))
