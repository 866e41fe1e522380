"""Tenant isolation: what a principal may see.

- platform_admin and finance: everything;
- a merchant's key (merchant_admin, merchant_developer): its own merchant;
- an agent's key: its subtree, i.e. itself and every descendant agent in the agent tree valid at
  the given instant (agent_parents rows with valid_from <= at < valid_to), and the merchants whose
  agent is one of those.

Routes answer another tenant's resource with 404, never 403, so existence does not leak.
`at` defaults to now; routes pass the business clock (NowDep), which is the wall clock outside
development and test.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import ColumnElement, String, and_, false, literal, or_, select, true
from sqlalchemy.orm import Session

from serving.auth import Principal
from warehouse.models import AgentParent, Merchant

MAX_DEPTH = 64  # a guard against a corrupt (cyclic) tree; writes refuse cycles


def _now(at: datetime | None) -> datetime:
    return at or datetime.now(UTC)


def valid_at(at: datetime) -> ColumnElement[bool]:
    """agent_parents rows in force at `at` (valid_from inclusive, valid_to exclusive)."""
    return and_(AgentParent.valid_from <= at,
                or_(AgentParent.valid_to.is_(None), AgentParent.valid_to > at))


def agent_subtree(session: Session, agent_id: str, at: datetime | None = None) -> set[str]:
    """The agent and all its descendants in the tree valid at `at` (a recursive CTE)."""
    at = _now(at)
    tree = select(literal(agent_id, String).label("id")).cte("subtree", recursive=True)
    tree = tree.union(  # UNION, not UNION ALL: terminates even on a corrupt cyclic tree
        select(AgentParent.agent_id).where(AgentParent.parent_id == tree.c.id, valid_at(at)))
    return set(session.scalars(select(tree.c.id)))


def parent_of(session: Session, agent_id: str, at: datetime | None = None) -> AgentParent | None:
    return session.scalars(select(AgentParent).where(AgentParent.agent_id == agent_id,
                                                     valid_at(_now(at)))
                           .order_by(AgentParent.valid_from.desc()).limit(1)).first()


def agent_ancestors(session: Session, agent_id: str, at: datetime | None = None) -> list[str]:
    """Parent, grandparent, ... up to the top agent, at `at`."""
    at = _now(at)
    chain: list[str] = []
    current: str | None = agent_id
    while current is not None and len(chain) < MAX_DEPTH:
        row = parent_of(session, current, at)
        current = row.parent_id if row is not None else None
        if current is None or current in chain or current == agent_id:
            break
        chain.append(current)
    return chain


def subtree_merchant_ids(session: Session, agent_id: str, at: datetime | None = None) -> set[str]:
    agents = agent_subtree(session, agent_id, at)
    return set(session.scalars(select(Merchant.id).where(Merchant.agent_id.in_(agents))))


def visible_merchant_ids(session: Session, principal: Principal,
                         at: datetime | None = None) -> set[str] | None:
    """The merchants the principal may see; None means all of them (operators)."""
    if principal.is_operator:
        return None
    if principal.merchant_id is not None:
        return {principal.merchant_id}
    if principal.agent_id is not None:
        return subtree_merchant_ids(session, principal.agent_id, at)
    return set()


def merchant_filter(session: Session, principal: Principal, column,
                    at: datetime | None = None) -> ColumnElement[bool]:
    """A WHERE clause restricting `column` (a merchant id column) to the principal's tenant."""
    if principal.is_operator:
        return true()
    if principal.merchant_id is not None:
        return column == principal.merchant_id
    if principal.agent_id is not None:
        agents = agent_subtree(session, principal.agent_id, at)
        return column.in_(select(Merchant.id).where(Merchant.agent_id.in_(agents)))
    return false()


def can_see_merchant(session: Session, principal: Principal, merchant_id: str,
                     at: datetime | None = None) -> bool:
    if principal.is_operator:
        return True
    if principal.merchant_id is not None:
        return principal.merchant_id == merchant_id
    if principal.agent_id is not None:
        merchant = session.get(Merchant, merchant_id)
        return (merchant is not None and merchant.agent_id is not None
                and merchant.agent_id in agent_subtree(session, principal.agent_id, at))
    return False


def can_see_agent(session: Session, principal: Principal, agent_id: str,
                  at: datetime | None = None) -> bool:
    if principal.is_operator:
        return True
    if principal.agent_id is not None:
        return agent_id in agent_subtree(session, principal.agent_id, at)
    return False
