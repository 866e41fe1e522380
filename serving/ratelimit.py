"""Rate limits: token buckets per API key, per client IP and per paying customer.

Defaults (requests per second, bursts of the same size) come from settings:
CLEARHOUSE_RATE_LIMIT_PER_KEY (1000), CLEARHOUSE_RATE_LIMIT_PER_IP (1000) and
CLEARHOUSE_RATE_LIMIT_PER_CUSTOMER (10, the design's per-customer limit). Over a limit the API
answers 429 `rate_limited` with Retry-After. Buckets live in each API process, so with N uvicorn
workers a client can reach N times the limit; a shared store (Redis) is the next step if that
matters.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time

from serving.errors import ApiError

MAX_BUCKETS = 100_000


class TokenBuckets:
    def __init__(self, rate: float, burst: float | None = None, clock=time.monotonic):
        self.rate, self.burst, self._clock = rate, burst or max(rate, 1.0), clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token; returns 0 if allowed, else the seconds to wait."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > MAX_BUCKETS:  # forget idle callers
                self._buckets.clear()
            return (1 - tokens) / self.rate


def limited(wait: float, scope: str) -> ApiError:
    return ApiError(429, "rate_limited", f"too many requests for this {scope}; retry later",
                    {"scope": scope, "retry_after_seconds": math.ceil(wait)},
                    headers={"Retry-After": str(max(1, math.ceil(wait)))})


class RateLimitMiddleware:
    """Pure ASGI (no per-request task overhead): checks the API key and IP buckets."""

    def __init__(self, app, *, per_key: float, per_ip: float):
        self.app = app
        self.keys = TokenBuckets(per_key)
        self.ips = TokenBuckets(per_ip)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            return await self.app(scope, receive, send)
        auth = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        checks = [(self.ips, (scope.get("client") or ("?",))[0], "client IP")]
        if auth:
            # Keyed on the credential alone: the scheme's case and the spaces around it vary
            # (serving/auth.py takes "bearer" too), and must not give one key several buckets.
            credential = auth.strip().partition(b" ")[2].strip() or auth
            checks.append((self.keys, hashlib.sha256(credential).hexdigest(), "API key"))
        for buckets, key, name in checks:
            wait = buckets.take(key)
            if wait:
                return await _reject(send, limited(wait, name))
        return await self.app(scope, receive, send)


async def _reject(send, error: ApiError) -> None:
    import json

    from serving.errors import error_body

    body = json.dumps(error_body(error.code, error.message, error.details)).encode()
    headers = [(b"content-type", b"application/json"),
               *((name.lower().encode(), value.encode())
                 for name, value in (error.headers or {}).items())]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
