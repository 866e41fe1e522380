"""Prices (merchant MDR, agent cost price, channel cost) and agents' commission models, both
effective-dated per commission.md: a new row closes the open one for the same key at its
valid_from, so rows never overlap and a past day always finds exactly one row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from serving.errors import ApiError, not_found
from serving.services import audit
from serving.services.effective import supersede
from warehouse.ids import new_id
from warehouse.locks import advisory_xact_lock
from warehouse.models import Agent, Channel, CommissionModel, Merchant, Price

SUBJECTS = {"merchant": Merchant, "agent": Agent, "channel": Channel}
PRICES_LOCK = "clearhouse.prices"
MODELS_LOCK = "clearhouse.commission_models"


def set_price(session: Session, *, subject_type: str, subject_id: str, currency: str,
              rate_bps: int, fixed_minor: int | None, valid_from: datetime,
              actor: str) -> Price:
    """fixed_minor None: no fixed amount given for the currency (commission.md: counted as 0,
    with a data-quality warning in the pipeline)."""
    if session.get(SUBJECTS[subject_type], subject_id) is None:
        raise ApiError(422, "unknown_subject", f"no {subject_type} {subject_id!r}",
                       {"field": "subject_id"})
    advisory_xact_lock(session, PRICES_LOCK)  # concurrent writers must not both close one row
    previous = supersede(session, Price, [Price.subject_type == subject_type,
                                          Price.subject_id == subject_id,
                                          Price.currency == currency], valid_from)
    price = Price(id=new_id("price"), subject_type=subject_type, subject_id=subject_id,
                  currency=currency, rate_bps=rate_bps, fixed_minor=fixed_minor,
                  valid_from=valid_from)
    session.add(price)
    audit.record(session, actor=actor, action="price.created", resource_type="price",
                 resource_id=price.id,
                 details={"subject_type": subject_type, "subject_id": subject_id,
                          "currency": currency, "rate_bps": rate_bps,
                          "fixed_minor": None if fixed_minor is None else str(fixed_minor),
                          "valid_from": valid_from,
                          "supersedes": previous.id if previous else None})
    return price


def set_commission_model(session: Session, *, agent_id: str, currency: str, model: str,
                         pct_bps: int | None, fixed_minor: int | None, valid_from: datetime,
                         actor: str) -> CommissionModel:
    if session.get(Agent, agent_id) is None:
        raise not_found("agent", agent_id)
    advisory_xact_lock(session, MODELS_LOCK)
    previous = supersede(session, CommissionModel, [CommissionModel.agent_id == agent_id,
                                                    CommissionModel.currency == currency],
                         valid_from)
    row = CommissionModel(id=new_id("commission_model"), agent_id=agent_id, currency=currency,
                          model=model, pct_bps=pct_bps, fixed_minor=fixed_minor,
                          valid_from=valid_from)
    session.add(row)
    audit.record(session, actor=actor, action="commission_model.created",
                 resource_type="commission_model", resource_id=row.id,
                 details={"agent_id": agent_id, "currency": currency, "model": model,
                          "pct_bps": pct_bps,
                          "fixed_minor": None if fixed_minor is None else str(fixed_minor),
                          "valid_from": valid_from,
                          "supersedes": previous.id if previous else None})
    return row
