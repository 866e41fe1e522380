"""Merchants' x402 configuration: the gateway (upstream and limits) and its pricing rules.

Path patterns are globs matched the way the `x402` package's own server matches its routes
(x402HTTPServerBase._normalize_path / _parse_route_pattern): on the path with repeated slashes
collapsed and no trailing slash, ignoring case; `*` (and `**`) cross segments, and a pattern
ending in `/*` also prices its bare prefix (`/reports/*` prices `/reports`). What an upstream
serves as a priced resource (`/premium/`, `//premium`) is priced too. Token scopes
(serving/x402/tokens.py) match the same way.

The gateway reads a merchant's configuration through the per-process cache (serving/cache.py):
a change is seen at once by the process that made it and by the others within the cache TTL.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving import cache
from serving.errors import ApiError, not_found
from serving.x402.networks import require_asset, require_network
from serving.x402.protocol import Offer, offer_for
from serving.x402.schemas import GatewayIn, PricingRuleIn, PricingRuleOut
from warehouse.ids import new_id
from warehouse.models import X402Gateway, X402PricingRule

_SLASHES = re.compile(r"/+")


def match_view(path: str) -> str:
    """A path (or pattern) as rules and token scopes read it: repeated slashes collapsed, no
    trailing slash, lowercase."""
    return _SLASHES.sub("/", path).rstrip("/").lower() or "/"


def path_matches(pattern: str, path: str) -> bool:
    """Whether a glob `pattern` covers `path` (both taken through match_view)."""
    return _covers(match_view(pattern), match_view(path))


def _covers(pattern: str, path: str) -> bool:
    """path_matches on a pattern and a path already in their match_view."""
    if fnmatch.fnmatchcase(path, pattern):
        return True
    for wildcard in ("/**", "/*"):
        if pattern.endswith(wildcard):
            return fnmatch.fnmatchcase(path, pattern[:-len(wildcard)] or "/")
    return False


@dataclass(frozen=True)
class PricedPath:
    pattern: str  # in its match_view, normalised once when the configuration is loaded
    http_method: str
    priority: int
    offer: Offer


@dataclass(frozen=True)
class GatewayConfig:
    merchant_id: str
    upstream_url: str
    status: str
    requests_per_second: int
    payer_requests_per_minute: int
    priced: tuple[PricedPath, ...]  # most specific first

    def price_of(self, method: str, path: str) -> Offer | None:
        view = match_view(path)  # once per call, not once per rule
        for priced in self.priced:
            if priced.http_method in ("*", method) and _covers(priced.pattern, view):
                return priced.offer
        return None


def _load(session: Session, merchant_id: str) -> GatewayConfig | None:
    gateway = session.get(X402Gateway, merchant_id)
    if gateway is None:
        return None
    rules = session.scalars(select(X402PricingRule).where(
        X402PricingRule.merchant_id == merchant_id, X402PricingRule.status == "active")).all()
    # Priority first, then the longer (more specific) pattern, then the older rule.
    ordered = sorted(rules, key=lambda r: (r.priority, -len(r.path_pattern), r.id))
    return GatewayConfig(
        merchant_id, gateway.upstream_url, gateway.status, gateway.requests_per_second,
        gateway.payer_requests_per_minute,
        tuple(PricedPath(match_view(r.path_pattern), r.http_method, r.priority, offer_for(r))
              for r in ordered))


def config_key(engine, merchant_id: str) -> tuple:
    return ("x402_gateway", cache.scope(engine), merchant_id)


def gateway_config(session: Session, merchant_id: str) -> GatewayConfig | None:
    return cache.cached(config_key(session.get_bind(), merchant_id),
                        lambda: _load(session, merchant_id))


# --- administration ---------------------------------------------------------------------------


def gateway_out(gateway: X402Gateway) -> dict:
    return {"merchant_id": gateway.merchant_id, "upstream_url": gateway.upstream_url,
            "status": gateway.status, "requests_per_second": gateway.requests_per_second,
            "payer_requests_per_minute": gateway.payer_requests_per_minute,
            "gateway_url": f"/x402/{gateway.merchant_id}/"}


def put_gateway(session: Session, merchant_id: str, body: GatewayIn, now: datetime) -> X402Gateway:
    gateway = session.get(X402Gateway, merchant_id)
    if gateway is None:
        gateway = X402Gateway(merchant_id=merchant_id, created_at=now)
        session.add(gateway)
    for name, value in body.model_dump().items():
        setattr(gateway, name, value)
    gateway.updated_at = now
    return gateway


def rule_out(rule: X402PricingRule) -> dict:
    offer = offer_for(rule)
    return PricingRuleOut(
        id=rule.id, merchant_id=rule.merchant_id, path_pattern=rule.path_pattern,
        http_method=rule.http_method, amount_minor=rule.amount_atomic, currency=rule.asset,
        asset_address=offer.asset.address, network=rule.network, pay_to=rule.pay_to,
        billing_mode=rule.billing_mode, description=rule.description, mime_type=rule.mime_type,
        max_timeout_seconds=rule.max_timeout_seconds, protocol_versions=list(offer.versions),
        priority=rule.priority, status=rule.status, created_at=rule.created_at,
    ).model_dump(mode="json")


def create_rule(session: Session, merchant_id: str, body: PricingRuleIn,
                now: datetime) -> X402PricingRule:
    if session.get(X402Gateway, merchant_id) is None:
        raise ApiError(409, "gateway_not_configured",
                       "set the gateway's upstream first: PUT /api/v1/x402/gateway")
    net = require_network(body.network)
    require_asset(net, body.asset)
    duplicate = session.scalars(select(X402PricingRule.id).where(
        X402PricingRule.merchant_id == merchant_id, X402PricingRule.status == "active",
        X402PricingRule.path_pattern == body.path_pattern,
        X402PricingRule.http_method == body.http_method)).first()
    if duplicate is not None:
        raise ApiError(409, "rule_exists", f"rule {duplicate} already prices "
                       f"{body.http_method} {body.path_pattern}; archive it first",
                       {"rule_id": duplicate})
    rule = X402PricingRule(
        id=new_id("x402_rule"), merchant_id=merchant_id, path_pattern=body.path_pattern,
        http_method=body.http_method, amount_atomic=body.amount_minor, asset=body.asset,
        network=net.caip2, pay_to=body.pay_to, billing_mode=body.billing_mode,
        description=body.description, mime_type=body.mime_type,
        max_timeout_seconds=body.max_timeout_seconds,
        protocol_versions=",".join(str(v) for v in sorted(set(body.protocol_versions),
                                                          reverse=True)),
        priority=body.priority, status="active", created_at=now, updated_at=now)
    session.add(rule)
    return rule


def own_rule(session: Session, merchant_id: str, rule_id: str) -> X402PricingRule:
    rule = session.get(X402PricingRule, rule_id)
    if rule is None or rule.merchant_id != merchant_id:
        raise not_found("pricing rule", rule_id)
    return rule


def archive_rule(session: Session, rule: X402PricingRule, now: datetime) -> X402PricingRule:
    """Rules are archived, never deleted: usage records keep naming them."""
    rule.status, rule.updated_at = "archived", now
    return rule
