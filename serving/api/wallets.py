"""/api/v1/wallets: stored-value top-ups and the wallets a merchant keeps for its customers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import select

from serving import tenancy
from serving.api.common import (
    IdempotencyKeyHeader,
    Limit,
    after_cursor,
    call_idempotent,
    idempotent_response,
    page,
)
from serving.deps import EngineDep, MerchantDep, NowDep, PrincipalDep, SessionDep
from serving.errors import not_found
from serving.observability import PAYMENTS
from serving.schemas import TopupCreate, WalletOut
from serving.services import wallets as service
from serving.services.idempotency import check_key
from warehouse.models import Wallet, WalletTransaction

router = APIRouter(tags=["wallets"])


@router.post("/wallets/topups", status_code=201,
             responses={201: {"description": '{"payment": Payment, "wallet": Wallet | null}'}})
async def create_topup(body: TopupCreate, principal: MerchantDep,
                       engine: EngineDep, now: NowDep,
                       idempotency_key: IdempotencyKeyHeader = None):
    """Top up a customer's wallet: a normal payment of amount_minor; when it succeeds the wallet
    gets amount_minor as principal and bonus_minor as bonus (a declined payment credits nothing)."""
    key = check_key(idempotency_key)
    merchant_id = principal.merchant
    result = await call_idempotent(
        engine, scope=merchant_id, key=key, path="/api/v1/wallets/topups",
        params=body,
        work=lambda s: service.create_topup(s, merchant_id=merchant_id, body=body, now=now))
    if not result.replayed and result.status == 201:  # a top-up is a payment too (/metrics)
        payment = result.body["payment"]
        PAYMENTS.labels(payment["status"], payment["channel"] or "none").inc()
    return idempotent_response(result)


def _visible_wallet(session, principal, wallet_id: str, now) -> Wallet:
    wallet = session.get(Wallet, wallet_id)
    if wallet is None or not tenancy.can_see_merchant(session, principal, wallet.merchant_id, now):
        raise not_found("wallet", wallet_id)  # 404, not 403: existence must not leak
    return wallet


@router.get("/wallets")
def list_wallets(principal: PrincipalDep, session: SessionDep, now: NowDep,
                 customer_id: str | None = None,
                 limit: Limit = 20,
                 starting_after: str | None = None):
    """Newest first, as every list (api.md)."""
    query = select(Wallet).where(tenancy.merchant_filter(session, principal, Wallet.merchant_id,
                                                         now))
    if customer_id is not None:
        query = query.where(Wallet.customer_id == customer_id)
    return JSONResponse(page(session, query, Wallet.id, limit=limit,
                             starting_after=starting_after, out=service.wallet_out))


@router.get("/wallets/{wallet_id}", response_model=WalletOut)
def get_wallet(wallet_id: str, principal: PrincipalDep, session: SessionDep, now: NowDep):
    return JSONResponse(service.wallet_out(_visible_wallet(session, principal, wallet_id, now)))


@router.get("/wallets/{wallet_id}/transactions")
def list_wallet_transactions(wallet_id: str, principal: PrincipalDep, session: SessionDep,
                             now: NowDep, limit: Limit = 20,
                             starting_after: str | None = None):
    """The wallet's movements, oldest first (signed principal and bonus parts)."""
    wallet = _visible_wallet(session, principal, wallet_id, now)
    query = (select(WalletTransaction).where(WalletTransaction.wallet_id == wallet.id)
             .order_by(WalletTransaction.id).limit(limit + 1))
    query = after_cursor(session, query, WalletTransaction.id, starting_after, descending=False)
    rows = session.scalars(query).all()
    return JSONResponse({"data": [service.transaction_out(t, wallet.currency) for t in rows[:limit]],
                         "has_more": len(rows) > limit})

