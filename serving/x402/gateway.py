"""The x402 gateway: `/x402/{merchant_id}/{path}` sells a merchant's API per call.

Unpriced paths are proxied straight through. A priced path without payment gets a 402 (v2
header and/or v1 body, serving/x402/protocol.py). With payment:

    verify offline (serving/x402/verify.py) -> per-payer rate limit
    -> claim: chain checks (nonce unused, balance) + usage row, one transaction
    -> call the upstream
    -> upstream >= 400: nothing is charged, the upstream's answer is returned as is
    -> settle: transfer on chain + payment + ledger + usage, one transaction
    -> the upstream's answer with PAYMENT-RESPONSE (v2) or X-PAYMENT-RESPONSE (v1)

If settling fails the caller gets a 402 with the reason and never the upstream's body. Settling
is idempotent per call (a retry after a timeout finds the first transfer), and an authorization
is claimed once, ever, so no path makes a client pay twice. Token payments follow the same steps
with a budget reservation instead of the chain (serving/x402/tokens.py).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from serving import cache, pg_async
from serving.errors import ApiError, error_body
from serving.ratelimit import TokenBuckets, limited
from serving.x402 import booking, facilitator, fast_path, tokens
from serving.x402.protocol import (
    PAYMENT_RESPONSE,
    TOKEN_NETWORK,
    TOKEN_SCHEME,
    X_PAYMENT_RESPONSE,
    InvalidPayment,
    Offer,
    failed_receipt,
    payment_required,
    read_payment_header,
    receipt,
)
from serving.x402.rules import GatewayConfig, config_key, gateway_config
from serving.x402.verify import Verified, scheme_and_network, verify_exact
from warehouse.connections import read_only
from warehouse.models import X402Usage

router = APIRouter(tags=["x402 gateway"])
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# Hop-by-hop headers (RFC 9110 section 7.6.1), never passed on in either direction, nor the
# headers a message's Connection header names.
_HOP_BY_HOP = {"connection", "proxy-connection", "keep-alive", "proxy-authenticate",
               "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"}
# Not forwarded upstream: those, the payment itself and what httpx sets.
_DROP_REQUEST = _HOP_BY_HOP | {"host", "content-length", "payment-signature", "x-payment",
                               "accept-encoding"}
_DROP_RESPONSE = _HOP_BY_HOP | {"content-length", "content-encoding"}
# A `.` or `..` segment can only arrive percent-encoded (clients resolve literal ones); the
# upstream's URL handling would resolve it into another path than the one priced, or out of the
# merchant's base URL. A backslash counts as a separator, as some servers take it.
_DOT_SEGMENT = re.compile(r"(^|[/\\])\.\.?([/\\]|$)")
# Characters kept as they are when the decoded path is encoded again for the upstream (RFC 3986
# pchar and "/"); `?`, `#` and `%` are encoded, so the upstream reads the path that was priced.
_PATH_SAFE = "/:@!$&'()*+,;=~"
UPSTREAM_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
SETTLE_ATTEMPTS = 2


def clock() -> float:
    """Wall-clock seconds (authorizations are signed against real time, never a test clock)."""
    return time.time()


class Limits:
    """Token buckets per merchant gateway (all callers) and per payer, at each gateway's rates."""

    def __init__(self):
        self._merchant: dict[int, TokenBuckets] = {}
        self._payer: dict[int, TokenBuckets] = {}

    def merchant(self, config: GatewayConfig) -> float:
        rate = config.requests_per_second
        buckets = self._merchant.setdefault(rate, TokenBuckets(rate))
        return buckets.take(config.merchant_id)

    def payer(self, config: GatewayConfig, payer: str) -> float:
        per_minute = config.payer_requests_per_minute
        buckets = self._payer.setdefault(per_minute, TokenBuckets(per_minute / 60, per_minute))
        return buckets.take(f"{config.merchant_id}:{payer}")


def _state(request: Request):
    state = request.app.state
    if getattr(state, "x402_limits", None) is None:
        state.x402_limits = Limits()
    if getattr(state, "x402_upstream", None) is None:
        from serving.x402.upstreams import upstream_client

        state.x402_upstream = upstream_client(state.settings)
    return state


async def gateway(request: Request, merchant_id: str, path: str):
    """Proxy to the merchant's API; priced paths need an x402 payment or an agent token."""
    state = _state(request)
    engine = state.engine
    config = cache.peek(config_key(engine, merchant_id))
    if config is cache.MISSING:
        config = await run_in_threadpool(_config, engine, merchant_id)
    if config is None or config.status != "active":
        raise ApiError(404, "gateway_not_found", f"merchant {merchant_id!r} sells no API here")
    wait = state.x402_limits.merchant(config)
    if wait:
        raise limited(wait, "merchant gateway")
    resource_path = "/" + path
    if _DOT_SEGMENT.search(resource_path):
        raise ApiError(400, "invalid_path", "the path has a `.` or `..` segment",
                       {"path": resource_path})
    offer = config.price_of(request.method, resource_path)
    body = await request.body()
    if offer is None:
        return _relay(await _proxy(state, config, request, resource_path, body))
    resource_url = str(request.url)
    try:
        found = read_payment_header(request.headers)
    except InvalidPayment as exc:
        return _refused(offer, resource_url, exc)
    if found is None:
        return _refused(offer, resource_url, None)
    _, payload = found
    scheme, _ = scheme_and_network(payload)
    call = _CallContext(state, config, request, resource_path, resource_url, body, offer)
    if scheme == TOKEN_SCHEME:
        if payload.x402_version != 2:  # a v1 payload names no `accepted` offer to check
            return _refused(offer, resource_url, InvalidPayment(
                "invalid_x402_version", "the token scheme is x402 v2: send "
                "{x402Version: 2, accepted: <the token offer>, payload: {token}}"))
        if 2 not in offer.versions:  # the token scheme is offered to v2 clients only
            return _refused(offer, resource_url, InvalidPayment(
                "invalid_x402_version", "this resource takes x402 v1 only"))
        return await _token_call(call, payload)
    return await _exact_call(call, payload)


# One route per method, in a fixed order: a multi-method route lists its methods from a set,
# so the OpenAPI document (and the schema fuzz tests built on it) would vary between processes.
for _method in METHODS:
    router.add_api_route("/x402/{merchant_id}/{path:path}", gateway, methods=[_method],
                         name=f"x402_gateway_{_method.lower()}")


@dataclass(frozen=True)
class _CallContext:
    """One paid call on its way through the gateway."""

    state: Any
    config: GatewayConfig
    request: Request
    path: str
    url: str
    body: bytes
    offer: Offer

    def call(self, **fields) -> booking.Call:
        assert self.offer.rule_id is not None  # the gateway's offers come from pricing rules
        return booking.Call(merchant_id=self.config.merchant_id, rule_id=self.offer.rule_id,
                            http_method=self.request.method, path=self.path,
                            network=self.offer.network.caip2, asset=self.offer.asset.symbol,
                            amount=self.offer.amount, pay_to=self.offer.pay_to, **fields)


async def _exact_call(ctx: _CallContext, payload) -> Response:
    engine = ctx.state.engine
    try:
        verified = verify_exact(payload, [ctx.offer], int(clock()))
    except InvalidPayment as exc:
        return _refused(ctx.offer, ctx.url, exc)
    auth = verified.authorization
    wait = ctx.state.x402_limits.payer(ctx.config, auth.payer)
    if wait:
        raise limited(wait, "payer")
    call = ctx.call(scheme="exact", x402_version=verified.version, payer=auth.payer,
                    nonce=auth.nonce)
    fast = fast_path.eligible(engine, ctx.state.settings)
    pool = pg_async.pool_of(ctx.request.app) if fast else None
    try:
        if pool is not None:
            usage_id = await fast_path.claim_async(pool, verified, call, datetime.now(UTC))
        else:
            usage_id = await run_in_threadpool(_claim_exact, engine, verified, call, fast)
    except InvalidPayment as exc:
        return _refused(ctx.offer, ctx.url, exc)
    upstream = await _delivered(ctx, usage_id)
    if isinstance(upstream, Response):
        return upstream
    name = PAYMENT_RESPONSE if verified.version == 2 else X_PAYMENT_RESPONSE
    network_id = ctx.offer.network.caip2 if verified.version == 2 else ctx.offer.network.v1_name
    try:
        tx_hash = None
        if pool is not None:
            tx_hash = await _settle_exact_async(pool, engine, usage_id, verified, call,
                                                upstream.status_code)
        if tx_hash is None:
            tx_hash = await run_in_threadpool(_settle_exact, engine, usage_id, verified, call,
                                              upstream.status_code, fast and pool is None)
    except InvalidPayment as exc:
        await run_in_threadpool(_mark, engine, usage_id, "settle_failed", upstream.status_code,
                                exc.reason)
        return _settle_refused(ctx, exc, name, network_id, auth.payer)
    response = _relay(upstream)
    response.headers[name] = receipt(
        success=True, tx_hash=tx_hash, payer=auth.payer, amount=ctx.offer.amount,
        network_id=network_id)
    return response


async def _token_call(ctx: _CallContext, payload) -> Response:
    engine, offer = ctx.state.engine, ctx.offer
    secret = payload.payload.get("token") if isinstance(payload.payload, dict) else None
    try:
        if not isinstance(secret, str):
            raise InvalidPayment("invalid_payload", "a token payment carries payload.token")
        accepted = payload.accepted
        if (accepted.network, accepted.amount, accepted.asset, accepted.pay_to) != (
                TOKEN_NETWORK, str(offer.amount), offer.asset.symbol, offer.merchant_id):
            raise InvalidPayment("invalid_payment_requirements",
                                 "`accepted` is not the token offer of this resource")
        hashed = tokens.check_signature(secret, _signing_secret(ctx.state))
    except InvalidPayment as exc:
        return _refused(offer, ctx.url, exc)
    wait = ctx.state.x402_limits.payer(ctx.config, hashed)
    if wait:
        raise limited(wait, "payer")
    try:
        usage_id, token_id, buyer = await run_in_threadpool(
            _claim_token, engine, ctx.call(scheme=TOKEN_SCHEME, x402_version=2, payer=""), hashed)
    except InvalidPayment as exc:
        return _refused(offer, ctx.url, exc)
    upstream = await _delivered(ctx, usage_id, token=(token_id, offer.amount))
    if isinstance(upstream, Response):
        return upstream
    try:
        payment_id = await run_in_threadpool(_settle_token, engine, usage_id, buyer,
                                             upstream.status_code)
    except InvalidPayment as exc:  # written off meanwhile: not charged, not delivered
        return _settle_refused(ctx, exc, PAYMENT_RESPONSE, TOKEN_NETWORK, token_id)
    response = _relay(upstream)
    response.headers[PAYMENT_RESPONSE] = receipt(success=True, tx_hash=payment_id,
                                                 payer=token_id, amount=offer.amount,
                                                 network_id=TOKEN_NETWORK)
    return response


async def _delivered(ctx: _CallContext, usage_id: str, token: tuple[str, int] | None = None):
    """The upstream's answer if it is < 400; else the answer to return (nothing charged)."""
    engine = ctx.state.engine
    try:
        upstream = await _proxy(ctx.state, ctx.config, ctx.request, ctx.path, ctx.body)
    except ApiError as exc:
        await run_in_threadpool(_mark, engine, usage_id, "upstream_failed", None, exc.code, token)
        raise
    if upstream.status_code >= 400:
        await run_in_threadpool(_mark, engine, usage_id, "upstream_failed", upstream.status_code,
                                None, token)
        return _relay(upstream)
    return upstream


# --- database work (in the thread pool) -------------------------------------------------------


def _config(engine, merchant_id: str) -> GatewayConfig | None:
    with Session(read_only(engine)) as session:
        return gateway_config(session, merchant_id)


def _claim_exact(engine, verified: Verified, call: booking.Call, fast: bool = False) -> str:
    if fast:
        return fast_path.claim(engine, verified, call, datetime.now(UTC))
    with Session(engine) as session, session.begin():
        facilitator.check_chain(session, verified)
        return booking.claim(session, call, datetime.now(UTC)).id


def _settle_exact(engine, usage_id: str, verified: Verified, call: booking.Call,
                  upstream_status: int, fast: bool = False) -> str:
    """Transfer on chain and book the payment; idempotent, so a retry after a timeout (or a
    lost commit acknowledgement) finds the first transfer instead of making a second."""
    for attempt in range(1, SETTLE_ATTEMPTS + 1):
        try:
            if fast and attempt == 1:
                tx_hash = fast_path.settle(engine, usage_id, verified, call, upstream_status,
                                           datetime.now(UTC))
                if tx_hash is not None:
                    return tx_hash
            with Session(engine) as session, session.begin():
                usage = session.get_one(X402Usage, usage_id, with_for_update=True)
                if usage.status == "settled":
                    assert usage.tx_hash is not None  # a settled call has its transfer
                    return usage.tx_hash
                booking.ensure_settleable(usage)
                now = datetime.now(UTC)
                # refuses a transfer executed before this transaction: not this call's (its own
                # transfer and `settled` commit together, checked above) but a facilitator
                # /settle's that passed its checks before our claim committed
                log = facilitator.settle(session, verified, now)
                booking.record_paid(session, usage, tx_hash=log.tx_hash,
                                    upstream_status=upstream_status, buyer_merchant_id=None,
                                    now=now)
                return log.tx_hash
        except IntegrityError:
            raise _settled_elsewhere(verified) from None
        except OperationalError:
            if attempt == SETTLE_ATTEMPTS:
                raise InvalidPayment("settlement_pending",
                                     "settlement did not complete; the authorization cannot be "
                                     "used again, so it will not be charged twice",
                                     payer=verified.authorization.payer) from None
    raise AssertionError("unreachable")


def _settled_elsewhere(verified: Verified) -> InvalidPayment:
    """A unique violation on settle: a concurrent request settled this authorization first."""
    return InvalidPayment("invalid_exact_evm_nonce_already_used",
                          "this authorization was settled by another request",
                          payer=verified.authorization.payer)


async def _settle_exact_async(pool, engine, usage_id: str, verified: Verified,
                              call: booking.Call, upstream_status: int) -> str | None:
    """The fast settlement on the event loop; None sends it to `_settle_exact`'s general path
    (which finds a settlement that did commit, so a lost acknowledgement never pays twice)."""
    import psycopg

    try:
        return await fast_path.settle_async(pool, engine, usage_id, verified, call,
                                            upstream_status, datetime.now(UTC))
    except psycopg.IntegrityError:
        raise _settled_elsewhere(verified) from None
    except psycopg.OperationalError:
        return None


def _claim_token(engine, call: booking.Call, hashed: str) -> tuple[str, str, str]:
    with Session(engine) as session, session.begin():
        now = datetime.now(UTC)
        token = tokens.reserve(session, hashed=hashed, merchant_id=call.merchant_id,
                               path=call.path, amount=call.amount, currency=call.asset, now=now)
        usage = booking.claim(session, replace(call, payer=token.id, token_id=token.id), now)
        return usage.id, token.id, token.merchant_id


def _settle_token(engine, usage_id: str, buyer: str, upstream_status: int) -> str:
    with Session(engine) as session, session.begin():
        usage = session.get_one(X402Usage, usage_id, with_for_update=True)
        if usage.status == "settled":
            assert usage.payment_id is not None  # a settled call has its payment
            return usage.payment_id
        booking.ensure_settleable(usage)
        payment = booking.record_paid(session, usage, tx_hash=None,
                                      upstream_status=upstream_status, buyer_merchant_id=buyer,
                                      now=datetime.now(UTC))
        return payment.id


def _mark(engine, usage_id: str, status: str, upstream_status: int | None,
          reason: str | None, token: tuple[str, int] | None = None) -> None:
    with Session(engine) as session, session.begin():
        now = datetime.now(UTC)
        closed = booking.mark(session, usage_id, status=status, now=now,
                              upstream_status=upstream_status, reason=reason)
        if closed and token is not None:  # an abandoned call's reservation went back already
            tokens.release(session, token[0], token[1], now)


# --- HTTP -------------------------------------------------------------------------------------


def _signing_secret(state) -> str:
    if getattr(state, "x402_signing_secret", None) is None:
        state.x402_signing_secret = state.settings.signing_secret()
    return state.x402_signing_secret


async def _proxy(state, config: GatewayConfig, request: Request, path: str,
                 body: bytes) -> httpx.Response:
    drop = _DROP_REQUEST | _connection_tokens(request.headers.getlist("connection"))
    headers = [(k, v) for k, v in request.headers.raw if k.decode().lower() not in drop]
    url = httpx.URL(config.upstream_url + quote(path, safe=_PATH_SAFE),
                    query=request.url.query.encode())
    try:
        return await state.x402_upstream.request(request.method, url, headers=headers,
                                                 content=body, timeout=UPSTREAM_TIMEOUT)
    except httpx.TimeoutException as exc:
        raise ApiError(504, "upstream_timeout",
                       f"the merchant's API did not answer in time: {type(exc).__name__}") from None
    except httpx.HTTPError as exc:
        raise ApiError(502, "upstream_unavailable",
                       f"the merchant's API did not answer: {type(exc).__name__}") from None


def _connection_tokens(values: list[str]) -> set[str]:
    """The header names a Connection header lists (hop-by-hop for this connection only)."""
    return {name.strip().lower() for value in values for name in value.split(",")}


def _relay(upstream: httpx.Response) -> Response:
    """The upstream's answer, each header as many times as it came (two Set-Cookie stay two:
    folded with a comma they would break)."""
    drop = _DROP_RESPONSE | _connection_tokens(upstream.headers.get_list("connection"))
    response = Response(upstream.content, status_code=upstream.status_code)
    response.raw_headers.extend((name.lower(), value) for name, value in upstream.headers.raw
                                if name.decode("latin-1").lower() not in drop)
    return response


def _settle_refused(ctx: _CallContext, exc: InvalidPayment, header: str, network_id: str,
                    payer: str) -> Response:
    """A settlement that failed after verify: the 402 with the reason (PAYMENT-REQUIRED and
    body, as any refusal) and, as x402's HTTP transport has it, the failed settlement's
    PAYMENT-RESPONSE (X-PAYMENT-RESPONSE for v1). The upstream's answer is not released."""
    response = _refused(ctx.offer, ctx.url, exc)
    response.headers[header] = failed_receipt(reason=exc.reason, network_id=network_id,
                                              payer=payer)
    return response


def _refused(offer: Offer, resource_url: str, exc: InvalidPayment | None) -> Response:
    if exc is not None and exc.status == 403:
        return JSONResponse(error_body(exc.reason, exc.message), status_code=403)
    headers, body = payment_required(offer, resource_url, exc.reason if exc else None)
    if exc is not None:
        body["message"] = exc.message
    return JSONResponse(body, status_code=402, headers=headers)
