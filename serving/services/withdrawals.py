"""Withdrawals: payouts requested by merchants and agents against their available balance.

Available balance (per owner and currency) = what the owner's settled statements add up to
(serving.statements: a merchant's statements whose settles_on - period_end + the T+N in force
when each closed, as the statements mart records it - is on or before the business day, their
net activity - fees included, as the pipeline computed it - summed; an agent's commission
statements ended before the business day, their net summed), minus every withdrawal of that
owner and currency in status requested, approved or paid. A merchant's paid withdrawal shows on
the statement of the period it was paid in; the statements' payouts are left out of the sum, so
it is not deducted twice. A later change of the merchant's T+N moves only the payout day of
statements not yet closed: raising it never makes a settled statement unavailable again.

Moves: requested -> approved | rejected; approved -> paid. Anything else is 409
illegal_transition. A request is serialised per owner (Postgres: pg_advisory_xact_lock on the
owner; SQLite: the write lock every writing transaction takes with BEGIN IMMEDIATE), so two
concurrent requests never together exceed the balance.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving import statements
from serving.auth import Principal
from serving.errors import ApiError, not_found
from serving.schemas import iso_z
from serving.services import audit
from warehouse.ids import new_id
from warehouse.ledger import (
    Leg,
    agent_payable,
    bank,
    merchant_payable,
    payouts_in_transit,
    post_transaction,
)
from warehouse.locks import advisory_xact_lock
from warehouse.models import Merchant, OutboxEvent, Withdrawal
from warehouse.settings import Settings

WITHHELD = ("requested", "approved", "paid")  # statuses that use up the available balance
TRANSITIONS = {"requested": {"approved", "rejected"}, "approved": {"paid"}}


@dataclass(frozen=True)
class Owner:
    type: str  # merchant, agent
    id: str


def owner_of(principal: Principal) -> Owner:
    if principal.merchant_id is not None:
        return Owner("merchant", principal.merchant_id)
    if principal.agent_id is not None:
        return Owner("agent", principal.agent_id)
    raise ApiError(403, "forbidden", "withdrawals are requested by a merchant or an agent")


def _payable(owner: Owner) -> str:
    return merchant_payable(owner.id) if owner.type == "merchant" else agent_payable(owner.id)


def settled_through(session: Session, owner: Owner, now: datetime) -> date:
    """For an agent, the last day a settled statement may end on: yesterday (commission is paid
    for periods that have ended). For a merchant, today minus its current T+N: the periods that
    have settled under the N in force now. The balance itself counts each statement by its own
    settles_on (the N it closed with), so after a change of N it may hold later periods (N
    raised) or leave out earlier ones (N lowered); `statement` names the latest counted."""
    if owner.type == "agent":
        return now.date() - timedelta(days=1)
    merchant = session.get(Merchant, owner.id)
    return now.date() - timedelta(days=(merchant.settlement_delay_days or 0) if merchant else 0)


def _withheld(session: Session, owner: Owner, currency: str | None) -> dict[str, int]:
    query = select(Withdrawal.currency, Withdrawal.amount_minor).where(
        Withdrawal.owner_type == owner.type, Withdrawal.owner_id == owner.id,
        Withdrawal.status.in_(WITHHELD))
    if currency:
        query = query.where(Withdrawal.currency == currency)
    totals: dict[str, int] = defaultdict(int)
    for ccy, amount in session.execute(query):  # summed in Python: exact above 2^63 on SQLite
        totals[ccy] += int(amount)
    return totals


def balances(session: Session, settings: Settings, owner: Owner, now: datetime,
             currency: str | None = None) -> list[dict]:
    """Available balance per currency, with the statement it comes from."""
    through = settled_through(session, owner, now)
    if owner.type == "merchant":  # by each statement's own settles_on
        found = statements.settled_balances(settings, owner.id, now.date(), currency)
    else:
        found = statements.settled_commission_balances(settings, owner.id, through, currency)
    settled = {b.currency: b for b in found}
    withheld = _withheld(session, owner, currency)
    currencies = sorted(set(settled) | set(withheld) | ({currency} if currency else set()))
    out = []
    for ccy in currencies:
        statement = settled.get(ccy)
        closing = statement.closing_balance_minor if statement else 0
        paid_out = statement.paid_out_minor if statement else 0
        out.append({
            "object": "balance", "owner_type": owner.type, "owner_id": owner.id, "currency": ccy,
            "available_minor": str(closing + paid_out - withheld.get(ccy, 0)),
            "settled_minor": str(closing), "withheld_minor": str(withheld.get(ccy, 0)),
            "settled_through": through.isoformat(),
            "statement": None if statement is None else {
                "id": statement.statement_id, "period_end": statement.period_end.isoformat(),
                "closing_balance_minor": str(statement.closing_balance_minor), "currency": ccy},
        })
    return out


def available_minor(session: Session, settings: Settings, owner: Owner, currency: str,
                    now: datetime) -> int:
    return int(balances(session, settings, owner, now, currency)[0]["available_minor"])


def withdrawal_out(w: Withdrawal) -> dict:
    return {
        "id": w.id, "object": "withdrawal", "owner_type": w.owner_type, "owner_id": w.owner_id,
        "merchant_id": w.owner_id if w.owner_type == "merchant" else None,
        "agent_id": w.owner_id if w.owner_type == "agent" else None,
        "amount_minor": str(w.amount_minor), "currency": w.currency, "status": w.status,
        "destination": w.destination, "decided_by": w.decided_by,
        "decided_at": iso_z(w.decided_at) if w.decided_at else None,
        "paid_at": iso_z(w.paid_at) if w.paid_at else None, "reason": w.reason,
        "created_at": iso_z(w.created_at) if w.created_at else None,
    }


def _announce(session: Session, w: Withdrawal, event_type: str, now: datetime) -> dict:
    out = withdrawal_out(w)  # carries merchant_id, so webhooks route it to the merchant
    session.add(OutboxEvent(id=new_id("event"), aggregate_id=w.id, created_at=now,
                            event_type=event_type, payload=out))
    return out


def can_see(principal: Principal, w: Withdrawal) -> bool:
    if principal.is_operator:
        return True
    if principal.merchant_id is not None:
        return w.owner_type == "merchant" and w.owner_id == principal.merchant_id
    if principal.agent_id is not None:
        return w.owner_type == "agent" and w.owner_id == principal.agent_id
    return False


def create(session: Session, settings: Settings, principal: Principal, *, amount_minor: int,
           currency: str, destination: str, now: datetime) -> tuple[int, dict]:
    owner = owner_of(principal)
    # One request per owner at a time: the balance read below sees every committed request.
    advisory_xact_lock(session, f"withdrawals:{owner.type}:{owner.id}")
    available = available_minor(session, settings, owner, currency, now)
    if amount_minor > available:
        raise ApiError(422, "insufficient_available_balance",
                       f"{amount_minor} {currency} is more than the available balance "
                       f"({available} {currency})",
                       {"field": "amount_minor", "available_minor": str(available),
                        "requested_minor": str(amount_minor), "currency": currency})
    w = Withdrawal(id=new_id("payout"), owner_type=owner.type, owner_id=owner.id,
                   amount_minor=amount_minor, currency=currency, status="requested",
                   destination=destination, created_at=now)
    session.add(w)
    session.flush()
    audit.record(session, actor=principal.actor, action="withdrawal.requested",
                 resource_type="withdrawal", resource_id=w.id,
                 details={"owner_type": owner.type, "owner_id": owner.id,
                          "amount_minor": str(amount_minor), "currency": currency})
    return 201, _announce(session, w, "withdrawal.requested", now)


def _locked(session: Session, withdrawal_id: str) -> Withdrawal:
    w = session.scalars(select(Withdrawal).where(Withdrawal.id == withdrawal_id)
                        .with_for_update()).first()
    if w is None:
        raise not_found("withdrawal", withdrawal_id)
    return w


def _move(w: Withdrawal, to: str) -> None:
    if to not in TRANSITIONS.get(w.status, set()):
        raise ApiError(409, "illegal_transition",
                       f"withdrawal {w.id} is {w.status} and cannot become {to}",
                       {"from": w.status, "to": to})
    w.status = to


def _post(session: Session, w: Withdrawal, debit: str, credit: str, now: datetime) -> str:
    # ledger_entries.merchant_id names the transaction's owner: the agent id for an agent's payout.
    return post_transaction(session, kind="payout", merchant_id=w.owner_id, at=now, legs=[
        Leg(debit, w.currency, w.amount_minor), Leg(credit, w.currency, -w.amount_minor)])


def decide(session: Session, principal: Principal, withdrawal_id: str, *, approve: bool,
           reason: str | None, now: datetime) -> tuple[int, dict]:
    w = _locked(session, withdrawal_id)
    _move(w, "approved" if approve else "rejected")
    w.decided_by, w.decided_at, w.reason = principal.actor, now, reason
    details: dict[str, str | None] = {"amount_minor": str(w.amount_minor),
                                      "currency": w.currency}
    if approve:
        details["ledger_transaction_id"] = _post(
            session, w, _payable(Owner(w.owner_type, w.owner_id)), payouts_in_transit(w.currency),
            now)
    else:
        details["reason"] = reason
    session.flush()
    action = f"withdrawal.{w.status}"
    audit.record(session, actor=principal.actor, action=action, resource_type="withdrawal",
                 resource_id=w.id, details=details)
    return 200, _announce(session, w, action, now)


def mark_paid(session: Session, principal: Principal, withdrawal_id: str,
              now: datetime) -> tuple[int, dict]:
    w = _locked(session, withdrawal_id)
    _move(w, "paid")
    w.paid_at = now  # the payout's date on the statement (decided_at stays the approval)
    txn = _post(session, w, payouts_in_transit(w.currency), bank(w.currency), now)
    session.flush()
    audit.record(session, actor=principal.actor, action="withdrawal.paid",
                 resource_type="withdrawal", resource_id=w.id,
                 details={"amount_minor": str(w.amount_minor), "currency": w.currency,
                          "ledger_transaction_id": txn})
    return 200, _announce(session, w, "withdrawal.paid", now)
