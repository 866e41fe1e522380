"""Agents: create, read the tree, re-parent (effective-dated, never a cycle)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving import tenancy
from serving.errors import ApiError, not_found
from serving.services import admin, audit
from serving.services.effective import supersede
from warehouse.locks import advisory_xact_lock
from warehouse.models import Agent, AgentParent, Merchant

TREE_LOCK = "clearhouse.agent_tree"


def create_agent(session: Session, *, name: str, parent_id: str | None, valid_from: datetime,
                 actor: str, statement_cycle: str = "monthly") -> Agent:
    advisory_xact_lock(session, TREE_LOCK)
    agent = admin.create_agent(session, name=name, parent_id=parent_id, valid_from=valid_from,
                               statement_cycle=statement_cycle)
    audit.record(session, actor=actor, action="agent.created", resource_type="agent",
                 resource_id=agent.id,
                 details={"name": name, "parent_id": parent_id, "valid_from": valid_from,
                          "statement_cycle": statement_cycle})
    return agent


def set_statement_cycle(session: Session, agent: Agent, cycle: str, *, actor: str) -> None:
    if agent.statement_cycle == cycle:
        return
    audit.record(session, actor=actor, action="agent.statement_cycle_changed",
                 resource_type="agent", resource_id=agent.id,
                 details={"from": agent.statement_cycle, "to": cycle})
    agent.statement_cycle = cycle


def _creates_cycle(session: Session, agent_id: str, parent_id: str, valid_from: datetime) -> bool:
    """Would `parent_id` above `agent_id` from valid_from on close a loop, at any later point
    where the tree changes?"""
    if parent_id == agent_id:
        return True
    points = {valid_from, *session.scalars(
        select(AgentParent.valid_from).where(AgentParent.valid_from > valid_from))}
    return any(agent_id in tenancy.agent_ancestors(session, parent_id, at) for at in points)


def reparent(session: Session, *, agent_id: str, parent_id: str | None, valid_from: datetime,
             actor: str) -> AgentParent:
    """Close the agent's open parent link at valid_from and open one to parent_id (None: the
    platform). Refuses a cycle and a valid_from not after the current link's."""
    advisory_xact_lock(session, TREE_LOCK)  # two concurrent moves could otherwise make a loop
    if session.get(Agent, agent_id) is None:
        raise not_found("agent", agent_id)
    if parent_id is not None:
        if session.get(Agent, parent_id) is None:
            raise ApiError(422, "unknown_agent", f"no agent {parent_id!r}", {"field": "parent_id"})
        if _creates_cycle(session, agent_id, parent_id, valid_from):
            raise ApiError(422, "agent_cycle",
                           f"{parent_id} is {agent_id} or one of its descendants: the tree "
                           "would loop", {"field": "parent_id"})
    previous = supersede(session, AgentParent, [AgentParent.agent_id == agent_id], valid_from)
    link = AgentParent(agent_id=agent_id, parent_id=parent_id, valid_from=valid_from)
    session.add(link)
    audit.record(session, actor=actor, action="agent.reparented", resource_type="agent",
                 resource_id=agent_id,
                 details={"from_parent_id": previous.parent_id if previous else None,
                          "to_parent_id": parent_id, "valid_from": valid_from})
    return link


@dataclass
class Subtree:
    agents: list[tuple[Agent, str | None, int]]  # agent, parent id, depth (1 = direct child)
    merchants: list[Merchant]


def subtree(session: Session, agent_id: str, at: datetime) -> Subtree:
    ids = tenancy.agent_subtree(session, agent_id, at)
    parents = {row.agent_id: row.parent_id for row in session.scalars(
        select(AgentParent).where(AgentParent.agent_id.in_(ids), tenancy.valid_at(at)))}
    depth = {agent_id: 0}
    frontier = [agent_id]
    while frontier:
        frontier = [child for child, parent in parents.items()
                    if parent in frontier and child not in depth]
        for child in frontier:
            parent = parents[child]
            assert parent is not None  # it was picked for its parent in the frontier
            depth[child] = depth[parent] + 1
    agents = session.scalars(select(Agent).where(Agent.id.in_(ids - {agent_id}))
                             .order_by(Agent.id)).all()
    merchants = session.scalars(select(Merchant).where(Merchant.agent_id.in_(ids))
                                .order_by(Merchant.id)).all()
    return Subtree([(a, parents.get(a.id), depth.get(a.id, 0)) for a in agents], list(merchants))
