"""The models' constructor (warehouse.models.Base): values straight into a new row, flushed as
given, defaults where none was given, unknown names refused; on SQLite and Postgres."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from warehouse.connections import to_sqlalchemy_pg_url
from warehouse.models import Agent, Merchant, Payment

AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def test_constructed_rows_insert_what_was_given_and_default_the_rest(oltp_url):
    engine = create_engine(to_sqlalchemy_pg_url(oltp_url))
    with Session(engine) as session:
        session.add(Agent(id="agent_ctor", name="North", created_at=AT))
        session.add(Merchant(id="mer_ctor", name="Shop", agent_id="agent_ctor", created_at=AT))
        payment = Payment(id="pay_ctor", merchant_id="mer_ctor", merchant_reference="order-1",
                          amount_minor=2**70, currency="USD", status="initiated",
                          payment_method_type="card", refunded_minor=0,
                          routing={"chosen": "ch_card_sim"}, created_at=AT)
        payment.status = "processing"  # a change after construction goes through as usual
        session.add(payment)
        session.commit()
    with Session(engine) as session:
        agent = session.get(Agent, "agent_ctor")
        assert (agent.name, agent.status, agent.statement_cycle) == ("North", "active", "monthly")
        assert agent.created_at == AT and agent.updated_at > AT  # given; defaulted at insert
        stored = session.scalars(select(Payment).where(Payment.id == "pay_ctor")).one()
        assert (stored.amount_minor, stored.status, stored.routing) == (
            2**70, "processing", {"chosen": "ch_card_sim"})
        stored.status = "success"  # a loaded row still tracks changes
        session.commit()
    with Session(engine) as session:
        assert session.get(Payment, "pay_ctor").status == "success"


def test_an_unknown_name_is_refused():
    with pytest.raises(TypeError, match="'colour' is an invalid keyword argument for Agent"):
        Agent(id="agent_x", name="x", colour="red")
