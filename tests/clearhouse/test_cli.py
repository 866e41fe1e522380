"""The operator commands: bootstrap an admin, register a merchant, and use both credentials."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from clearhouse.cli import main
from serving.app import create_app


def run(capsys, *argv) -> dict:
    main(list(argv))
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_bootstrap_and_merchant_create_give_working_credentials(make_settings, capsys):
    settings = make_settings()
    admin = run(capsys, "admin", "bootstrap")
    merchant = run(capsys, "merchants", "create", "Corner Shop")
    assert admin["role"] == "platform_admin" and merchant["id"].startswith("mer_")
    assert merchant["api_key"].startswith("sk_test_")
    client = TestClient(create_app(settings))
    mine = client.get(f"/api/v1/merchants/{merchant['id']}",
                      headers={"Authorization": f"Bearer {merchant['api_key']}"})
    assert mine.status_code == 200 and mine.json()["name"] == "Corner Shop"
    by_admin = client.get(f"/api/v1/merchants/{merchant['id']}",
                          headers={"Authorization": f"Bearer {admin['token']}"})
    assert by_admin.status_code == 200
    forged = client.get(f"/api/v1/merchants/{merchant['id']}",
                        headers={"Authorization": f"Bearer {admin['token']}x"})
    assert forged.status_code == 401
    # The admin registers a second merchant through the API; the first merchant cannot.
    body = {"name": "Second", "settlement_currency": "EUR"}
    created = client.post("/api/v1/merchants", json=body,
                          headers={"Authorization": f"Bearer {admin['token']}"})
    assert created.status_code == 201 and created.json()["api_key"].startswith("sk_test_")
    refused = client.post("/api/v1/merchants", json=body,
                          headers={"Authorization": f"Bearer {merchant['api_key']}"})
    assert refused.status_code == 403
