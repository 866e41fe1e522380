"""/api/v1/agents: the reseller tree.

- POST /agents, POST /agents/{id}/parent, PATCH /agents/{id} (its statement cycle):
  platform_admin;
- GET /agents, GET /agents/{id}, GET /agents/{id}/subordinates: operators (every agent) and
  agents (their own subtree; any other agent is a 404). Merchant keys: 403.
The tree is effective-dated (agent_parents): a re-parent closes the open link at valid_from and
opens a new one, so history keeps answering "who was above whom on that day".
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, cast

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select

from serving import tenancy
from serving.api.common import Limit, StartingAfter, page
from serving.auth import Principal
from serving.deps import AdminDep, NowDep, SessionDep, WriteSessionDep, require_roles
from serving.errors import ApiError, not_found
from serving.schemas import Name, Timestamp
from serving.services import agents as service
from warehouse.models import Agent, AgentParent

router = APIRouter(tags=["agents"])
TreeReaderDep = Annotated[Principal, Depends(require_roles("platform_admin", "finance", "agent"))]


Cycle = Literal["daily", "weekly", "monthly"]
CYCLE_HELP = ("how often its commission statement is cut (UTC days; weekly from Monday). "
              "Commission statements are recomputed from the commission rows at every run, so "
              "a change re-cuts the agent's statements in the new cycle")


class AgentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name = Field(min_length=1, max_length=200)
    parent_id: str | None = Field(default=None, description="null: directly under the platform")
    valid_from: AwareDatetime | None = Field(default=None, description="default: now")
    statement_cycle: Cycle = Field(default="monthly", description=CYCLE_HELP)


class AgentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    statement_cycle: Cycle = Field(description=CYCLE_HELP)


class ParentChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parent_id: str | None = Field(description="the new parent; null: the platform")
    valid_from: AwareDatetime


class ParentLink(BaseModel):
    parent_id: str | None
    valid_from: Timestamp
    valid_to: Timestamp | None


class AgentOut(BaseModel):
    id: str
    object: Literal["agent"] = "agent"
    name: str
    status: str
    statement_cycle: Cycle
    parent_id: str | None = Field(description="the parent now (null: the platform)")
    created_at: Timestamp
    parents: list[ParentLink] | None = Field(default=None, description="history (GET one)")


class AgentList(BaseModel):
    data: list[AgentOut]
    has_more: bool


class SubAgent(BaseModel):
    id: str
    name: str
    status: str
    parent_id: str | None
    depth: int = Field(description="1: a direct child")


class SubMerchant(BaseModel):
    id: str
    name: str
    status: str
    agent_id: str | None


class SubtreeOut(BaseModel):
    object: Literal["agent_subtree"] = "agent_subtree"
    agent_id: str
    at: Timestamp
    agents: list[SubAgent]
    merchants: list[SubMerchant]


def agent_out(agent: Agent, parent_id: str | None, history: list[AgentParent] | None = None
              ) -> dict:
    parents = None if history is None else [
        ParentLink(parent_id=h.parent_id, valid_from=h.valid_from, valid_to=h.valid_to)
        for h in history]
    return AgentOut(id=agent.id, name=agent.name, status=agent.status,
                    statement_cycle=cast(Cycle, agent.statement_cycle),  # a CHECK holds it
                    parent_id=parent_id,
                    created_at=agent.created_at, parents=parents).model_dump(mode="json",
                                                                              exclude_none=False)


def _visible_agent(session, principal: Principal, agent_id: str, now: datetime) -> Agent:
    agent = session.get(Agent, agent_id)
    if agent is None or not tenancy.can_see_agent(session, principal, agent_id, now):
        raise not_found("agent", agent_id)
    return agent


def _current_parent(session, agent_id: str, now: datetime) -> str | None:
    row = tenancy.parent_of(session, agent_id, now)
    return row.parent_id if row is not None else None


@router.post("/agents", status_code=201, response_model=AgentOut)
def create_agent(body: AgentCreate, admin: AdminDep, session: WriteSessionDep, now: NowDep):
    valid_from = body.valid_from or now
    agent = service.create_agent(session, name=body.name, parent_id=body.parent_id,
                                 valid_from=valid_from, actor=admin.actor,
                                 statement_cycle=body.statement_cycle)
    session.commit()
    return JSONResponse(agent_out(agent, body.parent_id), status_code=201)


@router.get("/agents", response_model=AgentList)
def list_agents(principal: TreeReaderDep, session: SessionDep, now: NowDep,
                limit: Limit = 20, starting_after: StartingAfter = None):
    query = select(Agent)
    if principal.agent_id is not None:
        query = query.where(Agent.id.in_(tenancy.agent_subtree(session, principal.agent_id, now)))
    result = page(session, query, Agent.id, limit=limit, starting_after=starting_after,
                  out=lambda a: a)
    ids = [a.id for a in result["data"]]
    parents = {row.agent_id: row.parent_id for row in session.scalars(
        select(AgentParent).where(AgentParent.agent_id.in_(ids), tenancy.valid_at(now)))}
    result["data"] = [agent_out(a, parents.get(a.id)) for a in result["data"]]
    return JSONResponse(result)


@router.get("/agents/{agent_id}", response_model=AgentOut)
def get_agent(agent_id: str, principal: TreeReaderDep, session: SessionDep, now: NowDep):
    agent = _visible_agent(session, principal, agent_id, now)
    history = session.scalars(select(AgentParent).where(AgentParent.agent_id == agent_id)
                              .order_by(AgentParent.valid_from)).all()
    return JSONResponse(agent_out(agent, _current_parent(session, agent_id, now), list(history)))


@router.get("/agents/{agent_id}/subordinates", response_model=SubtreeOut)
def get_subordinates(agent_id: str, principal: TreeReaderDep, session: SessionDep, now: NowDep,
                     at: Annotated[AwareDatetime | None,
                                   Query(description="the tree at this instant (default now)")]
                     = None):
    _visible_agent(session, principal, agent_id, now)  # visibility is decided on today's tree
    if at is not None and not principal.is_operator:
        raise ApiError(403, "forbidden", "an agent sees its subtree as it is now; `at` is for "
                       "operators", {"field": "at"})
    at = at or now
    tree = service.subtree(session, agent_id, at)
    out = SubtreeOut(
        agent_id=agent_id, at=at,
        agents=[SubAgent(id=a.id, name=a.name, status=a.status, parent_id=parent, depth=depth)
                for a, parent, depth in tree.agents],
        merchants=[SubMerchant(id=m.id, name=m.name, status=m.status, agent_id=m.agent_id)
                   for m in tree.merchants])
    return JSONResponse(out.model_dump(mode="json"))


@router.post("/agents/{agent_id}/parent", response_model=AgentOut)
def change_parent(agent_id: str, body: ParentChange, admin: AdminDep, session: WriteSessionDep,
                  now: NowDep):
    service.reparent(session, agent_id=agent_id, parent_id=body.parent_id,
                     valid_from=body.valid_from, actor=admin.actor)
    session.commit()
    agent = session.get_one(Agent, agent_id)  # reparent found it
    history = session.scalars(select(AgentParent).where(AgentParent.agent_id == agent_id)
                              .order_by(AgentParent.valid_from)).all()
    return JSONResponse(agent_out(agent, _current_parent(session, agent_id, now), list(history)))


@router.patch("/agents/{agent_id}", response_model=AgentOut)
def update_agent(agent_id: str, body: AgentUpdate, admin: AdminDep, session: WriteSessionDep,
                 now: NowDep):
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise not_found("agent", agent_id)
    service.set_statement_cycle(session, agent, body.statement_cycle, actor=admin.actor)
    session.commit()
    return JSONResponse(agent_out(agent, _current_parent(session, agent_id, now)))
