"""Double-entry ledger postings: the one writer of ledger_entries.

Debits are positive, credits negative; the legs of a transaction sum to zero per currency. The
check here covers SQLite; on Postgres a deferred trigger checks again at commit.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from warehouse.ids import new_id
from warehouse.models import LedgerEntry


class UnbalancedTransactionError(ValueError):
    code = "ledger_unbalanced"


@dataclass(frozen=True)
class Leg:
    account: str
    currency: str
    amount_minor: int  # debit > 0, credit < 0


def channel_receivable(channel_id: str) -> str:
    """What a channel owes the platform for captured payments it has not paid out yet."""
    return f"channel_receivable:{channel_id}"


def merchant_payable(merchant_id: str) -> str:
    """What the platform owes a merchant before fees (fees are computed by the pipeline)."""
    return f"merchant_payable:{merchant_id}"


def agent_payable(agent_id: str) -> str:
    """What the platform owes an agent (commission); the credit side of an agent's payout."""
    return f"agent_payable:{agent_id}"


def payouts_in_transit(currency: str) -> str:
    """Approved payouts not yet sent by the bank."""
    return f"payouts_in_transit:{currency}"


def bank(currency: str) -> str:
    """The platform's bank account in a currency."""
    return f"bank:{currency}"


def wallet_liability(merchant_id: str) -> str:
    """Memo: the merchant's stored-value liability to its customers (no platform money)."""
    return f"wallet_liability:{merchant_id}"


def wallet_redemption(merchant_id: str) -> str:
    """Memo: stored value the merchant's customers redeemed as payments."""
    return f"wallet_redemption:{merchant_id}"


def post_transaction(session: Session, *, kind: str, legs: list[Leg], merchant_id: str,
                     at: datetime, payment_id: str | None = None,
                     refund_id: str | None = None) -> str:
    totals: dict[str, int] = defaultdict(int)
    for leg in legs:
        if not isinstance(leg.amount_minor, int) or leg.amount_minor == 0:
            raise UnbalancedTransactionError(f"leg {leg.account} needs a non-zero int amount")
        totals[leg.currency] += leg.amount_minor
    unbalanced = {ccy: total for ccy, total in totals.items() if total != 0}
    if len(legs) < 2 or unbalanced:
        raise UnbalancedTransactionError(f"ledger transaction does not balance: {unbalanced}")
    transaction_id = new_id("ledger_txn")
    session.add_all(
        LedgerEntry(transaction_id=transaction_id, kind=kind, payment_id=payment_id,
                    refund_id=refund_id, merchant_id=merchant_id, account=leg.account,
                    currency=leg.currency, amount_minor=leg.amount_minor, effective_at=at)
        for leg in legs
    )
    return transaction_id
