"""/api/v1/payments and /api/v1/refunds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from serving.deps import EngineDep, MerchantDep, NowDep, PrincipalDep, SessionDep
from serving.errors import not_found
from serving.schemas import PaymentCreate, PaymentList, PaymentOut, RefundCreate, RefundOut
from serving.services import payments as service
from serving.services.idempotency import check_key, request_fingerprint, run_idempotent
from warehouse.models import Payment

router = APIRouter(tags=["payments"])
IdempotencyKeyHeader = Annotated[str | None, Header(alias="Idempotency-Key")]


def _idempotent_response(result) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    return JSONResponse(result.body, status_code=result.status, headers=headers)


@router.post("/payments", status_code=201, response_model=PaymentOut,
             responses={409: {"description": "idempotency_key_reused"}})
async def create_payment(request: Request, body: PaymentCreate, principal: MerchantDep,
                         engine: EngineDep, now: NowDep,
                         idempotency_key: IdempotencyKeyHeader = None):
    key = check_key(idempotency_key)
    raw = await request.json()
    result = await _run(engine, principal.merchant_id, key, "/api/v1/payments", raw,
                        lambda s: service.create_payment(s, merchant_id=principal.merchant_id,
                                                         body=body, now=now))
    return _idempotent_response(result)


@router.post("/refunds", status_code=201, response_model=RefundOut)
async def create_refund(request: Request, body: RefundCreate, principal: MerchantDep,
                        engine: EngineDep, now: NowDep,
                        idempotency_key: IdempotencyKeyHeader = None):
    key = check_key(idempotency_key)
    raw = await request.json()
    result = await _run(engine, principal.merchant_id, key, "/api/v1/refunds", raw,
                        lambda s: service.create_refund(s, merchant_id=principal.merchant_id,
                                                        body=body, now=now))
    return _idempotent_response(result)


async def _run(engine, merchant_id, key, path, raw, work):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(run_idempotent, engine, merchant_id=merchant_id, key=key,
                                   path=path, fingerprint=request_fingerprint(path, raw), work=work)


@router.get("/payments/{payment_id}", response_model=PaymentOut)
def get_payment(payment_id: str, principal: PrincipalDep, session: SessionDep):
    payment = session.get(Payment, payment_id)
    if payment is None or not principal.can_see_merchant(payment.merchant_id):
        raise not_found("payment", payment_id)  # 404, not 403: existence must not leak
    return JSONResponse(service.payment_out(payment))


@router.get("/payments", response_model=PaymentList)
def list_payments(principal: PrincipalDep, session: SessionDep,
                  limit: Annotated[int, Query(ge=1, le=100)] = 20,
                  starting_after: str | None = None):
    query = select(Payment).order_by(Payment.id.desc()).limit(limit + 1)
    if not principal.is_operator:
        query = query.where(Payment.merchant_id == principal.merchant_id)
    if starting_after:
        query = query.where(Payment.id < starting_after)
    rows = session.scalars(query).all()
    return JSONResponse({"data": [service.payment_out(p) for p in rows[:limit]],
                         "has_more": len(rows) > limit})
