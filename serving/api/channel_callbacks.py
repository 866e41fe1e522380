"""/api/v1/channels/{channel_id}/callbacks: a channel confirms a pending payment, later.

No bearer credential: the request is authenticated by its Clearhouse-Signature, made with the
channel's callback_secret over the raw body (serving/signing.py). A forged, unsigned or stale
request is a 401 and changes nothing; it is logged with the channel id, never with a secret.
Callbacks are retried by channels, so a repeat of an outcome already applied is a 200
`already_applied`; an outcome that contradicts the payment's final status is a 409. A channel
that sends an Idempotency-Key (api.md: every POST that moves money accepts one) gets Stripe's
semantics on top, keyed per channel: the same key and body replay the first answer
(`Idempotent-Replayed: true`), the same key with another body is a 409.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from serving import signing
from serving.api.common import IdempotencyKeyHeader, idempotent_response
from serving.deps import EngineDep, NowDep
from serving.errors import ApiError
from serving.observability import PAYMENT_STATUS_CHANGES
from serving.services import payments as payment_service
from serving.services.idempotency import check_key, request_fingerprint, run_idempotent
from warehouse.connections import read_only
from warehouse.models import Channel, Payment

router = APIRouter(tags=["channels"])
log = logging.getLogger("clearhouse.channels.callbacks")

# Final outcomes a callback may repeat: a payment that succeeded may since have been refunded.
SUCCEEDED_FAMILY = frozenset({"success", "refunding", "partially_refunded", "refunded"})
FAILED_FAMILY = frozenset({"failed"})


class ChannelCallback(BaseModel):
    model_config = ConfigDict(extra="ignore")  # channels may add fields of their own
    channel_reference: str = Field(min_length=1, max_length=100)
    status: Literal["succeeded", "failed"]
    failure_code: str | None = Field(default=None, max_length=60)


class CallbackResult(BaseModel):
    status: Literal["applied", "already_applied"]
    payment_id: str
    payment_status: str


def _reject(channel_id: str, exc: signing.SignatureError) -> ApiError:
    # The channel id and the reason only: never the header, the body or a secret.
    log.warning("channel callback rejected: channel=%s code=%s reason=%s", channel_id, exc.code,
                type(exc).__name__)
    message = ("the signature is older than 300 s or too far in the future"
               if isinstance(exc, signing.StaleSignature)
               else "the Clearhouse-Signature does not authenticate this request")
    return ApiError(401, exc.code, message)


def _authenticate(session: Session, channel_id: str, body: bytes, header: str | None) -> None:
    secret = session.scalar(select(Channel.callback_secret).where(Channel.id == channel_id))
    if not secret:  # unknown channel, or no secret configured: nothing can verify
        raise _reject(channel_id, signing.SignatureMismatch("no callback secret"))
    try:
        signing.verify(secret, body, header, now=time.time())
    except signing.SignatureError as exc:
        raise _reject(channel_id, exc) from None


def _parse(body: bytes) -> ChannelCallback:
    try:
        return ChannelCallback.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "body"
        code = "invalid_json" if first.get("type") == "json_invalid" else "validation_error"
        raise ApiError(422, code, f"{field}: {first.get('msg')}", {"field": field}) from None


@router.post("/channels/{channel_id}/callbacks", response_model=CallbackResult,
             responses={401: {"description": "invalid_signature or stale_signature"},
                        409: {"description": "conflicting_outcome or illegal_transition"}})
async def channel_callback(
    channel_id: str, request: Request, engine: EngineDep, now: NowDep,
    signature: Annotated[str | None, Header(alias=signing.SIGNATURE_HEADER)] = None,
    idempotency_key: IdempotencyKeyHeader = None,
):
    body = await request.body()  # the raw bytes: the signature covers them exactly
    return await run_in_threadpool(_handle, engine, channel_id, body, signature, idempotency_key,
                                   now)


def _handle(engine: Engine, channel_id: str, body: bytes, signature: str | None,
            idempotency_key: str | None, now: datetime) -> JSONResponse:
    # Verified on a read-only session: a flood of forged callbacks never takes the write lock.
    with Session(read_only(engine)) as session:
        _authenticate(session, channel_id, body, signature)
    callback = _parse(body)
    if idempotency_key is None:
        with Session(engine, expire_on_commit=False) as session:
            status, result = _apply(session, channel_id, callback, now)
            session.commit()
        _count(result, channel_id)
        return JSONResponse(result, status_code=status)
    path = f"/api/v1/channels/{channel_id}/callbacks"
    # The channel's own keys: channel ids (ch_...) never collide with a merchant's or agent's.
    answer = run_idempotent(engine, merchant_id=channel_id, key=check_key(idempotency_key),
                            path=path, fingerprint=request_fingerprint(path, callback),
                            work=lambda session: _apply(session, channel_id, callback, now))
    if not answer.replayed:
        _count(answer.body, channel_id)
    return idempotent_response(answer)


def _apply(session: Session, channel_id: str, callback: ChannelCallback, now: datetime
           ) -> tuple[int, dict]:
    """The callback's outcome applied in `session` (the caller commits): 200 and the result."""
    approved = callback.status == "succeeded"
    payment = session.scalars(
        select(Payment).where(Payment.channel_id == channel_id,
                              Payment.channel_reference == callback.channel_reference)
        .with_for_update()  # duplicate callbacks queue on the row (Postgres)
    ).first()
    if payment is None:
        raise ApiError(404, "resource_missing",
                       f"no payment with channel_reference {callback.channel_reference!r} "
                       f"on channel {channel_id}",
                       {"channel_reference": callback.channel_reference})
    same = SUCCEEDED_FAMILY if approved else FAILED_FAMILY
    other = FAILED_FAMILY if approved else SUCCEEDED_FAMILY
    if payment.status in same:
        return 200, _result("already_applied", payment)
    if payment.status in other:
        raise ApiError(409, "conflicting_outcome",
                       f"payment {payment.id} is already {payment.status}; the callback "
                       f"says {callback.status}",
                       {"payment_status": payment.status, "callback_status": callback.status})
    # pending_callback moves; any other status is refused there (409 illegal_transition).
    payment_service.apply_channel_outcome(
        session, payment=payment, approved=approved,
        failure_code=None if approved else callback.failure_code, now=now)
    return 200, _result("applied", payment)


def _count(result: dict, channel_id: str) -> None:
    if result.get("status") == "applied":
        PAYMENT_STATUS_CHANGES.labels(result["payment_status"], channel_id).inc()


def _result(status: str, payment: Payment) -> dict:
    return {"status": status, "payment_id": payment.id, "payment_status": payment.status}
