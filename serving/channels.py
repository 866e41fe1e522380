"""Simulated payment channels (one adapter per channel type) and their test instruments.

Like Stripe's test cards, the instrument decides the outcome.

card (payment_method.number):
    4242 4242 4242 4242, 5555 5555 5555 4444, 3782 822463 10005  approved
    4000 0000 0000 0002   declined, card_declined
    4000 0000 0000 9995   declined, insufficient_funds
    4000 0000 0000 0119   the channel times out (the router fails over to the next channel)
    4000 0000 0000 3220   pending; the channel confirms later by a signed callback (succeeded)
    4000 0000 0000 0341   pending; the callback later says failed (card_declined)
    any other Luhn-valid number is approved; a number failing Luhn is declined (invalid_card_number)
every other type (payment_method.test_outcome):
    "success" (default), "decline" (declined), "timeout", "pending",
    "pending_decline" (pending; the callback later says failed (declined))
`card_declined` is the card channels' code; every other type declines with the generic
`declined`, at once or in its later callback.

Channels return a channel_reference, kept on the payment; reconciliation matches on it.
Operators (and tests) can also put a whole channel into an outage with `set_fault`, which makes
every call to it time out until cleared: that is how failover and the breaker are exercised.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["approved", "declined", "timeout", "pending"]

APPROVED_CARDS = {"4242424242424242", "5555555555554444", "378282246310005"}
CARD_INSTRUMENTS: dict[str, tuple[Outcome, str | None, str | None]] = {
    # number: (immediate outcome, failure code (for "pending": the one the later callback
    # reports), outcome the later callback reports)
    "4000000000000002": ("declined", "card_declined", None),
    "4000000000009995": ("declined", "insufficient_funds", None),
    "4000000000000119": ("timeout", "channel_timeout", None),
    "4000000000003220": ("pending", None, "succeeded"),
    "4000000000000341": ("pending", "card_declined", "failed"),
}
OUTCOME_INSTRUMENTS: dict[str, tuple[Outcome, str | None, str | None]] = {
    "success": ("approved", None, None),
    "decline": ("declined", "declined", None),
    "timeout": ("timeout", "channel_timeout", None),
    "pending": ("pending", None, "succeeded"),
    "pending_decline": ("pending", "declined", "failed"),
}
REFERENCE_PREFIX = {
    "card": "crd", "wechat_pay": "wx", "alipay": "ali", "bank_transfer": "bt", "e_cny": "ecny",
    "apple_pay": "apl", "crypto": "cry", "wallet": "wal",
}
_FAULTS: dict[str, str] = {}  # channel_id -> "timeout"


@dataclass(frozen=True)
class ChannelResult:
    outcome: Outcome
    channel_reference: str
    failure_code: str | None = None  # for "pending": the code the failed callback will carry
    later_outcome: str | None = None  # for "pending": what the callback will say

    @property
    def approved(self) -> bool:
        return self.outcome == "approved"


def set_fault(channel_id: str, fault: str | None) -> None:
    """Put a simulated channel into an outage ("timeout") or clear it (None)."""
    if fault is None:
        _FAULTS.pop(channel_id, None)
    else:
        _FAULTS[channel_id] = fault


def luhn_ok(number: str) -> bool:
    if not number.isdigit() or len(number) < 12:
        return False
    total = 0
    for i, d in enumerate(int(c) for c in reversed(number)):
        if i % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


def card_digits(method: dict) -> str:
    return "".join(c for c in (method.get("number") or "4242424242424242") if c.isdigit())


def card_fingerprint(method: dict) -> str | None:
    """A keyed-free fingerprint for risk velocity and block lists; the number is never stored."""
    if method.get("type") != "card":
        return None
    return hashlib.sha256(b"clearhouse-card:" + card_digits(method).encode()).hexdigest()


def new_reference(channel_type: str) -> str:
    # A crypto channel's reference is the transaction hash: reconciliation finds the Transfer
    # log by it.
    if channel_type == "crypto":
        return "0x" + secrets.token_hex(32)
    return f"{REFERENCE_PREFIX.get(channel_type, 'ref')}_{secrets.token_hex(10)}"


def charge(channel_id: str, channel_type: str, method: dict) -> ChannelResult:
    reference = new_reference(channel_type)
    if _FAULTS.get(channel_id) == "timeout":
        return ChannelResult("timeout", reference, "channel_timeout")
    if channel_type == "card":
        number = card_digits(method)
        if not luhn_ok(number):
            return ChannelResult("declined", reference, "invalid_card_number")
        outcome, code, later = CARD_INSTRUMENTS.get(number, ("approved", None, None))
    else:
        outcome, code, later = OUTCOME_INSTRUMENTS[method.get("test_outcome") or "success"]
    return ChannelResult(outcome, reference, code, later)


def refund(channel_type: str) -> str:
    """Refunds always succeed on the simulators; returns the channel's refund reference."""
    return f"{REFERENCE_PREFIX.get(channel_type, 'ref')}_rf_{secrets.token_hex(8)}"


# The channels the x402 gateway books on (serving/x402/booking.py): on-chain `exact` payments,
# and agent payment tokens' calls (paid out of the token issuer's balance).
X402_CHANNEL, TOKEN_CHANNEL = "ch_x402_sim", "ch_agent_token"
FIAT = ("USD", "EUR", "CNY", "TWD", "JPY", "HKD", "GBP")
CRYPTO = ("USDC", "USDT", "ETH", "BTC")
# The channels `clearhouse admin bootstrap` creates: id, type, cost to the platform (bps),
# currencies. Two card channels, so routing has a cheaper primary and a failover.
DEFAULT_CHANNELS = [
    ("ch_card_sim", "card", 180, FIAT), ("ch_card_backup_sim", "card", 220, FIAT),
    ("ch_wechat_sim", "wechat_pay", 60, ("CNY",)), ("ch_alipay_sim", "alipay", 60, ("CNY",)),
    ("ch_bank_sim", "bank_transfer", 20, FIAT), ("ch_ecny_sim", "e_cny", 10, ("CNY",)),
    ("ch_applepay_sim", "apple_pay", 150, FIAT), ("ch_crypto_sim", "crypto", 50, CRYPTO),
    ("ch_wallet_sim", "wallet", 0, FIAT + CRYPTO),
    # Not routed to by the payments API: the x402 gateway books its paid calls on these.
    (X402_CHANNEL, "x402", 0, ("USDC",)), (TOKEN_CHANNEL, "agent_token", 0, ("USDC",)),
]
