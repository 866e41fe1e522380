"""settlement.md / api.md: who may download which statement (CSV and PDF).

"a merchant sees only its own; an agent sees the statements of merchants under it, and its own
commission statements; finance sees all" and api.md's "404 (not 403) for another tenant's
resource". Tree: A (top) -> B; merchants mA under A, mB under B, mX under the platform.
"""

from __future__ import annotations

from datetime import date

import pytest

from tests.serving.admin_helpers import (
    agent,
    bearer,
    key_for,
    operator,
    publish_agent_statements,
    publish_statements,
)
from tests.serving.helpers import sqlite_api

DAY = date(2026, 11, 20)


@pytest.fixture
def world(tmp_path, make_settings):
    settings, api = sqlite_api(tmp_path, make_settings)
    a = agent(api, "A")
    b = agent(api, "B", a)
    merchants, keys = {}, {}
    for name, agent_id in (("mA", a), ("mB", b), ("mX", None)):
        merchants[name], keys[name] = api.merchant(name, agent_id=agent_id)
    publish_statements(settings, list(merchants.values()), day=DAY)
    publish_agent_statements(settings, [(a, "USD", date(2026, 11, 1), date(2026, 11, 30), 10),
                                        (b, "USD", date(2026, 11, 1), date(2026, 11, 30), 20)])
    creds = {"mA": keys["mA"], "mB": keys["mB"], "mX": keys["mX"],
             "A": key_for(api, agent_id=a)[1], "B": key_for(api, agent_id=b)[1],
             "finance": operator(api, "finance")}
    ids = {**merchants, "A": a, "B": b}
    return api, creds, ids


def _status(api, credential, entity_id, fmt):
    period = DAY.isoformat() if entity_id.startswith("mer_") else "2026-11"
    resp = api.client.get(f"/api/v1/settlements/{entity_id}?period={period}&format={fmt}",
                          headers=bearer(credential) if credential else {})
    return resp.status_code


EXPECTED = {  # caller -> statement owner -> status
    "mA": {"mA": 200, "mB": 404, "mX": 404, "A": 404, "B": 404},
    "mX": {"mA": 404, "mB": 404, "mX": 200, "A": 404, "B": 404},
    "A": {"mA": 200, "mB": 200, "mX": 404, "A": 200, "B": 404},
    "B": {"mA": 404, "mB": 200, "mX": 404, "A": 404, "B": 200},
    "finance": {"mA": 200, "mB": 200, "mX": 200, "A": 200, "B": 200},
}


@pytest.mark.parametrize("fmt", ["csv", "pdf"])
def test_statement_download_access_matrix(world, fmt):
    api, creds, ids = world
    got = {caller: {owner: _status(api, creds[caller], ids[owner], fmt) for owner in row}
           for caller, row in EXPECTED.items()}
    assert got == EXPECTED


def test_statement_download_without_credential_is_401_and_unknown_id_404(world):
    api, creds, ids = world
    assert _status(api, None, ids["mA"], "csv") == 401
    assert _status(api, creds["finance"], "mer_doesnotexist", "csv") == 404
    assert _status(api, creds["A"], "agt_doesnotexist", "csv") == 404
