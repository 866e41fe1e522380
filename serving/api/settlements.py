"""/api/v1/settlements/{merchant_id}: a merchant's statements for a period, as CSV (streamed)
or PDF."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from serving import statement_pdf, statements, tenancy
from serving.deps import NowDep, PrincipalDep, SessionDep, SettingsDep
from serving.errors import not_found
from warehouse import published
from warehouse.models import Agent, Merchant

router = APIRouter(tags=["settlements"])


@router.get("/settlements/{merchant_id}", response_class=StreamingResponse,
            description="A merchant's settlement statements (CSV or PDF), or with an agent id "
                        "that agent's commission statements (CSV or PDF).",
            responses={200: {"content": {"text/csv": {}, "application/pdf": {}}}})
async def download_statement(
    merchant_id: str, principal: PrincipalDep, session: SessionDep, settings: SettingsDep,
    now: NowDep,
    period: Annotated[str | None, Query(description="2026-11-20, 2026-11 or a..b")] = None,
    format: Annotated[Literal["csv", "pdf"], Query()] = "csv",
):
    # Every mart this download reads comes from one published version (a run publishing
    # meanwhile must not pair new statement heads with old lines).
    settings = published.pin(settings)
    agent = session.get(Agent, merchant_id)
    if agent is not None:
        return await _agent_statement(principal, settings, agent, period, format, now)
    merchant = session.get(Merchant, merchant_id)
    if merchant is None or not tenancy.can_see_merchant(session, principal, merchant_id, now):
        raise not_found("merchant", merchant_id)  # agents: their subtree
    start, end = statements.parse_period(period, _utc_day(now))
    if format == "pdf":
        pdf = await run_in_threadpool(
            lambda: list(statement_pdf.stream(settings, merchant_id, merchant.name, start, end)))
        return StreamingResponse(iter(pdf), media_type="application/pdf", headers={
            "Content-Disposition": f'attachment; filename="statement_{merchant_id}_{period}.pdf"'})
    # Read the statement heads before answering, so a missing snapshot is a clean 503, not a
    # broken stream; the lines then stream in batches.
    chunks = statements.stream_csv(settings, merchant_id, start, end)
    first: str = await run_in_threadpool(lambda: next(chunks))
    filename = f"statement_{merchant_id}_{period}.csv"

    def body():
        yield first
        yield from chunks

    return StreamingResponse(body(), media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _utc_day(now):
    from datetime import UTC

    return (now.astimezone(UTC) if now.tzinfo else now).date()


async def _agent_statement(principal, settings, agent: Agent, period: str | None, format: str,
                           now):
    """An agent's commission statements: the agent itself and operators only (settlement.md)."""
    agent_id = agent.id
    if not (principal.is_operator or principal.agent_id == agent_id):
        raise not_found("agent", agent_id)
    start, end = statements.parse_period(period, _utc_day(now))
    if format == "pdf":
        document = await run_in_threadpool(
            statement_pdf.render_agent, settings, agent_id, agent.name, start, end)
        return StreamingResponse(statement_pdf.chunked(document), media_type="application/pdf",
                                 headers={"Content-Disposition":
                                          f'attachment; filename="commission_{agent_id}_{period}.pdf"'})
    chunks = statements.stream_agent_csv(settings, agent_id, start, end)
    first = await run_in_threadpool(next, chunks)

    def body():
        yield first
        yield from chunks

    return StreamingResponse(body(), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="commission_{agent_id}_{period}.csv"'})
