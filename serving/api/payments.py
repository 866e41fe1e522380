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
    call_idempotent,
    idempotent_response,
    page,
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
    return JSONResponse(service.payment_out(_visible(session, principal, now, Payment,
                                                     payment_id, "payment")))


@router.get("/payments", response_model=PaymentList)
def list_payments(principal: PrincipalDep, session: SessionDep, now: NowDep,
                  limit: Limit = 20,
                  starting_after: str | None = None,
                  merchant_id: Annotated[str | None, Query(
                      description="only this merchant's (within what the caller may see)")] = None):
    return _page(session, principal, now, Payment, service.payment_out, limit=limit,
                 starting_after=starting_after, merchant_id=merchant_id)


@router.get("/refunds/{refund_id}", response_model=RefundOut)
def get_refund(refund_id: str, principal: PrincipalDep, session: SessionDep, now: NowDep):
    return JSONResponse(service.refund_out(_visible(session, principal, now, Refund, refund_id,
                                                    "refund")))


@router.get("/refunds", response_model=RefundList)
def list_refunds(principal: PrincipalDep, session: SessionDep, now: NowDep,
                 limit: Limit = 20,
                 starting_after: str | None = None,
                 payment_id: Annotated[str | None, Query(
                     description="only this payment's refunds")] = None,
                 merchant_id: Annotated[str | None, Query(
                     description="only this merchant's (within what the caller may see)")] = None):
    """Newest first, like the payments."""
    return _page(session, principal, now, Refund, service.refund_out, limit=limit,
                 starting_after=starting_after, payment_id=payment_id, merchant_id=merchant_id)


def _visible(session, principal, now, model, ident: str, kind: str):
    """The row, if the caller may see its merchant's data; else a 404 (not a 403: existence
    must not leak)."""
    row = session.get(model, ident)
    if row is None or not tenancy.can_see_merchant(session, principal, row.merchant_id, now):
        raise not_found(kind, ident)
    return row


def _page(session, principal, now, model, out, *, limit: int, starting_after: str | None,
          **equal: str | None) -> JSONResponse:
    """A page (serving.api.common.page) of the rows the caller may see - operators all, a
    merchant its own, an agent its subtree's merchants' - where each given column equals its
    value."""
    query = select(model).where(tenancy.merchant_filter(session, principal, model.merchant_id,
                                                        now))
    for column, value in equal.items():
        if value is not None:
            query = query.where(getattr(model, column) == value)
    return JSONResponse(page(session, query, model.id, limit=limit,
                             starting_after=starting_after, out=out))
