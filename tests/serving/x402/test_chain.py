"""The simulated chain: an authorization executes once, a reorg undoes a transfer, and the day's
logs are exported as a chain file that ingest reads back (a reorged log twice, once removed)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account
from sqlalchemy import select
from sqlalchemy.orm import Session

from clearhouse import sim_chain
from ingest.files.formats.chain import parse
from serving.x402 import chain
from tests.serving.x402.helpers import (
    FUNDS,
    PAY_TO,
    PRICE,
    SEPOLIA,
    USDC,
    refusal_reason,
    sign_authorization,
    unb64,
)
from warehouse.models import SimChainLog


def transfer(session, payer: str, nonce: str, *, to: str = PAY_TO, value: int = PRICE):
    return chain.transfer_with_authorization(session, SEPOLIA, USDC.address, payer=payer, to=to,
                                             value=value, nonce=nonce, now=datetime.now(UTC))


def test_an_authorization_executes_once(shop):
    payer, nonce = shop.payer.address, "0x" + secrets.token_hex(32)
    before = shop.balances()
    with Session(shop.api.engine) as session, session.begin():
        first = transfer(session, payer, nonce)
        tx = first.tx_hash
    with Session(shop.api.engine) as session, session.begin():
        assert transfer(session, payer, nonce).tx_hash == tx  # a retry: the same transaction
        with pytest.raises(chain.ChainError) as reused:  # the nonce for another transfer
            transfer(session, payer, nonce, value=PRICE + 1)
        assert reused.value.reason == "invalid_exact_evm_nonce_already_used"
        with pytest.raises(chain.ChainError) as broke:
            transfer(session, payer, "0x" + secrets.token_hex(32), value=FUNDS)
        assert broke.value.reason == "insufficient_funds"
    assert [t.tx_hash for t in shop.transfers()] == [tx]
    assert shop.balances() == (before[0] - PRICE, before[1] + PRICE)


def test_a_reorg_undoes_the_transfer_and_the_export_shows_it(shop):
    # A payer funded an hour ago, so a short reorg reaches only the payment.
    payer = Account.create()
    with Session(shop.api.engine) as session, session.begin():
        chain.mint(session, SEPOLIA, USDC.address, payer.address, FUNDS,
                   datetime.now(UTC) - timedelta(hours=1))
    payload = sign_authorization(payer)
    paid = shop.pay(payload)
    assert paid.status_code == 200
    tx = unb64(paid.headers["PAYMENT-RESPONSE"])["transaction"]
    assert (shop.balance(payer.address), shop.balance(PAY_TO)) == (FUNDS - PRICE, PRICE)

    with Session(shop.api.engine) as session, session.begin():
        removed = chain.reorg(session, SEPOLIA, depth=15, now=datetime.now(UTC))
        removed_hashes = {log.tx_hash for log in removed}
    assert tx in removed_hashes
    [log] = shop.transfers(tx_hash=tx)
    assert log.removed is True
    assert (shop.balance(payer.address), shop.balance(PAY_TO)) == (FUNDS, 0)
    # The authorization stays spent: a reorged payment is not a second chance to pay.
    assert refusal_reason(shop.pay(payload)) == "invalid_exact_evm_nonce_already_used"

    now = datetime.now(UTC)
    day = log.block_timestamp.astimezone(UTC).date()
    with Session(shop.api.engine) as session:
        export = sim_chain.export_day(session, SEPOLIA, shop.api.settings.landing_dir, day, now)
        on_day = [row for row in session.scalars(select(SimChainLog))
                  if row.block_timestamp.astimezone(UTC).date() == day]
    assert export is not None
    assert export.path.parent == shop.api.settings.landing_dir / "chain" / "eip155-84532"
    assert export.path.is_file() and not export.path.name.startswith(".")
    assert (export.logs, export.removed) == (len(on_day), len(removed_hashes))

    parsed = parse(export.path)
    live = {(r.transaction_hash, r.from_address, r.to_address, r.value)
            for r in parsed.chain_logs if not r.removed}
    assert live == {(row.tx_hash, row.from_address, row.to_address, row.value) for row in on_day}
    assert {r.transaction_hash for r in parsed.chain_logs if r.removed} == removed_hashes
    [first, again] = [r for r in parsed.chain_logs if r.transaction_hash == tx]
    assert (first.removed, again.removed) == (False, True)
    assert (again.from_address, again.to_address, again.value) == (
        payer.address.lower(), PAY_TO, PRICE)
    assert {r.token_address for r in parsed.chain_logs} == {USDC.address.lower()}
    assert {r.network for r in parsed.chain_logs} == {"eip155:84532"}
    assert parsed.chain_heads == {"eip155:84532": export.latest_block}


def test_logs_mined_in_one_block_have_distinct_log_indexes_in_every_export(shop):
    """eth_getLogs: (blockNumber, logIndex) names one log. Two transfers in the same block
    must not share an index, and a second export numbers them as the first did."""
    now = datetime.now(UTC)
    payers = [Account.create() for _ in range(3)]
    with Session(shop.api.engine) as session, session.begin():
        for payer in payers:  # three mints at one instant: one block
            chain.mint(session, SEPOLIA, USDC.address, payer.address, FUNDS, now)
    day = now.date()

    def exported() -> dict[str, tuple[int, int]]:
        with Session(shop.api.engine) as session:
            path = sim_chain.export_day(session, SEPOLIA, shop.api.settings.landing_dir, day,
                                        datetime.now(UTC)).path
        return {log.transaction_hash: (log.block_number, log.log_index)
                for log in parse(path).chain_logs}

    first = exported()
    positions = list(first.values())
    assert len(set(positions)) == len(positions)  # no two logs share block and index
    block = chain.block_at(SEPOLIA, now)
    assert sum(1 for number, _ in positions if number == block) >= len(payers)
    with Session(shop.api.engine) as session, session.begin():  # a later transfer, same day
        transfer(session, payers[0].address, "0x" + secrets.token_hex(32))
    again = exported()
    assert {tx: again[tx] for tx in first} == first
    assert len(set(again.values())) == len(again)
