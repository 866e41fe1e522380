"""A simulated EVM chain for the local facilitator: token balances, a faucet, blocks, and
ERC-20 Transfer logs that are exported in the `eth_getLogs` shape for ingest.

Blocks are a function of time (a block every `block_seconds` from a fixed genesis), so every
process agrees on the head without a block table; block and transaction hashes are derived from
their content, so settling the same authorization twice yields the same transaction. State lives
in the API's database and changes inside the caller's transaction: sim_chain_logs is the chain
(append-only, a reorg only flags logs removed) and sim_chain_accounts keeps what each sender has
sent, so a balance is received - sent and a transfer locks only its sender. A real deployment swaps this module for an RPC node; nothing else changes. Writing
the logs out for ingest is clearhouse/sim_chain.py's job (serving does not import ingest).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, type_coerce
from sqlalchemy.orm import Session

from serving.x402.networks import Network
from warehouse.models import MinorUnits, SimChainAccount, SimChainLog

GENESIS_TIME = datetime(2025, 1, 1, tzinfo=UTC)
GENESIS_BLOCK = {"eip155:8453": 24_500_000, "eip155:84532": 20_000_000}
ZERO_ADDRESS = "0x" + "0" * 40


class ChainError(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def block_at(net: Network, when: datetime) -> int:
    seconds = int((when - GENESIS_TIME).total_seconds())
    return GENESIS_BLOCK[net.caip2] + max(seconds, 0) // net.block_seconds


def block_time(net: Network, number: int) -> datetime:
    return GENESIS_TIME + timedelta(seconds=(number - GENESIS_BLOCK[net.caip2]) * net.block_seconds)


def _hash(*parts: object) -> str:
    return "0x" + hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def block_hash(net: Network, number: int) -> str:
    return _hash("block", net.caip2, number)


def authorization_tx_hash(net: Network, asset: str, payer: str, nonce: str) -> str:
    """The transaction that executes an authorization: the same authorization, the same hash."""
    return _hash("transferWithAuthorization", net.caip2, asset.lower(), payer.lower(),
                 nonce.lower())


def received(session: Session, net: Network, asset: str, address: str) -> int:
    """What `address` received in live (not reorged) Transfer logs, mints included."""
    query = select(SimChainLog.value).where(
        SimChainLog.network == net.caip2, SimChainLog.asset == asset.lower(),
        SimChainLog.to_address == address.lower(), ~SimChainLog.removed)
    if session.get_bind().dialect.name == "sqlite":  # amounts are decimal text there: add in Python
        return sum(session.scalars(query))
    total = query.with_only_columns(type_coerce(func.coalesce(func.sum(SimChainLog.value), 0),
                                                MinorUnits))
    return session.scalar(total) or 0


def balance_of(session: Session, net: Network, asset: str, address: str) -> int:
    account = session.get(SimChainAccount, (net.caip2, asset.lower(), address.lower()))
    return received(session, net, asset, address) - (account.sent if account else 0)


def _locked_account(session: Session, net: Network, asset: str, address: str) -> SimChainAccount:
    key = (net.caip2, asset.lower(), address.lower())
    row = session.scalars(select(SimChainAccount).where(
        SimChainAccount.network == key[0], SimChainAccount.asset == key[1],
        SimChainAccount.address == key[2]).with_for_update()).first()
    if row is None:
        row = SimChainAccount(network=key[0], asset=key[1], address=key[2], sent=0)
        session.add(row)
    return row


def executed(session: Session, net: Network, asset: str, payer: str,
             nonce: str) -> SimChainLog | None:
    """The log of an executed authorization (the contract's authorizationState), if any."""
    return session.scalars(select(SimChainLog).where(
        SimChainLog.network == net.caip2, SimChainLog.asset == asset.lower(),
        SimChainLog.from_address == payer.lower(), SimChainLog.nonce == nonce.lower())).first()


def mint(session: Session, net: Network, asset: str, to: str, value: int,
         now: datetime) -> SimChainLog:
    """The faucet: new tokens for `to`, logged as a Transfer from the zero address."""
    if value <= 0:
        raise ChainError("invalid_amount", "mint a positive amount")
    block = block_at(net, now)
    log = SimChainLog(network=net.caip2, asset=asset.lower(), block_number=block,
                      block_timestamp=block_time(net, block), log_index=0,
                      tx_hash=_hash("mint", net.caip2, asset.lower(), to.lower(), value,
                                    now.isoformat(), id(object())),
                      from_address=ZERO_ADDRESS, to_address=to.lower(), value=value, nonce=None,
                      created_at=now)
    session.add(log)
    session.flush()
    return log


def authorization_log(net: Network, asset: str, *, payer: str, to: str, value: int, nonce: str,
                      now: datetime) -> SimChainLog:
    """The Transfer log of an authorization mined now (not yet added to a session)."""
    block = block_at(net, now)
    return SimChainLog(network=net.caip2, asset=asset.lower(), block_number=block,
                       block_timestamp=block_time(net, block), log_index=0,
                       tx_hash=authorization_tx_hash(net, asset, payer, nonce),
                       from_address=payer.lower(), to_address=to.lower(), value=value,
                       nonce=nonce.lower(), removed=False, created_at=now)


def transfer_with_authorization(session: Session, net: Network, asset: str, *, payer: str,
                                to: str, value: int, nonce: str, now: datetime) -> SimChainLog:
    """Execute an EIP-3009 authorization once. Executing it again returns the first log (the
    facilitator may retry after a timeout without paying twice)."""
    done = executed(session, net, asset, payer, nonce)
    if done is not None:
        if (done.to_address, done.value) != (to.lower(), value) or done.removed:
            raise ChainError("invalid_exact_evm_nonce_already_used",
                             "this authorization was already used")
        return done
    sender = _locked_account(session, net, asset, payer)  # only the sender's row is locked
    balance = received(session, net, asset, payer) - sender.sent
    if balance < value:
        raise ChainError("insufficient_funds", f"{payer} holds {balance}, needs {value}")
    sender.sent += value
    log = authorization_log(net, asset, payer=payer, to=to, value=value, nonce=nonce, now=now)
    session.add(log)
    session.flush()  # the unique authorization constraint speaks here, not at commit
    return log


def reorg(session: Session, net: Network, *, depth: int, now: datetime) -> list[SimChainLog]:
    """Drop the last `depth` blocks: their logs become removed and their transfers are undone."""
    head = block_at(net, now)
    logs = list(session.scalars(select(SimChainLog).where(
        SimChainLog.network == net.caip2, SimChainLog.block_number > head - depth,
        ~SimChainLog.removed).order_by(SimChainLog.id)))
    for log in logs:
        log.removed = True  # the recipient's `received` no longer counts it
        if log.from_address != ZERO_ADDRESS:
            _locked_account(session, net, log.asset, log.from_address).sent -= log.value
    return logs
