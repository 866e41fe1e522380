"""Schemathesis against the API's own OpenAPI: generated requests to every endpoint, as a merchant
and as an operator, must never produce a 5xx."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from sqlalchemy.orm import Session

from serving.app import create_app
from serving.auth import issue_operator_token
from serving.schemas import MerchantCreate
from serving.services.admin import bootstrap_admin, create_merchant
from warehouse.migrate import upgrade
from warehouse.settings import Settings

_HOME = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"clearhouse-fuzz-{os.getpid()}")
_URL = f"sqlite:///{_HOME}/fuzz.sqlite"
os.makedirs(_HOME, exist_ok=True)
if os.path.exists(f"{_HOME}/fuzz.sqlite"):
    os.remove(f"{_HOME}/fuzz.sqlite")
upgrade(_URL)
_SETTINGS = Settings(home=_HOME, database_url=_URL, environment="test", log_level="WARNING",
                     rate_limit_per_key=1e9, rate_limit_per_ip=1e9, rate_limit_per_customer=1e9)
APP = create_app(_SETTINGS)
with Session(APP.state.engine, expire_on_commit=False) as _s:
    _admin = bootstrap_admin(_s)
    _merchant, MERCHANT_KEY = create_merchant(_s, MerchantCreate(name="Fuzz"))
    _s.commit()
ADMIN_TOKEN = issue_operator_token(_SETTINGS, _admin)

schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.mark.slow
@pytest.mark.parametrize("credential", ["merchant", "admin"])
@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, credential):
    token = MERCHANT_KEY if credential == "merchant" else ADMIN_TOKEN
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
    # The test is about 5xx, not latency: a loaded CI machine may take longer than the default
    # 10 s read timeout of schemathesis's ASGI transport.
    response = case.call(timeout=60)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}")
