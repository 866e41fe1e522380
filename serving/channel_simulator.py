"""The simulated channels' side of asynchronous payments: their signed callbacks to us.

A payment whose channel answers later stays `pending_callback`; the simulator remembers the
outcome in sim_channel_operations (a real PSP keeps that on its side). `deliver_pending_callbacks`
plays the PSP: it signs each undelivered outcome with the channel's callback_secret and POSTs it
to /api/v1/channels/{channel_id}/callbacks through an HTTP client, exactly as a real channel
would call us, and marks it delivered on a 2xx. Anything else is retried on the next run (the
endpoint answers a repeat with 200 already_applied, so a retry is harmless).
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime

import httpx
from sqlalchemy import ColumnElement, Engine, select, update
from sqlalchemy.orm import Session

from serving import signing
from serving.channels import DEFAULT_CHANNELS
from warehouse.connections import read_only
from warehouse.models import Channel, SimChannelOperation

log = logging.getLogger("clearhouse.channels.simulator")
REQUEST_TIMEOUT = httpx.Timeout(10.0)


def ensure_callback_secrets(session: Session) -> int:
    """Give every simulated channel without a callback_secret a random one; returns how many.
    Bootstrap already sets them; this fills databases bootstrapped before it did. (A real
    channel's secret is exchanged at onboarding.) The caller commits."""
    ids = [entry[0] for entry in DEFAULT_CHANNELS]
    channels = session.scalars(select(Channel).where(Channel.id.in_(ids))).all()
    missing = [c for c in channels if not c.callback_secret]
    for channel in missing:
        channel.callback_secret = "chsec_" + secrets.token_urlsafe(24)
    return len(missing)


def callback_path(channel_id: str) -> str:
    return f"/api/v1/channels/{channel_id}/callbacks"


def callback_body(operation: SimChannelOperation) -> bytes:
    return json.dumps({"channel_reference": operation.channel_reference,
                       "status": operation.outcome,
                       "failure_code": operation.failure_code}, separators=(",", ":")).encode()


def deliver_pending_callbacks(engine: Engine, client: httpx.Client, now: datetime, *,
                              batch: int = 500, test_clock: datetime | None = None) -> dict:
    """POST the signed callbacks not yet delivered; `client` has the API as its base_url.

    `now` is when the pass starts, the wall clock (the receiver checks each callback's signing
    time against its clock: a callback is signed at `now` plus the time the pass has taken);
    `test_clock` (development/test only) sets the business time of the confirmation, and only
    operations that existed by then call back (a replayed day confirms its own payments, not
    ones taken since).
    """
    pending: list[ColumnElement[bool]] = [SimChannelOperation.delivered_at.is_(None)]
    if test_clock is not None:
        pending.append(SimChannelOperation.created_at <= test_clock)
    with Session(read_only(engine)) as session:
        rows = session.execute(
            select(SimChannelOperation, Channel.callback_secret)
            .outerjoin(Channel, Channel.id == SimChannelOperation.channel_id)
            .where(*pending)
            .order_by(SimChannelOperation.created_at, SimChannelOperation.channel_reference)
            .limit(batch)
        ).all()
    report = {"delivered": 0, "failed": 0, "skipped": 0}
    clock = signing.running_clock(now)  # each callback signed when it is sent
    for operation, secret in rows:
        if not secret:
            log.warning("channel %s has no callback_secret; callback %s not sent",
                        operation.channel_id, operation.channel_reference)
            report["skipped"] += 1
            continue
        body = callback_body(operation)
        headers = {"Content-Type": "application/json",
                   signing.SIGNATURE_HEADER: signing.sign(secret, body, clock())}
        if test_clock is not None:
            headers["Clearhouse-Test-Clock"] = test_clock.astimezone(UTC).isoformat()
        try:
            response = client.post(callback_path(operation.channel_id), content=body,
                                   headers=headers, timeout=REQUEST_TIMEOUT)
        except httpx.HTTPError as exc:
            log.warning("callback %s to channel endpoint %s failed: %s",
                        operation.channel_reference, operation.channel_id, type(exc).__name__)
            report["failed"] += 1
            continue
        if not 200 <= response.status_code < 300:
            log.warning("callback %s refused by the API: HTTP %s",
                        operation.channel_reference, response.status_code)
            report["failed"] += 1
            continue
        with Session(engine) as session, session.begin():
            session.execute(update(SimChannelOperation)
                            .where(SimChannelOperation.channel_reference
                                   == operation.channel_reference)
                            .values(delivered_at=now))
        report["delivered"] += 1
    return report
