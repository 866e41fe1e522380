"""/api/v1/merchants: operators register merchants (the response carries the first API key)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serving.deps import AdminDep, PrincipalDep, SessionDep, WriteSessionDep
from serving.errors import not_found
from serving.schemas import MerchantCreate, MerchantCreated, MerchantOut
from serving.services.admin import create_merchant
from warehouse.models import Merchant

router = APIRouter(tags=["merchants"])


def merchant_out(merchant: Merchant) -> dict:
    return MerchantOut(id=merchant.id, name=merchant.name, status=merchant.status,
                       agent_id=merchant.agent_id, settlement_currency=merchant.settlement_currency,
                       settlement_cycle=merchant.settlement_cycle,
                       created_at=merchant.created_at).model_dump(mode="json")


@router.post("/merchants", status_code=201, response_model=MerchantCreated)
def register_merchant(body: MerchantCreate, _admin: AdminDep, session: WriteSessionDep):
    merchant, api_key = create_merchant(session, body)
    session.commit()
    return JSONResponse({**merchant_out(merchant), "api_key": api_key}, status_code=201)


@router.get("/merchants/{merchant_id}", response_model=MerchantOut)
def get_merchant(merchant_id: str, principal: PrincipalDep, session: SessionDep):
    merchant = session.get(Merchant, merchant_id)
    if merchant is None or not principal.can_see_merchant(merchant_id):
        raise not_found("merchant", merchant_id)
    return JSONResponse(merchant_out(merchant))
