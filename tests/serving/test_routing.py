"""Routing picks by currency, limits, price and health; the breaker opens above 20 % errors."""

from __future__ import annotations

import pytest

from serving.routing import COOLDOWN_SECONDS, MIN_CALLS, HealthRegistry


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_breaker_opens_above_twenty_percent_errors_and_half_opens_after_cooldown():
    clock = Clock()
    health = HealthRegistry(clock=clock)
    for _ in range(8):
        health.record("ch_a", ok=True, latency_ms=5)
    health.record("ch_a", ok=False, latency_ms=5)
    health.record("ch_a", ok=False, latency_ms=5)  # 2/10 = 20 %: not above, stays closed
    assert health.get("ch_a").state == "closed" and health.allows("ch_a")
    health.record("ch_a", ok=False, latency_ms=5)  # 3/11 > 20 %
    assert health.get("ch_a").state == "open" and not health.allows("ch_a")
    clock.now += COOLDOWN_SECONDS
    assert health.allows("ch_a")  # one probe
    assert not health.allows("ch_a")  # and only one
    health.record("ch_a", ok=True, latency_ms=5)
    assert health.get("ch_a").state == "closed"


def test_failed_probe_reopens():
    clock = Clock()
    health = HealthRegistry(clock=clock)
    for _ in range(MIN_CALLS):
        health.record("ch_b", ok=False, latency_ms=1)
    assert health.get("ch_b").state == "open"
    clock.now += COOLDOWN_SECONDS + 1
    assert health.allows("ch_b")
    health.record("ch_b", ok=False, latency_ms=1)
    assert health.get("ch_b").state == "open" and not health.allows("ch_b")


def test_too_few_calls_never_open():
    health = HealthRegistry()
    for _ in range(MIN_CALLS - 1):
        health.record("ch_c", ok=False, latency_ms=1)
    assert health.get("ch_c").state == "closed"


@pytest.fixture(autouse=True)
def _isolated_health():
    from serving import channels
    from serving.routing import HEALTH, clear_config_cache

    HEALTH.reset()
    clear_config_cache()
    yield
    HEALTH.reset()
    clear_config_cache()
    for channel_id in ("ch_card_sim", "ch_card_backup_sim"):
        channels.set_fault(channel_id, None)
