"""Opaque, time-ordered ids with a type prefix (pay_, re_, mer_, ...), per api.md.

The body is 26 Crockford base32 characters: 48 bits of milliseconds then 80 random bits, so ids
sort by creation time (list cursors rely on that) and never collide in practice. Ids made on the
wall clock are monotonic within a millisecond, as ULID's monotonic mode: one made in the same
millisecond as the previous one of the process, if its random part came out lower, is the
previous one plus 1, so objects made in one millisecond still list in the order they were made.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"

PREFIXES = {
    "payment": "pay", "refund": "re", "merchant": "mer", "agent": "agt", "channel": "ch",
    "payout": "po", "event": "evt", "price": "prc", "api_key": "key", "user": "usr",
    "ledger_txn": "ltx", "customer": "cus",
    "webhook_delivery": "whd",
    "commission_model": "cm",
    "wallet": "wal", "wallet_txn": "wtx",
    "x402_rule": "xpr", "x402_usage": "xpu", "payment_token": "apt",
    "settlement_adjustment": "adj",
}

_last = 0  # the previous wall-clock id's 128-bit value (this process)
_last_lock = threading.Lock()


def new_id(kind: str, *, at_ms: int | None = None) -> str:
    prefix = PREFIXES[kind]
    ms = int(time.time() * 1000) if at_ms is None else at_ms
    if not 0 <= ms < 1 << 48:  # outside 48 bits the ids would wrap and stop sorting by time
        raise ValueError(f"at_ms must be milliseconds since the epoch in 48 bits, got {ms}")
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    if at_ms is None:
        global _last
        with _last_lock:
            if value >> 80 == _last >> 80 and value <= _last:
                value = _last + 1
            _last = value
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"
