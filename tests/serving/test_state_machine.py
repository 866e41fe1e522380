"""The payment state machine refuses every move the design does not allow."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from serving.errors import ApiError
from serving.services.state_machine import FINAL, TRANSITIONS, can_move, move
from warehouse.models import Payment

ALL = sorted({s for s in TRANSITIONS if s} | {t for n in TRANSITIONS.values() for t in n})


def test_happy_paths_are_allowed():
    path = ["initiated", "processing", "risk_checking", "channel_calling", "success",
            "refunding", "partially_refunded", "refunding", "refunded"]
    current = None
    for target in path:
        assert can_move(current, target), (current, target)
        current = target


@pytest.mark.parametrize("current", ALL)
def test_final_states_go_nowhere_and_nothing_skips_the_risk_check(current):
    for target in ALL:
        allowed = can_move(current, target)
        if current in FINAL:
            assert not allowed
        if target == "success":  # only a channel answer (now or by callback) captures
            assert allowed == (current in ("channel_calling", "pending_callback"))
        if target == "channel_calling":
            assert allowed == (current in ("risk_checking", "auth_required"))


class FakeSession:
    def __init__(self):
        self.added = []

    def add(self, obj):
        self.added.append(obj)


def test_move_records_the_trail_and_refuses_illegal_moves():
    session, at = FakeSession(), datetime(2026, 11, 20, tzinfo=UTC)
    payment = Payment(id="pay_x", status=None)
    move(session, payment, "initiated", at=at)
    move(session, payment, "processing", at=at)
    assert [(e.from_status, e.to_status) for e in session.added] == [
        (None, "initiated"), ("initiated", "processing")]
    with pytest.raises(ApiError) as err:
        move(session, payment, "success", at=at)
    assert err.value.status == 409 and err.value.code == "illegal_transition"
    assert payment.status == "processing" and len(session.added) == 2
