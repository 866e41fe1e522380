"""An asyncio Postgres pool for the fast paths, opened with the app (lifespan) on Postgres.

The general paths run ORM code in FastAPI's thread pool: each blocking round trip gives up the
GIL and, with a worker's dozen request threads all busy, waits to get it back. The fast paths
only need a few statements per request, so they run them on the event loop instead, over
psycopg's async connections (no thread hop, no GIL hand-offs). (psycopg's pipeline mode was
tried for BEGIN + claim and write + COMMIT: it polls the socket while it waits and cost more CPU
than the round trips it saved.) A pool sized for a worker keeps connections
open: a request that finds them all busy waits for one instead of starting a Postgres backend.

Without a running lifespan (Starlette's TestClient outside a `with` block), or on SQLite, there
is no pool and the fast paths fall back to the thread pool.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from warehouse.connections import DEFAULT_LOCK_TIMEOUT_MS, pg_session_options, to_libpq_url

POOL_SIZE = 16  # per worker; Postgres' default max_connections is 100


async def open_pool(url: str, size: int = POOL_SIZE,
                    lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS):
    from psycopg_pool import AsyncConnectionPool

    # Autocommit: a single-statement write (x402's claim and settle) is its own transaction,
    # one round trip; a path that needs more opens `conn.transaction()` itself.
    pool = AsyncConnectionPool(to_libpq_url(url), min_size=size, max_size=size, open=False,
                               name="clearhouse-fast-paths", kwargs={"autocommit": True, "options": pg_session_options(lock_timeout_ms)})
    await pool.open(wait=True, timeout=30)
    return pool


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = app.state.settings
    if settings.oltp_url.startswith("sqlite") or not settings.payments_fast_path:
        yield
        return
    pool = await open_pool(settings.oltp_url, lock_timeout_ms=settings.db_lock_timeout_ms)
    app.state.pg_pool = pool
    try:
        yield
    finally:
        # Its own pool, closed once: tests run several lifespans of one app side by side
        # (each a TestClient), and the last one opened is the one the app uses meanwhile.
        if getattr(app.state, "pg_pool", None) is pool:
            app.state.pg_pool = None
        await pool.close()


def pool_of(app: FastAPI):
    """The app's async pool, or None (no lifespan, SQLite, fast paths off)."""
    return getattr(app.state, "pg_pool", None)
