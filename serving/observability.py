"""Structured JSON logs with a request id, and Prometheus metrics at /metrics.

Logs carry ids, never secrets, card data, API keys or request bodies; customer e-mails and IPs
are masked by `mask`. Metrics are per API process (prometheus_client's default registry).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
# The request id is also left in the ASGI scope: the catch-all 500 handler (serving/errors.py)
# runs outside this middleware, after the context variable is reset.
REQUEST_ID_SCOPE_KEY = "clearhouse.request_id"

HTTP_LATENCY = Histogram("clearhouse_http_request_seconds", "API request latency",
                         ["method", "route", "status"],
                         buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
PAYMENTS = Counter("clearhouse_payments_total",
                   "Payments created, by the status the create answered with, and channel",
                   ["status", "channel"])
# What happens to a payment after its create: a confirm, a cancel, a channel's callback settling
# a pending one. With PAYMENTS, final outcomes of payments that end later are counted too.
PAYMENT_STATUS_CHANGES = Counter(
    "clearhouse_payment_status_changes_total",
    "Payments moved to a status after their creation (confirm, cancel, channel callback), by "
    "new status and channel", ["status", "channel"])
BREAKER = Gauge("clearhouse_channel_breaker_open", "1 when a channel's circuit breaker is open",
                ["channel", "state"])

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@")
_SECRETS = re.compile(
    r"(sk_test_|sk_live_|whsec_|chsec_|cpt_)[A-Za-z0-9_\-]+"
    # card-like numbers, also written in groups ("4242 4242 4242 4242", "4242-4242-...")
    r"|\b\d(?:[ -]?\d){11,18}\b"
    # JWTs (operator bearer tokens): header.payload.signature, base64url
    r"|\beyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")


def mask(text: str) -> str:
    """Mask e-mail local parts, API keys, secrets and card-like numbers."""
    return _EMAIL.sub(r"\1***@", _SECRETS.sub(lambda m: (m.group(1) or "") + "***", text))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z", "level": record.levelname.lower(),
                 "logger": record.name, "request_id": REQUEST_ID.get(),
                 "message": mask(record.getMessage())}
        for key, value in getattr(record, "fields", {}).items():
            entry[key] = mask(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["error"] = mask(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("clearhouse")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


log = logging.getLogger("clearhouse.api")


class RequestContextMiddleware:
    """Request id in and out (X-Request-Id), latency histogram, one access-log line."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = incoming.decode()[:64] if incoming else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        scope[REQUEST_ID_SCOPE_KEY] = request_id
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            template = route_template(scope)
            HTTP_LATENCY.labels(scope["method"], template, str(status["code"])).observe(elapsed)
            log.info("request", extra={"fields": {
                "method": scope["method"], "route": template, "status": status["code"],
                "duration_ms": round(elapsed * 1000, 2)}})
            REQUEST_ID.reset(token)


def route_template(scope) -> str:
    """The matched route's path template with its router prefix (low-cardinality label)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return "unmatched"
    included = (scope.get("fastapi") or {}).get("included_router")
    context = getattr(included, "include_context", None)
    return (getattr(context, "prefix", "") or "") + path


def metrics_payload() -> tuple[bytes, str]:
    from serving.routing import HEALTH

    for channel, state in HEALTH.states().items():
        for name in ("closed", "open", "half_open"):
            BREAKER.labels(channel, name).set(1 if state == name else 0)
    return generate_latest(), CONTENT_TYPE_LATEST
