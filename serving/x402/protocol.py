"""The x402 wire format (v2 and v1), built and read with the `x402` package's own models.

v2: the 402 carries a base64 JSON `PAYMENT-REQUIRED` header; the client pays with
`PAYMENT-SIGNATURE`; the receipt is `PAYMENT-RESPONSE`. v1 (legacy): the 402 body is
`{"x402Version": 1, "error", "accepts"}` with `maxAmountRequired` and network names such as
`base-sepolia`; the client pays with `X-PAYMENT`; the receipt is `X-PAYMENT-RESPONSE`. A 402 from
the gateway carries both when the rule offers both, so either kind of client can pay.

Besides `exact` (EIP-3009 on chain) a v2 402 offers the scheme `token`: an agent payment token
(serving/x402/tokens.py) sent as `{"x402Version": 2, "accepted": <the token offer>, "payload":
{"token": "cpt_..."}}` in PAYMENT-SIGNATURE. Clients that do not know the scheme skip it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from x402.schemas import (
    PaymentPayload,
    PaymentRequired,
    PaymentRequirements,
    ResourceInfo,
    SettleResponse,
)
from x402.schemas.v1 import PaymentPayloadV1, PaymentRequiredV1, PaymentRequirementsV1

from serving.x402.networks import Asset, Network, network
from warehouse.models import X402PricingRule

_DIGITS = re.compile(r"[0-9]{1,78}")


def uint256(text: str) -> int | None:
    """A uint256 written in ASCII digits, or None: str.isdigit() also takes "²" and full-width
    digits (int() then fails on some or reads others), and 78 nines overflow 32 bytes."""
    if not _DIGITS.fullmatch(text):
        return None
    number = int(text)
    return number if number < 2**256 else None


PAYMENT_REQUIRED = "PAYMENT-REQUIRED"
PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE"
PAYMENT_RESPONSE = "PAYMENT-RESPONSE"
X_PAYMENT = "X-PAYMENT"
X_PAYMENT_RESPONSE = "X-PAYMENT-RESPONSE"
TOKEN_SCHEME = "token"
TOKEN_NETWORK = "clearhouse"


class InvalidPayment(Exception):
    """A payment the gateway refuses: `reason` is x402's machine code."""

    def __init__(self, reason: str, message: str, *, status: int = 402, payer: str | None = None):
        super().__init__(message)
        self.reason, self.message, self.status, self.payer = reason, message, status, payer


@dataclass(frozen=True)
class Offer:
    """One way to pay for a priced path: an amount of an asset on a network, paid to pay_to."""

    network: Network
    asset: Asset
    amount: int
    pay_to: str
    max_timeout_seconds: int = 60
    versions: tuple[int, ...] = (2, 1)
    description: str | None = None
    mime_type: str | None = None
    rule_id: str | None = None
    merchant_id: str | None = None

    def v2(self) -> PaymentRequirements:
        return PaymentRequirements(
            scheme="exact", network=self.network.caip2, asset=self.asset.address,
            amount=str(self.amount), pay_to=self.pay_to,
            max_timeout_seconds=self.max_timeout_seconds,
            extra={"name": self.asset.eip712_name, "version": self.asset.eip712_version})

    def v1(self, resource_url: str) -> PaymentRequirementsV1:
        return PaymentRequirementsV1(
            scheme="exact", network=self.network.v1_name, max_amount_required=str(self.amount),
            resource=resource_url, description=self.description or "",
            mime_type=self.mime_type or "application/json", pay_to=self.pay_to,
            max_timeout_seconds=self.max_timeout_seconds, asset=self.asset.address,
            extra={"name": self.asset.eip712_name, "version": self.asset.eip712_version})

    def token(self) -> PaymentRequirements:
        return PaymentRequirements(
            scheme=TOKEN_SCHEME, network=TOKEN_NETWORK, asset=self.asset.symbol,
            amount=str(self.amount), pay_to=self.merchant_id or "",
            max_timeout_seconds=self.max_timeout_seconds, extra={"rule": self.rule_id})


def offer_for(rule: X402PricingRule) -> Offer:
    net = network(rule.network)
    asset = net.asset(rule.asset) if net else None
    if net is None or asset is None:
        raise ValueError(f"rule {rule.id} names an unsupported network/asset")
    return Offer(net, asset, rule.amount_atomic, rule.pay_to, rule.max_timeout_seconds,
                 tuple(int(v) for v in rule.protocol_versions.split(",")), rule.description,
                 rule.mime_type, rule.id, rule.merchant_id)


def offer_from_requirements(requirements: dict[str, Any]) -> Offer:
    """What a facilitator is asked to check against (v2 or v1 requirements, camelCase). Bad
    requirements raise InvalidPayment (a facilitator answers them, never fails on them)."""
    if requirements.get("scheme") != "exact":
        raise InvalidPayment("unsupported_scheme", f"scheme {requirements.get('scheme')!r} is "
                             "not supported by this facilitator")
    net = network(str(requirements.get("network", "")))
    if net is None:
        raise InvalidPayment("invalid_network", f"network {requirements.get('network')!r} is "
                             "not supported by this facilitator")
    asset = net.asset(str(requirements.get("asset", "")))
    if asset is None:
        raise InvalidPayment("invalid_payment_requirements",
                             f"asset {requirements.get('asset')!r} is unknown on {net.caip2}")
    amount = uint256(str(requirements.get("amount") or requirements.get("maxAmountRequired")
                         or ""))
    if amount is None:
        raise InvalidPayment("invalid_payment_requirements",
                             "requirements need an amount: a uint256 in digits")
    extra = requirements.get("extra") or {}
    timeout = requirements.get("maxTimeoutSeconds") or 60
    if not isinstance(extra, dict) or isinstance(timeout, bool) or not (
            isinstance(timeout, int) or _DIGITS.fullmatch(str(timeout))):
        raise InvalidPayment("invalid_payment_requirements",
                             "requirements' extra must be an object, maxTimeoutSeconds an integer")
    if extra and (extra.get("name"), extra.get("version")) != (asset.eip712_name,
                                                                asset.eip712_version):
        raise InvalidPayment("invalid_payment_requirements",
                             f"the EIP-712 domain of {asset.address} is "
                             f"{asset.eip712_name!r} v{asset.eip712_version}")
    return Offer(net, asset, amount, str(requirements.get("payTo", "")), int(timeout))


def payment_required(offer: Offer, resource_url: str, error: str | None
                     ) -> tuple[dict[str, str], dict[str, Any]]:
    """The 402's headers and JSON body for this offer."""
    headers: dict[str, str] = {}
    body: dict[str, Any] = {"x402Version": 2, "error": error or "payment required"}
    if 2 in offer.versions:
        required = PaymentRequired(
            error=error, accepts=[offer.v2(), offer.token()],
            resource=ResourceInfo(url=resource_url, description=offer.description,
                                  mime_type=offer.mime_type or "application/json"))
        headers[PAYMENT_REQUIRED] = _b64(required.model_dump(by_alias=True, exclude_none=True))
    if 1 in offer.versions:
        body = PaymentRequiredV1(error=error or "payment required",
                                 accepts=[offer.v1(resource_url)]).model_dump(
            by_alias=True, exclude_none=True)
    return headers, body


def read_payment_header(headers) -> tuple[str, PaymentPayload | PaymentPayloadV1] | None:
    """(header name, payload) of the request's payment, None when it carries none."""
    for name in (PAYMENT_SIGNATURE, X_PAYMENT):
        value = headers.get(name)
        if value:
            return name, decode_payload(value)
    return None


def decode_payload(value: str) -> PaymentPayload | PaymentPayloadV1:
    try:
        data = json.loads(base64.b64decode(value.strip(), validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidPayment("invalid_payload", "the payment header is not base64 JSON") from None
    return parse_payload(data)


def parse_payload(data: object) -> PaymentPayload | PaymentPayloadV1:
    if not isinstance(data, dict):
        raise InvalidPayment("invalid_payload", "the payment payload must be a JSON object")
    version = data.get("x402Version")
    try:
        if version == 1:
            return PaymentPayloadV1.model_validate(data)
        if version == 2:
            return PaymentPayload.model_validate(data)
    except ValueError as exc:
        raise InvalidPayment("invalid_payload", f"malformed payment payload: {exc}") from None
    raise InvalidPayment("invalid_x402_version", f"x402Version {version!r} is not 1 or 2")


def receipt(*, success: bool, tx_hash: str, network_id: str, payer: str | None, amount: int,
            reason: str | None = None) -> str:
    response = SettleResponse(success=success, transaction=tx_hash, network=network_id,
                              payer=payer, amount=str(amount), error_reason=reason)
    return _b64(response.model_dump(by_alias=True, exclude_none=True))


def failed_receipt(*, reason: str, network_id: str, payer: str | None) -> str:
    """The PAYMENT-RESPONSE of a settlement that failed (x402 v2's HTTP transport: a 402 with
    success false, the errorReason and an empty transaction)."""
    response = SettleResponse(success=False, error_reason=reason, transaction="",
                              network=network_id, payer=payer)
    return _b64(response.model_dump(by_alias=True, exclude_none=True))


def _b64(document: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()
