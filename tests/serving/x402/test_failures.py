"""What a paid call does when something breaks after the payment was verified: the upstream
fails (nothing charged), the payer's funds vanish before settlement (402, the body withheld),
and the database drops the settlement's connection, before or after its commit (the payer is
charged exactly once, and the receipt names the one transfer).

Settlement failures are tried on both settlement paths: on Postgres the one-statement fast path
(serving/x402/fast_path.py) and the ORM path; SQLite has only the ORM path."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from serving.x402 import chain, gateway
from tests.serving.x402.helpers import (
    DETAIL,
    FUNDS,
    PAY_TO,
    PRICE,
    SEPOLIA,
    USDC,
    refusal_reason,
    settlement_paths,
    sign_authorization,
    unb64,
    v2_header,
)
from warehouse.models import SimChainLog

DROPPED = OperationalError("COMMIT", {}, ConnectionError("server closed the connection"))


def paid_once(shop, payer, response) -> str:
    """The call was paid exactly once by `payer`: the receipt's transaction is its one transfer,
    its one settled usage and its one payment. Returns the transaction hash."""
    address = payer.address.lower()
    assert response.status_code == 200, response.text
    tx = unb64(response.headers["PAYMENT-RESPONSE"])["transaction"]
    assert [t.tx_hash for t in shop.transfers(from_address=address)] == [tx]
    [usage] = shop.usages(payer=address)
    assert (usage.status, usage.tx_hash) == ("settled", tx)
    [payment] = shop.payments(channel_reference=tx)
    assert payment.id == usage.payment_id
    assert shop.balance(payer.address) == FUNDS - PRICE
    return tx


def test_upstream_failures_charge_nothing(shop):
    before = shop.balances()

    not_found = shop.pay(sign_authorization(shop.payer), name="unknown corp")
    assert not_found.status_code == 404
    assert not_found.json() == {"error": "no company called 'unknown corp'"}  # the upstream's
    assert "PAYMENT-RESPONSE" not in not_found.headers
    assert "X-PAYMENT-RESPONSE" not in not_found.headers

    # An upstream that does not answer at all: 502, also uncharged.
    response = shop.client.put("/api/v1/x402/gateway", headers=shop.headers,
                               json={"upstream_url": "http://127.0.0.1:9"})
    assert response.status_code == 200
    down = shop.pay(sign_authorization(shop.payer))
    assert down.status_code == 502 and down.json()["error"]["code"] == "upstream_unavailable"
    assert "PAYMENT-RESPONSE" not in down.headers

    usages = {u.upstream_status: u for u in shop.usages()}
    assert {status: u.status for status, u in usages.items()} == {
        404: "upstream_failed", None: "upstream_failed"}
    assert usages[None].error_reason == "upstream_unavailable"
    assert all(u.payment_id is None and u.tx_hash is None for u in usages.values())
    assert shop.payments() == [] and shop.transfers() == []
    assert shop.balances() == before


def test_funds_gone_before_settlement_refuse_the_call_and_withhold_the_body(shop, monkeypatch):
    real_proxy = gateway._proxy
    sink = "0x" + "99" * 20

    def drain(payer: str):  # the payer spends everything elsewhere while the upstream works
        with Session(shop.api.engine) as session, session.begin():
            balance = chain.balance_of(session, SEPOLIA, USDC.address, payer)
            chain.transfer_with_authorization(
                session, SEPOLIA, USDC.address, payer=payer, to=sink, value=balance,
                nonce="0x" + secrets.token_hex(32), now=datetime.now(UTC))

    for path in settlement_paths(shop):
        payer = shop.new_payer()

        async def proxy_while_draining(*args, address=payer.address, **kwargs):
            await run_in_threadpool(drain, address)
            return await real_proxy(*args, **kwargs)

        monkeypatch.setattr(gateway, "_proxy", proxy_while_draining)
        response = shop.pay(sign_authorization(payer))

        assert refusal_reason(response) == "insufficient_funds", path
        assert "credit_rating" not in response.text and "employees" not in response.text
        # x402 v2's HTTP transport: the failed settlement's PAYMENT-RESPONSE, success false
        assert unb64(response.headers["PAYMENT-RESPONSE"])["success"] is False
        [usage] = shop.usages(payer=payer.address.lower())
        assert (usage.status, usage.error_reason, usage.upstream_status, usage.payment_id) == (
            "settle_failed", "insufficient_funds", 200, None), path
        assert [t.to_address for t in shop.transfers(from_address=payer.address.lower())] == [
            sink], path  # only the drain
    assert shop.payments() == []
    assert shop.balance(PAY_TO) == 0


@pytest.fixture
def drops(shop):
    """Drops the database connection at the settlement's transfer (the Transfer log's INSERT),
    on the ORM path and on the Postgres fast path alike: `before` times before it is written,
    `after` times once it is committed (the commit's acknowledgement is lost)."""
    engine, state = shop.api.engine, {"before": 0, "after": 0, "fired": []}

    def mines(statement: str) -> bool:
        return "insert into sim_chain_logs" in statement.lower()

    def drop(when: str):
        state[when] -= 1
        state["fired"].append(when)
        raise DROPPED

    def before_cursor_execute(conn, cursor, statement, *args):
        if state["before"] and mines(statement):
            drop("before")

    def after_cursor_execute(conn, cursor, statement, *args):
        # An autocommit statement (the fast path's settlement) is committed once it ran.
        autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        if state["after"] and autocommit and mines(statement):
            drop("after")

    def after_flush(session, _context):
        if any(isinstance(o, SimChainLog) and o.nonce for o in session.new):
            session.info["mined"] = True

    def after_commit(session):
        if session.info.pop("mined", False) and state["after"]:
            drop("after")

    listeners = [(engine, "before_cursor_execute", before_cursor_execute),
                 (engine, "after_cursor_execute", after_cursor_execute),
                 (Session, "after_flush", after_flush), (Session, "after_commit", after_commit)]
    for listener in listeners:
        event.listen(*listener)
    yield state
    for listener in listeners:
        event.remove(*listener)


def test_a_settlement_retried_after_a_dropped_connection_pays_once(shop, drops):
    for path in settlement_paths(shop):
        payer = shop.new_payer()
        drops.update(before=1, fired=[])
        response = shop.pay(sign_authorization(payer))
        assert drops["fired"] == ["before"], path
        paid_once(shop, payer, response)
    assert shop.balance(PAY_TO) == 2 * PRICE


def test_a_settlement_whose_commit_acknowledgement_was_lost_pays_once(shop, drops):
    for path in settlement_paths(shop):
        payer = shop.new_payer()
        drops.update(after=1, fired=[])
        response = shop.pay(sign_authorization(payer))
        assert drops["fired"] == ["after"], path  # the retry found the first settlement
        paid_once(shop, payer, response)
    assert len(shop.payments()) == 2
    assert shop.balance(PAY_TO) == 2 * PRICE


def test_a_settlement_that_never_completes_is_refused_and_the_authorization_spent(
        shop, drops):
    for path in settlement_paths(shop):
        payer = shop.new_payer()
        payload = sign_authorization(payer)
        drops.update(before=100, fired=[])

        response = shop.pay(payload)
        assert refusal_reason(response) == "settlement_pending", path
        assert len(drops["fired"]) == gateway.SETTLE_ATTEMPTS == 2  # one retry, never a loop
        assert "credit_rating" not in response.text
        [usage] = shop.usages(payer=payer.address.lower())
        assert (usage.status, usage.error_reason) == ("settle_failed", "settlement_pending")

        drops.update(before=0)
        replay = shop.pay(payload)
        assert refusal_reason(replay) == "invalid_exact_evm_nonce_already_used", path
        assert shop.balance(payer.address) == FUNDS
    assert shop.payments() == [] and shop.transfers() == []
    assert shop.balance(PAY_TO) == 0


def test_a_caller_that_hangs_up_before_its_body_gets_nothing_done_and_no_traceback(
        shop, caplog):
    """The gateway reads every request's body before it prices the call; a client gone by then
    (Starlette's ClientDisconnect) is logged as one line, not an 'Exception in ASGI application'
    traceback, and nothing is claimed, charged or proxied."""
    import asyncio
    import logging

    header = v2_header(sign_authorization(shop.payer, to=PAY_TO, value=PRICE))
    messages = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "server": ("testserver", 80),
             "client": ("127.0.0.1", 50000), "root_path": "", "path": f"/x402/{shop.seller_id}"
             f"{DETAIL}", "raw_path": f"/x402/{shop.seller_id}{DETAIL}".encode(),
             "query_string": b"name=Acme", "headers": [
                 (b"host", b"testserver"), (b"payment-signature", header.encode())]}
    with caplog.at_level(logging.INFO):
        asyncio.run(shop.client.app(scope, receive, send))

    assert messages[0]["type"] == "http.response.start"
    assert messages[0]["status"] == 499
    assert "client disconnected before its request body was read" in caplog.text
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)
    assert shop.usages(payer=shop.payer.address.lower()) == []
    assert shop.balance(shop.payer.address) == FUNDS

