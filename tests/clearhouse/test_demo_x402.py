"""The demo's x402 act is played once per demo day: its calls are new payments at wall-clock
time that no Idempotency-Key replays, so a re-run of `clearhouse demo` for the same day skips it
instead of paying again."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clearhouse import sim_chain, x402_demo
from clearhouse.demo import running_api, x402_act
from serving.services.admin import bootstrap_admin
from warehouse.connections import oltp_engine
from warehouse.migrate import upgrade
from warehouse.models import AgentPaymentToken, Payment, SimChainLog, X402Usage

DAY = date(2026, 11, 20)


def counts(engine, landing_dir) -> dict[str, int]:
    with Session(engine) as session:
        rows = {model.__tablename__: session.scalar(select(func.count()).select_from(model))
                for model in (X402Usage, Payment, SimChainLog, AgentPaymentToken)}
    exported = sim_chain.export(engine, landing_dir, now=datetime.now(UTC))
    return rows | {"exported_logs": sum(e.logs for e in exported)}


def test_a_rerun_for_the_same_day_does_not_repeat_the_x402_act(make_settings, capsys):
    settings = make_settings()
    upgrade(settings.oltp_url)
    engine = oltp_engine(settings)
    with Session(engine) as session:
        bootstrap_admin(session)  # the channels the gateway books paid calls on
        session.commit()
    with running_api(settings) as base:
        first, earlier = x402_act(engine, base, settings, DAY)
        assert earlier is None and first.paid_calls > 0 and first.token_calls > 0
        played = counts(engine, settings.landing_dir)
        assert played["x402_usage"] > 0 and played["exported_logs"] > 0
        capsys.readouterr()

        again, earlier = x402_act(engine, base, settings, DAY)
        assert again is None
        assert counts(engine, settings.landing_dir) == played
        assert (earlier["paid_calls"], earlier["token_calls"], earlier["seller_id"]) == (
            first.paid_calls, first.token_calls, first.seller_id)
        out = capsys.readouterr().out
        assert f"x402: already played for {DAY} on an earlier run" in out
        assert "not repeated" in out

        # Another demo day is another day of business: the act plays again.
        other, _ = x402_act(engine, base, settings, date(2026, 11, 21))
        assert other.paid_calls == first.paid_calls
        assert counts(engine, settings.landing_dir)["x402_usage"] > played["x402_usage"]


def test_a_fresh_database_plays_the_act_again(make_settings):
    """The note in HOME/demo/ names a seller this database never saw: not played here."""
    settings = make_settings()
    upgrade(settings.oltp_url)
    (settings.home_dir / "demo").mkdir(parents=True, exist_ok=True)
    (settings.home_dir / "demo" / x402_demo.PLAYED).write_text(json.dumps(
        {DAY.isoformat(): {"seller_id": "mer_gone", "played_at": "2026-11-21T08:00:00+00:00",
                           "paid_calls": 9, "token_calls": 12, "report": None}}))
    assert x402_demo.played_for(oltp_engine(settings), settings.home_dir, DAY) is None
