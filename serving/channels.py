"""Simulated payment channels (one adapter per channel type) and their test instruments.

Like Stripe's test cards, the instrument decides the outcome:
- card: 4242 4242 4242 4242 succeeds; 4000 0000 0000 0002 is declined (card_declined);
  4000 0000 0000 9995 is declined (insufficient_funds); any other Luhn-valid number succeeds.
- every other type: succeeds unless payment_method.test_outcome == "decline".
The channel returns a channel_reference, which reconciliation matches on.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

DECLINING_CARDS = {
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
}
REFERENCE_PREFIX = {
    "card": "crd", "wechat_pay": "wx", "alipay": "ali", "bank_transfer": "bt", "e_cny": "ecny",
    "apple_pay": "apl", "crypto": "cry", "wallet": "wal",
}


@dataclass(frozen=True)
class ChannelResult:
    approved: bool
    channel_reference: str
    failure_code: str | None = None


def luhn_ok(number: str) -> bool:
    digits = [int(d) for d in number if d.isdigit()]
    if len(digits) < 12 or len(digits) != len([c for c in number if c not in " -"]):
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


def charge(channel_type: str, method: dict) -> ChannelResult:
    reference = f"{REFERENCE_PREFIX.get(channel_type, 'ref')}_{secrets.token_hex(10)}"
    if channel_type == "card":
        number = "".join(c for c in (method.get("number") or "4242424242424242") if c.isdigit())
        if not luhn_ok(number):
            return ChannelResult(False, reference, "invalid_card_number")
        failure = DECLINING_CARDS.get(number)
        return ChannelResult(failure is None, reference, failure)
    if method.get("test_outcome") == "decline":
        return ChannelResult(False, reference, "declined")
    return ChannelResult(True, reference)


def refund(channel_type: str) -> str:
    """Refunds always succeed on the simulators; returns the channel's refund reference."""
    return f"{REFERENCE_PREFIX.get(channel_type, 'ref')}_rf_{secrets.token_hex(8)}"


# The channels `clearhouse admin bootstrap` creates, with what each charges the platform (bps).
DEFAULT_CHANNELS = [
    ("ch_card_sim", "card", 180), ("ch_wechat_sim", "wechat_pay", 60),
    ("ch_alipay_sim", "alipay", 60), ("ch_bank_sim", "bank_transfer", 20),
    ("ch_ecny_sim", "e_cny", 10), ("ch_applepay_sim", "apple_pay", 150),
    ("ch_crypto_sim", "crypto", 50), ("ch_wallet_sim", "wallet", 0),
]
