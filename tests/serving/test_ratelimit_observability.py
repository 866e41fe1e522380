"""Rate limits answer 429 with Retry-After; logs are JSON with a request id and no secrets;
/metrics exposes payments, latency and breaker state."""

from __future__ import annotations

import json
import logging

import pytest

from serving.observability import JsonFormatter, mask
from serving.ratelimit import TokenBuckets
from tests.serving.helpers import make_api, random_card


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_token_bucket_refills_at_its_rate():
    clock = Clock()
    buckets = TokenBuckets(rate=10, clock=clock)
    assert all(buckets.take("k") == 0 for _ in range(10))
    wait = buckets.take("k")
    assert wait == pytest.approx(0.1)
    clock.now += 0.1
    assert buckets.take("k") == 0
    assert buckets.take("other") == 0  # buckets are per key


@pytest.fixture
def api(tmp_path, make_settings):
    from warehouse.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'o.sqlite'}"
    upgrade(url)
    # One request per 1,000 s per key: deterministic however slow the machine is.
    return make_api(make_settings(database_url=url, rate_limit_per_key=0.001))


def test_per_key_limit(api):
    _, key = api.merchant()
    statuses = [api.pay(key, amount="100", customer={"id": f"c{i}"}).status_code for i in range(3)]
    assert statuses == [201, 429, 429]
    limited = api.pay(key, amount="100")
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1


def test_per_key_limit_ignores_the_scheme_spelling(api):
    # "bearer" is accepted as "Bearer" (RFC 7235): respelling the scheme is not a new bucket.
    _, key = api.merchant()
    first = api.client.get("/api/v1/payments", headers={"Authorization": f"Bearer {key}"})
    assert first.status_code == 200
    for header in (f"bearer {key}", f"BEARER  {key}", f" Bearer {key} "):
        again = api.client.get("/api/v1/payments", headers={"Authorization": header})
        assert again.status_code == 429, header


def test_per_customer_limit(tmp_path, make_settings):
    from warehouse.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    upgrade(url)
    api = make_api(make_settings(database_url=url, rate_limit_per_customer=0.001))
    _, key = api.merchant()
    codes = [api.pay(key, amount="100", customer={"id": "same"}).status_code for _ in range(3)]
    assert codes == [201, 429, 429]
    assert api.pay(key, amount="100", customer={"id": "someone-else"}).status_code == 201


def test_a_retry_over_the_customer_limit_replays_its_answer(oltp_url, make_settings):
    """The per-customer bucket limits new payments; a retry with an answered key makes none,
    so it replays (api.md idempotency) instead of a 429 - on SQLite and Postgres."""
    api = make_api(make_settings(database_url=oltp_url, rate_limit_per_customer=0.001))
    _, key = api.merchant()
    card = {"type": "card", "number": random_card()}
    first = api.pay(key, amount="100", customer={"id": "same"}, idem="order-1", method=card)
    assert first.status_code == 201, first.text
    assert api.pay(key, amount="100", customer={"id": "same"}).status_code == 429  # new work
    again = api.pay(key, amount="100", customer={"id": "same"}, idem="order-1", method=card)
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()


def test_metrics_and_request_id(api):
    _, key = api.merchant()
    assert api.pay(key, amount="100").status_code == 201
    resp = api.client.get("/health", headers={"X-Request-Id": "req-abc"})
    assert resp.headers["x-request-id"] == "req-abc"
    assert len(api.client.get("/health").headers["x-request-id"]) == 32
    text = api.client.get("/metrics").text
    assert 'clearhouse_payments_total{channel="ch_card_sim",status="success"}' in text
    assert 'clearhouse_http_request_seconds_count{method="POST",route="/api/v1/payments"' in text


def test_logs_are_json_and_masked():
    record = logging.LogRecord("clearhouse.api", logging.INFO, __file__, 1,
                               "key sk_test_abcDEF123 card 4242424242424242 mail jane.doe@example.com",
                               None, None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "info" and entry["request_id"] == "-"
    assert "abcDEF" not in entry["message"] and "4242424242424242" not in entry["message"]
    assert "j***@example.com" in entry["message"]
    assert mask("whsec_secretvalue") == "whsec_***"
