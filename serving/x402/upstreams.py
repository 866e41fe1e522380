"""The HTTP client the gateway calls merchants' APIs with.

Simulated upstreams (the demo's company-information API) are mounted in-process at their
`.sim` base URLs, so the demo and tests need no extra server; every other URL goes over the
network, with pooled keep-alive connections.
"""

from __future__ import annotations

import httpx

from serving.x402 import sim_company_info

SIMULATED = {sim_company_info.BASE_URL: sim_company_info.app}


def upstream_client(settings=None) -> httpx.AsyncClient:
    mounts = {url: httpx.ASGITransport(app=app) for url, app in SIMULATED.items()}
    return httpx.AsyncClient(mounts=mounts, follow_redirects=False,
                             limits=httpx.Limits(max_connections=200,
                                                 max_keepalive_connections=100))
