"""/api/v1/x402/* and /api/v1/payment-tokens: what merchants configure to sell and buy per call.

- PUT/GET /x402/gateway: the merchant's upstream base URL and abuse limits (merchant_admin).
- POST/GET /x402/pricing-rules, GET/DELETE /x402/pricing-rules/{id}: priced paths (a DELETE
  archives the rule; usage records keep naming it).
- GET /x402/usage: the merchant's paid calls.
- POST/GET /payment-tokens, GET/DELETE /payment-tokens/{id}: budgets for AI agents; the token
  is shown once (merchant_admin issues and revokes; both merchant roles read).
- POST /x402/faucet (development and test only): test USDC on the simulated chain.
Operators (platform_admin, finance) read every merchant's configuration, usage and tokens.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import select

from serving.api.common import (
    IdempotencyKeyHeader,
    Limit,
    StartingAfter,
    call_idempotent,
    caller_scope,
    idempotent_response,
    page,
)
from serving.deps import (
    EngineDep,
    NowDep,
    PrincipalDep,
    SessionDep,
    SettingsDep,
    WriteSessionDep,
)
from serving.errors import ApiError, not_found
from serving.schemas import iso_z
from serving.services.audit import record
from serving.services.idempotency import UNKEYED_PREFIX, check_key
from serving.x402 import chain, rules, tokens
from serving.x402.networks import require_asset, require_network
from serving.x402.schemas import (
    FaucetIn,
    GatewayIn,
    GatewayOut,
    PricingRuleIn,
    PricingRuleOut,
    TokenCreate,
    TokenCreated,
    TokenOut,
)
from warehouse.models import AgentPaymentToken, X402Gateway, X402PricingRule, X402Usage
from warehouse.settings import DEV_ENVIRONMENTS

router = APIRouter(tags=["x402"])


def _merchant_admin(principal) -> str:
    if principal.role != "merchant_admin":
        raise ApiError(403, "forbidden", "this needs a merchant_admin API key",
                       {"role": principal.role})
    return principal.merchant_id


def _reader_scope(principal, column):
    """Operators see all; a merchant its own; others nothing (agents sell no APIs here)."""
    if principal.is_operator:
        return True
    if principal.merchant_id is None:
        raise ApiError(403, "forbidden", "x402 configuration belongs to merchants")
    return column == principal.merchant_id


@router.put("/x402/gateway", response_model=GatewayOut)
def put_gateway(body: GatewayIn, principal: PrincipalDep, session: WriteSessionDep, now: NowDep):
    merchant_id = _merchant_admin(principal)
    gateway = rules.put_gateway(session, merchant_id, body, now)
    record(session, actor=principal.actor, action="x402.gateway.put", resource_type="merchant",
           resource_id=merchant_id, details=body.model_dump())
    session.commit()
    return JSONResponse(rules.gateway_out(gateway))


@router.get("/x402/gateway", response_model=GatewayOut)
def get_gateway(principal: PrincipalDep, session: SessionDep):
    if principal.merchant_id is None:
        raise ApiError(403, "forbidden", "a merchant's gateway: use the merchant's API key")
    gateway = session.get(X402Gateway, principal.merchant_id)
    if gateway is None:
        raise not_found("x402 gateway", principal.merchant_id)
    return JSONResponse(rules.gateway_out(gateway))


@router.post("/x402/pricing-rules", status_code=201, response_model=PricingRuleOut)
def create_rule(body: PricingRuleIn, principal: PrincipalDep, session: WriteSessionDep,
                now: NowDep):
    merchant_id = _merchant_admin(principal)
    rule = rules.create_rule(session, merchant_id, body, now)
    out = rules.rule_out(rule)
    # The rule as the API shows it: its price as amount_minor with its currency (money.md 1).
    record(session, actor=principal.actor, action="x402.rule.create",
           resource_type="x402_pricing_rule", resource_id=rule.id, details=out)
    session.commit()
    return JSONResponse(out, status_code=201)


@router.get("/x402/pricing-rules")
def list_rules(principal: PrincipalDep, session: SessionDep, limit: Limit = 20,
               starting_after: StartingAfter = None, status: str | None = None):
    query = select(X402PricingRule).where(_reader_scope(principal, X402PricingRule.merchant_id))
    if status is not None:
        query = query.where(X402PricingRule.status == status)
    return JSONResponse(page(session, query, X402PricingRule.id, limit=limit,
                             starting_after=starting_after, out=rules.rule_out))


def _visible(session, principal, model, ident: str, kind: str, lock: bool = False):
    """A merchant's own row, or any row for an operator; 404 otherwise (existence must not leak)."""
    row = session.get(model, ident, with_for_update=lock)
    if row is None or not (principal.is_operator or row.merchant_id == principal.merchant_id):
        raise not_found(kind, ident)
    return row


@router.get("/x402/pricing-rules/{rule_id}", response_model=PricingRuleOut)
def get_rule(rule_id: str, principal: PrincipalDep, session: SessionDep):
    return JSONResponse(rules.rule_out(_visible(session, principal, X402PricingRule, rule_id,
                                                     "pricing rule")))


@router.delete("/x402/pricing-rules/{rule_id}", response_model=PricingRuleOut)
def archive_rule(rule_id: str, principal: PrincipalDep, session: WriteSessionDep, now: NowDep):
    merchant_id = _merchant_admin(principal)
    rule = rules.archive_rule(session, rules.own_rule(session, merchant_id, rule_id), now)
    record(session, actor=principal.actor, action="x402.rule.archive",
           resource_type="x402_pricing_rule", resource_id=rule.id)
    session.commit()
    return JSONResponse(rules.rule_out(rule))


def usage_out(usage: X402Usage) -> dict:
    return {"id": usage.id, "merchant_id": usage.merchant_id, "rule_id": usage.rule_id,
            "method": usage.http_method, "path": usage.path, "scheme": usage.scheme,
            "x402_version": usage.x402_version, "network": usage.network,
            "amount_minor": str(usage.amount_atomic), "currency": usage.asset,
            "pay_to": usage.pay_to, "payer": usage.payer, "status": usage.status,
            "upstream_status": usage.upstream_status, "tx_hash": usage.tx_hash,
            "payment_id": usage.payment_id, "error_reason": usage.error_reason,
            "created_at": usage.created_at.astimezone(UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")}


@router.get("/x402/usage")
def list_usage(principal: PrincipalDep, session: SessionDep, limit: Limit = 20,
               starting_after: StartingAfter = None, status: str | None = None):
    query = select(X402Usage).where(_reader_scope(principal, X402Usage.merchant_id))
    if status is not None:
        query = query.where(X402Usage.status == status)
    return JSONResponse(page(session, query, X402Usage.id, limit=limit,
                             starting_after=starting_after, out=usage_out))


# --- agent payment tokens ---------------------------------------------------------------------


@router.post("/payment-tokens", status_code=201, response_model=TokenCreated)
async def issue_token(body: TokenCreate, principal: PrincipalDep, engine: EngineDep,
                      settings: SettingsDep, idempotency_key: IdempotencyKeyHeader = None):
    """Issue a token (shown once). It grants a budget of the merchant's money, so it takes an
    Idempotency-Key like every POST that creates or moves money: a retry with the same key and
    body replays the first answer, the same token and secret (re-derived, never stored)."""
    merchant_id = _merchant_admin(principal)
    key, scope = check_key(idempotency_key), caller_scope(principal)
    keyed = not key.startswith(UNKEYED_PREFIX)
    signing_secret = settings.signing_secret()
    issued: dict[str, str] = {}

    def work(session) -> tuple[int, dict]:
        now = datetime.now(UTC)  # credentials live on the wall clock, never a test clock
        row, secret = tokens.issue(session, merchant_id=merchant_id, issued_by=principal.actor,
                                   body=body, signing_secret=signing_secret, now=now,
                                   replay_scope=(scope, key) if keyed else None)
        record(session, actor=principal.actor, action="payment_token.issue",
               resource_type="payment_token", resource_id=row.id,
               details={"agent_name": body.agent_name, "budget_minor": str(body.amount_minor),
                        "currency": body.currency, "expires_at": iso_z(row.expires_at)})
        session.flush()
        issued["token"] = secret
        return 201, tokens.token_out(row)  # stored for replays without the secret

    result = await call_idempotent(engine, scope=scope, key=key, path="/api/v1/payment-tokens",
                                   params=body, work=work)
    if result.status == 201:
        secret = issued.get("token") or tokens.replayable_secret(
            signing_secret, scope=scope, key=key, token_id=result.body["id"])
        result = replace(result, body={**result.body, "token": secret})
    return idempotent_response(result)


@router.get("/payment-tokens")
def list_tokens(principal: PrincipalDep, session: SessionDep, limit: Limit = 20,
                starting_after: StartingAfter = None):
    query = select(AgentPaymentToken).where(
        _reader_scope(principal, AgentPaymentToken.merchant_id))
    return JSONResponse(page(session, query, AgentPaymentToken.id, limit=limit,
                             starting_after=starting_after, out=tokens.token_out))


@router.get("/payment-tokens/{token_id}", response_model=TokenOut)
def get_token(token_id: str, principal: PrincipalDep, session: SessionDep):
    return JSONResponse(tokens.token_out(_visible(session, principal, AgentPaymentToken, token_id,
                                                       "payment token")))


@router.delete("/payment-tokens/{token_id}", response_model=TokenOut)
def revoke_token(token_id: str, principal: PrincipalDep, session: WriteSessionDep):
    if principal.role not in ("merchant_admin", "platform_admin"):
        raise ApiError(403, "forbidden", "revoking a token needs merchant_admin or platform_admin")
    row = tokens.revoke(session, _visible(session, principal, AgentPaymentToken, token_id,
                                         "payment token", lock=True), datetime.now(UTC))
    record(session, actor=principal.actor, action="payment_token.revoke",
           resource_type="payment_token", resource_id=row.id)
    session.commit()
    return JSONResponse(tokens.token_out(row))


# --- the simulated chain's faucet -------------------------------------------------------------


@router.post("/x402/faucet")
async def faucet(body: FaucetIn, principal: PrincipalDep, engine: EngineDep,
                 settings: SettingsDep, idempotency_key: IdempotencyKeyHeader = None):
    """Mint test USDC on the simulated chain (development and test only). It creates money, so
    it takes an Idempotency-Key like every such POST: a retried mint credits once."""
    if settings.environment not in DEV_ENVIRONMENTS:
        raise ApiError(403, "faucet_disabled", "the faucet exists in development and test only")
    net = require_network(body.network)
    asset = require_asset(net, body.asset)

    def mint(session) -> tuple[int, dict]:
        log = chain.mint(session, net, asset.address, body.address, body.amount_minor,
                         datetime.now(UTC))
        balance = chain.balance_of(session, net, asset.address, body.address)
        return 200, {"network": net.caip2, "asset": asset.address,
                     "address": body.address.lower(), "tx_hash": log.tx_hash,
                     "balance_minor": str(balance), "currency": asset.symbol}

    return idempotent_response(await call_idempotent(
        engine, scope=caller_scope(principal), key=check_key(idempotency_key),
        path="/api/v1/x402/faucet", params=body, work=mint))
