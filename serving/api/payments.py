"""/api/v1/payments and /api/v1/refunds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import select

from serving import pg_async, tenancy
from serving.api.common import (
    IdempotencyKeyHeader,
    Limit,
    after_cursor,
    call_idempotent,
    idempotent_response,
)
from serving.deps import EngineDep, MerchantDep, NowDep, PrincipalDep, SessionDep
from serving.errors import not_found
from serving.observability import PAYMENT_STATUS_CHANGES, PAYMENTS
from serving.ratelimit import limited
from serving.schemas import (
    PaymentConfirm,
    PaymentCreate,
    PaymentList,
    PaymentOut,
    RefundCreate,
    RefundList,
    RefundOut,
)
from serving.services import fast_payments
from serving.services import payments as service
from serving.services.idempotency import already_answered, check_key, request_fingerprint
from warehouse.models import Payment, Refund

router = APIRouter(tags=["payments"])


@router.post("/payments", status_code=201, response_model=PaymentOut,
             responses={409: {"description": "idempotency_key_reused"}})
async def create_payment(request: Request, body: PaymentCreate, principal: MerchantDep,
                         engine: EngineDep, now: NowDep,
                         idempotency_key: IdempotencyKeyHeader = None):
    key = check_key(idempotency_key)
    if body.customer and body.customer.id:
        wait = request.app.state.customer_limits.take(f"{principal.merchant}:{body.customer.id}")
        # A retry of an answered request replays its answer: no new payment, so no limit.
        if wait and not await run_in_threadpool(already_answered, engine, principal.merchant,
                                                key):
            raise limited(wait, "customer")
    merchant_id = principal.merchant
    path = "/api/v1/payments"
    result = None
    if fast_payments.eligible(engine, body) and request.app.state.settings.payments_fast_path:
        fast: fast_payments.FastRequest = {
            "merchant_id": merchant_id, "key": key, "path": path, "body": body, "now": now,
            "fingerprint": request_fingerprint(path, body)}
        pool = pg_async.pool_of(request.app)
        result = (await fast_payments.create_async(pool, engine, **fast) if pool is not None
                  else await run_in_threadpool(fast_payments.create, engine, **fast))
    if result is None:
        result = await call_idempotent(
            engine, scope=merchant_id, key=key, path=path, params=body,
            work=lambda s: service.create_payment(s, merchant_id=merchant_id, body=body, now=now))
    if not result.replayed and result.status == 201:
        PAYMENTS.labels(result.body["status"], result.body["channel"] or "none").inc()
    return idempotent_response(result)


@router.post("/refunds", status_code=201, response_model=RefundOut)
async def create_refund(body: RefundCreate, principal: MerchantDep,
                        engine: EngineDep, now: NowDep,
                        idempotency_key: IdempotencyKeyHeader = None):
    key = check_key(idempotency_key)
    merchant_id = principal.merchant
    result = await call_idempotent(
        engine, scope=merchant_id, key=key, path="/api/v1/refunds", params=body,
        work=lambda s: service.create_refund(s, merchant_id=merchant_id, body=body, now=now))
    return idempotent_response(result)


@router.post("/payments/{payment_id}/confirm", response_model=PaymentOut)
async def confirm_payment(payment_id: str, principal: MerchantDep, engine: EngineDep,
                          now: NowDep, idempotency_key: IdempotencyKeyHeader = None,
                          body: PaymentConfirm | None = None):
    """Continue a payment created with confirm=false, or one held for review (auth_required).
    The body is optional: only a card payment created without its card needs one."""
    body = body or PaymentConfirm()
    key = check_key(idempotency_key)
    path = f"/api/v1/payments/{payment_id}/confirm"
    merchant_id = principal.merchant
    result = await call_idempotent(
        engine, scope=merchant_id, key=key, path=path, params=body,
        work=lambda s: service.confirm_payment(s, merchant_id=merchant_id, payment_id=payment_id,
                                               body=body, now=now))
    _count_status_change(result)
    return idempotent_response(result)


@router.post("/payments/{payment_id}/cancel", response_model=PaymentOut)
async def cancel_payment(payment_id: str, principal: MerchantDep, engine: EngineDep, now: NowDep,
                         idempotency_key: IdempotencyKeyHeader = None):
    key = check_key(idempotency_key)
    path = f"/api/v1/payments/{payment_id}/cancel"
    merchant_id = principal.merchant
    result = await call_idempotent(
        engine, scope=merchant_id, key=key, path=path, params={},
        work=lambda s: service.cancel_payment(s, merchant_id=merchant_id, payment_id=payment_id,
                                              now=now))
    _count_status_change(result)
    return idempotent_response(result)


def _count_status_change(result) -> None:
    if not result.replayed and result.status == 200:
        PAYMENT_STATUS_CHANGES.labels(result.body["status"], result.body["channel"] or "none").inc()


@router.get("/payments/{payment_id}", response_model=PaymentOut)
def get_payment(payment_id: str, principal: PrincipalDep, session: SessionDep, now: NowDep):
    payment = session.get(Payment, payment_id)
    if payment is None or not tenancy.can_see_merchant(session, principal, payment.merchant_id,
                                                       now):
        raise not_found("payment", payment_id)  # 404, not 403: existence must not leak
    return JSONResponse(service.payment_out(payment))


@router.get("/payments", response_model=PaymentList)
def list_payments(principal: PrincipalDep, session: SessionDep, now: NowDep,
                  limit: Limit = 20,
                  starting_after: str | None = None,
                  merchant_id: Annotated[str | None, Query(
                      description="only this merchant's (within what the caller may see)")] = None):
    query = select(Payment).order_by(Payment.id.desc()).limit(limit + 1)
    # operators: all; a merchant: its own; an agent: its subtree's merchants
    query = query.where(tenancy.merchant_filter(session, principal, Payment.merchant_id, now))
    if merchant_id is not None:
        query = query.where(Payment.merchant_id == merchant_id)
    query = after_cursor(session, query, Payment.id, starting_after)
    rows = session.scalars(query).all()
    return JSONResponse({"data": [service.payment_out(p) for p in rows[:limit]],
                         "has_more": len(rows) > limit})


@router.get("/refunds/{refund_id}", response_model=RefundOut)
def get_refund(refund_id: str, principal: PrincipalDep, session: SessionDep, now: NowDep):
    refund = session.get(Refund, refund_id)
    if refund is None or not tenancy.can_see_merchant(session, principal, refund.merchant_id,
                                                      now):
        raise not_found("refund", refund_id)  # 404, not 403: existence must not leak
    return JSONResponse(service.refund_out(refund))


@router.get("/refunds", response_model=RefundList)
def list_refunds(principal: PrincipalDep, session: SessionDep, now: NowDep,
                 limit: Limit = 20,
                 starting_after: str | None = None,
                 payment_id: Annotated[str | None, Query(
                     description="only this payment's refunds")] = None,
                 merchant_id: Annotated[str | None, Query(
                     description="only this merchant's (within what the caller may see)")] = None):
    """Newest first, like the payments: the caller's own (a merchant), its subtree's (an agent),
    all (operators)."""
    query = select(Refund).order_by(Refund.id.desc()).limit(limit + 1)
    query = query.where(tenancy.merchant_filter(session, principal, Refund.merchant_id, now))
    if payment_id is not None:
        query = query.where(Refund.payment_id == payment_id)
    if merchant_id is not None:
        query = query.where(Refund.merchant_id == merchant_id)
    query = after_cursor(session, query, Refund.id, starting_after)
    rows = session.scalars(query).all()
    return JSONResponse({"data": [service.refund_out(r) for r in rows[:limit]],
                         "has_more": len(rows) > limit})
