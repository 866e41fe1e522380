"""The local facilitator: x402's verify / settle / supported against the simulated chain.

The gateway calls it in-process (no HTTP hop on the paid path); other resource servers - the
`x402` package's own middleware, for one - reach the same logic over HTTP at
`/facilitator/verify`, `/facilitator/settle` and `/facilitator/supported`. As the protocol has
it, those answer 200 with `isValid` / `success` and x402's reason codes, whatever the verdict.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from serving.deps import EngineDep
from serving.x402 import chain
from serving.x402.networks import NETWORKS
from serving.x402.protocol import (
    InvalidPayment,
    Offer,
    offer_from_requirements,
    parse_payload,
)
from serving.x402.verify import Verified, verify_exact
from warehouse.models import SimChainLog, X402Usage


def check_chain(session: Session, verified: Verified) -> None:
    """The checks only the chain can answer: the nonce is unused and the payer can pay."""
    auth, offer = verified.authorization, verified.offer
    if chain.executed(session, offer.network, offer.asset.address, auth.payer,
                      auth.nonce) is not None:
        raise InvalidPayment("invalid_exact_evm_nonce_already_used",
                             "this authorization's nonce was already used", payer=auth.payer)
    if chain.balance_of(session, offer.network, offer.asset.address, auth.payer) < auth.value:
        raise InvalidPayment("insufficient_funds",
                             f"{auth.payer} cannot pay {auth.value} atomic units of "
                             f"{offer.asset.symbol}", payer=auth.payer)


def check_unclaimed(session: Session, verified: Verified) -> None:
    """For the facilitator over HTTP: an authorization the gateway claimed is spent even if it
    never reached the chain (its call was not delivered, and the payer was promised no charge)."""
    auth = verified.authorization
    claimed = session.scalar(select(X402Usage.id).where(X402Usage.payer == auth.payer,
                                                        X402Usage.nonce == auth.nonce))
    if claimed is not None:
        raise InvalidPayment("invalid_exact_evm_nonce_already_used",
                             "this authorization was already presented to the gateway",
                             payer=auth.payer)


def settle(session: Session, verified: Verified, now: datetime) -> SimChainLog:
    """Execute the authorization on chain (in the caller's transaction), once: an authorization
    the chain already executed - by a concurrent settle that committed after the caller's checks
    (Postgres, read committed) - is refused, never answered with its first transaction (that
    would let each caller deliver once per settle; x402's own facilitators re-verify too). The
    chain itself stays idempotent (chain.transfer_with_authorization returns the first log)."""
    auth, offer = verified.authorization, verified.offer
    try:
        log = chain.transfer_with_authorization(
            session, offer.network, offer.asset.address, payer=auth.payer, to=auth.to,
            value=auth.value, nonce=auth.nonce, now=now)
    except chain.ChainError as exc:
        raise InvalidPayment(exc.reason, exc.message, payer=auth.payer) from None
    if log.created_at != now:  # executed before this call
        raise InvalidPayment("invalid_exact_evm_nonce_already_used",
                             "this authorization was settled by another request",
                             payer=auth.payer)
    return log


def supported() -> dict[str, Any]:
    kinds = []
    for net in NETWORKS.values():
        kinds.append({"x402Version": 2, "scheme": "exact", "network": net.caip2})
        kinds.append({"x402Version": 1, "scheme": "exact", "network": net.v1_name})
    return {"kinds": kinds, "extensions": [], "signers": {}}


# --- over HTTP --------------------------------------------------------------------------------

router = APIRouter(prefix="/facilitator", tags=["x402 facilitator"])
# The body is read by hand, not by FastAPI: a facilitator answers 200 with isValid / success
# false and `invalid_payload` to anything (not JSON, not an object), never a 422.
_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "properties": {"x402Version": {"type": "integer"},
                                     "paymentPayload": {"type": "object"},
                                     "paymentRequirements": {"type": "object"}}}}}}}


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:  # not JSON, or not UTF-8
        return None


def _request(body: Any) -> tuple[Verified, Offer]:
    if not isinstance(body, dict):
        raise InvalidPayment("invalid_payload", "the body must be a JSON object")
    payload, requirements = body.get("paymentPayload"), body.get("paymentRequirements")
    if not isinstance(payload, dict) or not isinstance(requirements, dict):
        raise InvalidPayment("invalid_payload", "send paymentPayload and paymentRequirements")
    offer = offer_from_requirements(requirements)
    return verify_exact(parse_payload(payload), [offer], int(time.time())), offer


def _verify(engine, body: Any) -> dict[str, Any]:
    try:
        verified, _ = _request(body)
        with Session(engine) as session:
            check_unclaimed(session, verified)
            check_chain(session, verified)
    except InvalidPayment as exc:
        return {"isValid": False, "invalidReason": exc.reason, "invalidMessage": exc.message,
                "payer": exc.payer}
    return {"isValid": True, "payer": verified.authorization.payer}


def _settle(engine, body: Any) -> dict[str, Any]:
    requirements = body.get("paymentRequirements") if isinstance(body, dict) else None
    network_id = str(requirements.get("network", "")) if isinstance(requirements, dict) else ""
    try:
        verified, offer = _request(body)
        # expire_on_commit=False: the log is read after the commit. As in x402's own
        # facilitators, settle re-verifies (and `settle` refuses what another settle executed).
        now = datetime.now(UTC)
        with Session(engine, expire_on_commit=False) as session, session.begin():
            check_unclaimed(session, verified)
            check_chain(session, verified)
            log = settle(session, verified, now)
    except InvalidPayment as exc:
        return {"success": False, "errorReason": exc.reason, "errorMessage": exc.message,
                "payer": exc.payer, "transaction": "", "network": network_id}
    except IntegrityError:  # a concurrent settle of the same authorization won
        return {"success": False, "errorReason": "invalid_exact_evm_nonce_already_used",
                "errorMessage": "this authorization was settled concurrently",
                "payer": verified.authorization.payer, "transaction": "", "network": network_id}
    return {"success": True, "payer": verified.authorization.payer, "transaction": log.tx_hash,
            "network": network_id or offer.network.caip2, "amount": str(log.value)}


@router.get("/supported")
async def get_supported():
    return supported()


@router.post("/verify", openapi_extra=_BODY)
async def post_verify(request: Request, engine: EngineDep):
    return await run_in_threadpool(_verify, engine, await _json_body(request))


@router.post("/settle", openapi_extra=_BODY)
async def post_settle(request: Request, engine: EngineDep):
    return await run_in_threadpool(_settle, engine, await _json_body(request))
