"""Request and response schemas (kept apart from the database models)."""

from __future__ import annotations

import ipaddress
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from warehouse.money import MoneyError, currency, to_minor_int

PAYMENT_METHOD_TYPES = ("card", "wechat_pay", "alipay", "bank_transfer", "e_cny", "apple_pay",
                        "crypto", "wallet")


def _minor(value: Any) -> int:
    try:
        return to_minor_int(value)
    except MoneyError as exc:
        raise PydanticCustomError("invalid_amount", str(exc), {"code": exc.code}) from None


def _positive_minor(value: Any) -> int:
    result = _minor(value)
    if result <= 0:
        raise PydanticCustomError("invalid_amount", "amount_minor must be greater than zero",
                                  {"code": "amount_not_positive"})
    return result


def _not_negative(value: int) -> int:
    if value < 0:
        raise PydanticCustomError("invalid_amount", "must not be negative",
                                  {"code": "amount_negative"})
    return value


def _basis_points(value: Any) -> int:
    """A rate in basis points: an integer or its plain digits (api.md's rule for amounts), never
    a float - 250.0 is refused like an amount of 250.0 (money.md: no floats where money flows)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"0|[1-9][0-9]{0,5}", value):
        return int(value)
    raise PydanticCustomError("invalid_rate", "a rate is a whole number of basis points "
                              "(250 = 2.5 %), as an integer or a string of digits; never a float",
                              {"code": "invalid_rate"})


def _currency(value: Any) -> str:
    try:
        return currency(value).code
    except MoneyError as exc:
        raise PydanticCustomError("unknown_currency", str(exc), {"code": exc.code}) from None


def iso_z(value: datetime) -> str:
    """API timestamps: UTC, milliseconds, with Z (api.md)."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def minor_input_schema(digits: str, **integer: int) -> WithJsonSchema:
    """What the OpenAPI document says an amount input takes (api.md): the integer's plain
    spelling as a string (`digits`, a regular expression), or a JSON integer."""
    return WithJsonSchema({"anyOf": [{"type": "string", "pattern": f"^{digits}$"},
                                     {"type": "integer", **integer}],
                           "description": "integer minor units: a string of digits, or an "
                                          "integer; never a float"}, mode="validation")


# Input: an int or a string of digits. Output: always a string (api.md).
PositiveMinor = Annotated[int, BeforeValidator(_positive_minor),
                          minor_input_schema("[1-9][0-9]{0,37}", minimum=1),
                          PlainSerializer(str, return_type=str)]
# Input: an int or a digit string, zero or more (fees, fixed prices). Output: a string.
NonNegativeMinor = Annotated[int, BeforeValidator(_minor), AfterValidator(_not_negative),
                             minor_input_schema("(0|[1-9][0-9]{0,37})", minimum=0),
                             PlainSerializer(str, return_type=str)]
MinorOut = Annotated[int, PlainSerializer(str, return_type=str)]
CurrencyCode = Annotated[str, BeforeValidator(_currency)]
# 0 to 10,000 basis points (0 % to 100 %).
BasisPoints = Annotated[int, BeforeValidator(_basis_points), Field(ge=0, le=10_000),
                        WithJsonSchema({"anyOf": [
                            {"type": "integer", "minimum": 0, "maximum": 10_000},
                            {"type": "string", "pattern": "^(0|[1-9][0-9]{0,4})$"}],
                            "description": "basis points: 250 = 2.5 %"}, mode="validation")]


def _name(value: str) -> str:
    """A display name (merchant, agent, channel): trimmed; only spaces is no name."""
    value = value.strip()
    if not value:
        raise PydanticCustomError("blank_name", "must not be blank", {"code": "blank_name"})
    return value


Name = Annotated[str, AfterValidator(_name)]
Timestamp = Annotated[datetime, PlainSerializer(iso_z, return_type=str)]


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")


def _customer_error(code: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(code, message, {"code": code})


class Customer(BaseModel):
    """Risk inputs: each is what it says or the payment is a 422 naming it (velocity, lists and
    the geo rule key on them, so a garbled value would silently escape them)."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=200, description="name@domain.tld")
    ip: str | None = Field(default=None, max_length=64, description="an IPv4 or IPv6 address")
    device_id: str | None = Field(default=None, max_length=100)
    geo: str | None = Field(default=None, max_length=64,
                            description="'lat,lon' in degrees, or an ISO 3166 alpha-2 country code")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise _customer_error("invalid_email", "not an e-mail address")
        return value

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise _customer_error("invalid_ip", "not an IPv4 or IPv6 address") from None

    @field_validator("geo")
    @classmethod
    def _geo(cls, value: str | None) -> str | None:
        if value is None or _COUNTRY.match(value.strip()):
            return value
        try:
            lat, lon = (float(x) for x in value.split(","))
        except ValueError:
            lat = lon = math.nan
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):  # NaN fails both
            raise _customer_error("invalid_geo", "geo is 'lat,lon' in degrees (-90..90, "
                                                 "-180..180) or a two-letter country code")
        return value


class PaymentMethod(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["card", "wechat_pay", "alipay", "bank_transfer", "e_cny", "apple_pay", "crypto",
                  "wallet"]
    number: str | None = Field(default=None, validate_default=True,
                               description="card: the card number (required for cards)")
    test_outcome: Literal["success", "decline", "timeout", "pending", "pending_decline"] | None = Field(
        default=None, description="non-card methods: force the simulated outcome")

    @field_validator("number")
    @classmethod
    def _card_needs_a_number(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A card payment without a card number is bad input (422), not an approved test card.
        if info.data.get("type") == "card" and not (value and value.strip()):
            raise PydanticCustomError("card_number_required",
                                      "a card payment needs payment_method.number",
                                      {"code": "card_number_required"})
        return value


class PaymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_minor: PositiveMinor
    currency: CurrencyCode
    merchant_reference: str = Field(min_length=1, max_length=200)
    payment_method: PaymentMethod
    customer: Customer | None = None
    channel: str | None = Field(default=None, description="force a channel id")
    description: str | None = Field(default=None, max_length=500)
    confirm: bool = Field(default=True, description="false: stop at pending_confirm; "
                          "POST /payments/{id}/confirm continues")


class PaymentConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment_method: PaymentMethod | None = Field(
        default=None, description="required for cards (card numbers are never stored)")


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment_id: str
    amount_minor: PositiveMinor | None = Field(default=None, description="default: all that remains")
    # Money travels as {"amount_minor", "currency"} (api.md): the currency may be sent with the
    # amount and must then be the payment's. Left out of the idempotency fingerprint when absent.
    currency: CurrencyCode | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="optional: the payment's currency (anything else is 422 currency_mismatch)")
    reason: str | None = Field(default=None, max_length=200)


class RiskDecision(BaseModel):
    decision: str
    score: int | None = None
    reasons: list[str] = []


class PaymentOut(BaseModel):
    id: str
    object: Literal["payment"] = "payment"
    merchant_id: str
    merchant_reference: str
    status: str
    amount_minor: MinorOut
    currency: str
    refunded_minor: MinorOut
    payment_method_type: str
    channel: str | None
    channel_reference: str | None
    failure_code: str | None
    risk: RiskDecision
    routing: dict | None = None
    created_at: Timestamp
    captured_at: Timestamp | None


class RefundOut(BaseModel):
    id: str
    object: Literal["refund"] = "refund"
    payment_id: str
    status: str
    amount_minor: MinorOut
    currency: str
    reason: str | None
    created_at: Timestamp


class PaymentList(BaseModel):
    data: list[PaymentOut]
    has_more: bool


class RefundList(BaseModel):
    data: list[RefundOut]
    has_more: bool


class PriceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    currency: CurrencyCode
    rate_bps: BasisPoints
    # as POST /prices: a fixed fee is never negative; left out, it is recorded as missing (NULL):
    # the pipeline counts it as 0 with a data-quality warning (commission.md "Prices")
    fixed_minor: NonNegativeMinor | None = None


class MerchantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name = Field(min_length=1, max_length=200)
    agent_id: str | None = None
    settlement_currency: CurrencyCode = "USD"
    settlement_cycle: Literal["daily", "weekly", "monthly"] = "daily"
    settlement_delay_days: int = Field(default=1, ge=0, le=30)
    kyc_tier: int = Field(default=1, ge=0, le=3, description="0-3: daily risk limits "
                          "0 / 1,000 / 10,000 / 50,000 in the settlement currency")
    pricing: list[PriceIn] | None = Field(default=None, description="MDR per currency")


class MerchantOut(BaseModel):
    id: str
    object: Literal["merchant"] = "merchant"
    name: str
    status: str
    agent_id: str | None
    settlement_currency: str
    settlement_cycle: str
    created_at: Timestamp


class MerchantCreated(MerchantOut):
    api_key: str = Field(description="shown once; only its hash is stored")


class TopupCreate(BaseModel):
    """A stored-value wallet top-up: a normal payment of amount_minor, credited to the wallet."""

    model_config = ConfigDict(extra="forbid")
    customer_id: str = Field(min_length=1, max_length=100)
    currency: CurrencyCode
    amount_minor: PositiveMinor
    bonus_minor: NonNegativeMinor = Field(
        default=0, description="given by the merchant on top of the principal")
    payment_method: PaymentMethod
    merchant_reference: str | None = Field(default=None, min_length=1, max_length=200)


class WalletOut(BaseModel):
    id: str
    object: Literal["wallet"] = "wallet"
    merchant_id: str
    customer_id: str
    currency: str
    principal_minor: MinorOut
    bonus_minor: MinorOut
    total_minor: MinorOut
    created_at: Timestamp
    updated_at: Timestamp


class WalletTransactionOut(BaseModel):
    id: str
    object: Literal["wallet_transaction"] = "wallet_transaction"
    wallet_id: str
    kind: str
    currency: str
    principal_minor: MinorOut
    bonus_minor: MinorOut
    shortfall_minor: MinorOut | None = None
    payment_id: str | None
    refund_id: str | None
    topup_id: str | None
    created_at: Timestamp
