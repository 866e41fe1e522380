"""A simulated company-information API: the merchant the demo's research agent buys from.

Free: GET /company/basic?name=... Premium (priced by the merchant's x402 rules in the demo):
GET /company/detail, /company/officers and /company/filings. Answers are deterministic per
company name; a name starting with "unknown" is 404 (the gateway then charges nothing).
"""

from __future__ import annotations

import hashlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

BASE_URL = "http://company-info.sim"
COUNTRIES = ["DE", "US", "SG", "JP", "TW", "GB", "FR", "NL"]
SECTORS = ["payments", "logistics", "semiconductors", "retail", "software", "energy"]


def _seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.lower().encode()).digest()[:8], "big")


def _company(request: Request) -> tuple[str, int] | JSONResponse:
    name = request.query_params.get("name", "").strip()
    if not name:
        return JSONResponse({"error": "name is required"}, status_code=400)
    if name.lower().startswith("unknown"):
        return JSONResponse({"error": f"no company called {name!r}"}, status_code=404)
    return name, _seed(name)


async def basic(request: Request):
    found = _company(request)
    if isinstance(found, JSONResponse):
        return found
    name, seed = found
    return JSONResponse({"name": name, "country": COUNTRIES[seed % len(COUNTRIES)],
                         "sector": SECTORS[seed % len(SECTORS)], "founded": 1950 + seed % 70})


async def detail(request: Request):
    found = _company(request)
    if isinstance(found, JSONResponse):
        return found
    name, seed = found
    return JSONResponse({"name": name, "employees": 50 + seed % 50_000,
                         "revenue_minor": str(10_000_000 + seed % 10**12), "currency": "USD",
                         "credit_rating": ["AAA", "AA", "A", "BBB", "BB"][seed % 5],
                         "parent": None if seed % 3 else f"{name} Holding"})


async def officers(request: Request):
    found = _company(request)
    if isinstance(found, JSONResponse):
        return found
    name, seed = found
    return JSONResponse({"name": name, "officers": [
        {"role": role, "name": f"Officer {(seed >> (8 * i)) % 997}"}
        for i, role in enumerate(("CEO", "CFO", "COO"))]})


async def filings(request: Request):
    found = _company(request)
    if isinstance(found, JSONResponse):
        return found
    name, seed = found
    return JSONResponse({"name": name, "filings": [
        {"year": 2026 - i, "type": "annual_report", "late": bool((seed >> i) & 1)}
        for i in range(3)]})


app = Starlette(routes=[Route("/company/basic", basic), Route("/company/detail", detail),
                        Route("/company/officers", officers), Route("/company/filings", filings)])
