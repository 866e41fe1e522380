"""The FastAPI application factory."""

from __future__ import annotations

import threading

from fastapi import FastAPI, Response
from sqlalchemy import text

from serving import fraud, pg_async
from serving.api import (
    adjustments,
    agents,
    api_keys,
    audit_log,
    channel_callbacks,
    channels,
    commission_models,
    events,
    merchants,
    payments,
    prices,
    settlements,
    users,
    wallets,
    withdrawals,
    x402,
)
from serving.errors import install_error_handlers
from serving.observability import RequestContextMiddleware, configure_logging, metrics_payload
from serving.ratelimit import RateLimitMiddleware, TokenBuckets
from serving.x402 import facilitator as x402_facilitator
from serving.x402 import gateway as x402_gateway
from serving.x402 import verify as x402_verify
from warehouse.connections import make_oltp_engine
from warehouse.settings import Settings, get_settings

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="Clearhouse API", version="0.1.0",
                  description="Payments, refunds and settlement statements. Money travels as "
                              "integer minor units in strings: {\"amount_minor\": \"1250\", "
                              "\"currency\": \"USD\"}.",
                  lifespan=pg_async.lifespan)
    app.state.settings = settings
    # /api/v1/payments/ is a 404 in the error shape, not a bare 307 to an absolute http:// URL
    # (which would drop https behind a TLS proxy)
    app.router.redirect_slashes = False
    if settings.oltp_url.startswith("sqlite"):
        settings.home_dir.mkdir(parents=True, exist_ok=True)
    app.state.engine = make_oltp_engine(settings.oltp_url,
                                        lock_timeout_ms=settings.db_lock_timeout_ms)
    install_error_handlers(app, postgres=not settings.oltp_url.startswith("sqlite"))
    configure_logging(settings.log_level)
    app.state.fraud_scorer = fraud.install(settings)  # the payments champion, if there is one
    app.state.customer_limits = TokenBuckets(settings.rate_limit_per_customer)
    # Outermost first: every request gets an id and a latency sample, even a rate-limited one.
    app.add_middleware(RateLimitMiddleware, per_key=settings.rate_limit_per_key,
                       per_ip=settings.rate_limit_per_ip)
    app.add_middleware(RequestContextMiddleware)
    # The pay-per-call routes first: FastAPI tries routes in order, one regex each, and a paid
    # call is the hottest request there is (measured: 10 % of a paid call's CPU went to trying
    # the /api/v1 routes before reaching the gateway). Nothing else lives under /x402/ or
    # /facilitator/, so the order changes no match.
    app.include_router(x402_gateway.router)  # /x402/{merchant_id}/...: the pay-per-call proxy
    app.include_router(x402_facilitator.router)  # /facilitator/verify|settle|supported
    for module in (payments, settlements, merchants, events, channel_callbacks):
        app.include_router(module.router, prefix=API_PREFIX)
    for module in (agents, channels, prices, commission_models, users, api_keys, audit_log):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(withdrawals.router, prefix=API_PREFIX)
    app.include_router(adjustments.router, prefix=API_PREFIX)
    app.include_router(wallets.router, prefix=API_PREFIX)
    app.include_router(x402.router, prefix=API_PREFIX)
    # eth-account takes ~0.7 s to import: warm it off the start-up path, before the first paid call.
    threading.Thread(target=x402_verify.warm_up, name="x402-warm-up", daemon=True).start()

    @app.get("/health", tags=["ops"])
    def health():
        with app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok", "database": app.state.engine.dialect.name,
                "warehouse": settings.warehouse_engine}

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    def metrics():
        payload, content_type = metrics_payload()
        return Response(payload, media_type=content_type)

    _document_bearer_auth(app)
    return app


def _document_bearer_auth(app: FastAPI) -> None:
    """The OpenAPI document names the credential as api.md does - `Authorization: Bearer <API
    key or operator JWT>` - as a security scheme (the docs page's Authorize button) on every
    operation that reads it, instead of a plain header parameter."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = build()
        doc.setdefault("components", {})["securitySchemes"] = {"bearerAuth": {
            "type": "http", "scheme": "bearer",
            "description": "a merchant or agent API key (sk_test_...) or an operator JWT"}}
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                parameters = operation.get("parameters", [])
                kept = [p for p in parameters
                        if not (p.get("in") == "header" and p.get("name") == "authorization")]
                if len(kept) < len(parameters):
                    operation["parameters"] = kept
                    operation["security"] = [{"bearerAuth": []}]
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
