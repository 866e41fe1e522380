"""Fixtures: the API on each engine (SQLite and Postgres), and a seller's priced gateway."""

from __future__ import annotations

import pytest

from serving import cache
from tests.serving.helpers import make_api
from tests.serving.x402.helpers import build_shop


@pytest.fixture
def api(oltp_url, make_settings):
    cache.clear()
    yield make_api(make_settings(database_url=oltp_url))
    cache.clear()


@pytest.fixture
def shop(api):
    """A seller whose gateway proxies the simulated company-information API and prices
    GET /company/detail at 0.01 USDC on Base Sepolia, and a payer holding 1 USDC."""
    return build_shop(api)
