"""Clearhouse-Signature: Stripe-style HMAC signatures of webhook and callback bodies (api.md).

    Clearhouse-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

The timestamp is inside the signed string, so a captured request cannot be replayed with a new
`t`; a request more than 300 s away from the receiver's clock (either way) is refused. A header
may carry several `v1=` entries (one per secret while a secret is being rotated); it verifies
when any of them matches any of the receiver's secrets. Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

SIGNATURE_HEADER = "Clearhouse-Signature"
EVENT_ID_HEADER = "Clearhouse-Event-Id"
TOLERANCE_SECONDS = 300
SCHEME = "v1"


class SignatureError(Exception):
    """The signature does not authenticate the request; `code` is the API error code."""

    code = "invalid_signature"


class MissingSignature(SignatureError):
    pass


class MalformedSignature(SignatureError):
    pass


class SignatureMismatch(SignatureError):
    pass


class StaleSignature(SignatureError):
    code = "stale_signature"


def _secrets(secret: str | Iterable[str]) -> list[str]:
    values = [secret] if isinstance(secret, str) else list(secret)
    if not values or any(not s for s in values):
        raise ValueError("a signing secret must be a non-empty string")
    return values


def compute(secret: str, body: bytes, t: int) -> str:
    """Hex HMAC-SHA256(secret, "<t>.<body>")."""
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def _unix(value: datetime | float) -> int:
    return int(value.timestamp()) if isinstance(value, datetime) else int(value)


def running_clock(start: datetime) -> Callable[[], datetime]:
    """`start` moved on by the time spent since: a pass that signs many requests stamps each
    with when it is sent, not when the pass began (a receiver refuses a stamp older than
    TOLERANCE_SECONDS, and a pass behind a slow endpoint can take longer than that)."""
    began = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - began)


def sign(secret: str | Iterable[str], body: bytes, t: datetime | float) -> str:
    """The header value for `body` at time `t`; several secrets give several v1= entries."""
    ts = _unix(t)
    return ",".join([f"t={ts}", *(f"{SCHEME}={compute(s, body, ts)}" for s in _secrets(secret))])


def parse(header: str | None) -> tuple[int, list[str]]:
    """(timestamp, v1 signatures) of a header; unknown schemes (v0=...) are ignored."""
    if not header or not header.strip():
        raise MissingSignature(f"the {SIGNATURE_HEADER} header is missing")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise MalformedSignature(f"{SIGNATURE_HEADER} must look like t=<unix>,v1=<hex>")
        if key == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                raise MalformedSignature(f"{SIGNATURE_HEADER} needs one integer t=")
            timestamp = int(value)
        elif key == SCHEME:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise MalformedSignature(f"{SIGNATURE_HEADER} needs t= and at least one {SCHEME}=")
    return timestamp, signatures


def verify(secret: str | Iterable[str], body: bytes, header: str | None, now: datetime | float,
           tolerance: int = TOLERANCE_SECONDS) -> int:
    """Check `header` against the raw `body`; returns the signed timestamp.

    Raises MissingSignature, MalformedSignature, SignatureMismatch, or StaleSignature when the
    signature matches but `t` is more than `tolerance` seconds from `now` (past or future).
    """
    timestamp, signatures = parse(header)
    expected = [compute(s, body, timestamp) for s in _secrets(secret)]
    # Every pair is compared (no early exit), each with a constant-time compare.
    matched = False
    for candidate in signatures:
        for good in expected:
            matched |= hmac.compare_digest(candidate.encode(), good.encode())
    if not matched:
        raise SignatureMismatch("the signature does not match the body")
    if abs(_unix(now) - timestamp) > tolerance:
        raise StaleSignature(f"the signature's timestamp is more than {tolerance} s from now")
    return timestamp
