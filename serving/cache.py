"""A small per-process TTL cache for configuration read on the hot path (API keys, merchant risk
settings, prices, channel prices). Changes reach every API process within TTL_SECONDS (the
process that made the change clears at once); money itself is never cached.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

TTL_SECONDS = 5.0
_store: dict[tuple, tuple[float, Any]] = {}
_lock = threading.Lock()
_scopes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def scope(bind) -> str:
    """The part of a key that names the database (an Engine, a Connection or a Session's bind):
    its URL as text, rendered once per engine (rendering it took ~2 % of a payment create)."""
    engine = bind.engine
    name = _scopes.get(engine)
    if name is None:
        name = _scopes[engine] = str(engine.url)
    return name


def cached(key: tuple, load: Callable[[], Any], ttl: float = TTL_SECONDS) -> Any:
    now = time.monotonic()
    with _lock:
        hit = _store.get(key)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
    value = load()
    with _lock:
        if len(_store) > 50_000:
            _store.clear()
        _store[key] = (now, value)
    return value


MISSING = object()


def peek(key: tuple, ttl: float = TTL_SECONDS) -> Any:
    """The cached value if fresh, else MISSING (never loads: safe on the event loop)."""
    now = time.monotonic()
    with _lock:
        hit = _store.get(key)
    if hit is not None and now - hit[0] < ttl:
        return hit[1]
    return MISSING


_on_clear: list[Callable[[], None]] = []


def clear() -> None:
    with _lock:
        _store.clear()
    for hook in _on_clear:
        hook()


def on_clear(hook: Callable[[], None]) -> None:
    _on_clear.append(hook)


def install_invalidation() -> None:
    """Clear the cache in this process whenever a session flushes configuration changes, so the
    process that made a change sees it at once (others within TTL_SECONDS)."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from warehouse.models import (
        Agent,
        ApiKey,
        Channel,
        ChannelCurrency,
        Merchant,
        Price,
        X402Gateway,
        X402PricingRule,
    )

    watched = (Agent, ApiKey, Channel, ChannelCurrency, Merchant, Price, X402Gateway,
               X402PricingRule)

    @event.listens_for(Session, "after_flush")
    def _invalidate(session, _context):  # pragma: no cover - trivial
        changed = (*session.new, *session.dirty, *session.deleted)
        if any(isinstance(obj, watched) for obj in changed):
            clear()


install_invalidation()
