"""Request and response bodies of the x402 admin and payment-token endpoints."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from serving.schemas import CurrencyCode, MinorOut, Name, PositiveMinor, Timestamp
from serving.x402.networks import DEFAULT_NETWORK, NETWORKS

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def _address(value: str) -> str:
    if not _ADDRESS.fullmatch(value):
        raise PydanticCustomError("invalid_address", "must be a 0x address of 40 hex digits",
                                  {"code": "invalid_address"})
    return value


def _token_currency(value: str) -> str:
    """A token pays 402-priced resources, which are priced in the networks' assets (USDC): a
    budget in anything else could never be spent, so it is refused when the token is issued."""
    payable = sorted({asset.symbol for net in NETWORKS.values() for asset in net.assets})
    if value not in payable:
        raise PydanticCustomError(
            "unsupported_token_currency",
            "a payment token's budget is in an asset 402-priced resources take: {payable}",
            {"code": "unsupported_token_currency", "payable": payable})
    return value


def _upstream(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise PydanticCustomError("invalid_url", "must be an http(s) URL", {"code": "invalid_url"})
    return value.rstrip("/")


def _pattern(value: str) -> str:
    if not value.startswith("/"):
        raise PydanticCustomError("invalid_pattern", "path patterns start with /",
                                  {"code": "invalid_pattern"})
    return value


Address = Annotated[str, AfterValidator(_address)]
PathPattern = Annotated[str, Field(min_length=1, max_length=300), AfterValidator(_pattern)]


class GatewayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upstream_url: Annotated[str, Field(max_length=500), AfterValidator(_upstream)]
    status: Literal["active", "disabled"] = "active"
    requests_per_second: int = Field(default=1000, ge=1, le=100_000)
    payer_requests_per_minute: int = Field(default=600, ge=1, le=1_000_000)


class GatewayOut(GatewayIn):
    merchant_id: str
    gateway_url: str


class PricingRuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path_pattern: PathPattern = Field(description="glob over the path after /x402/{merchant_id}, "
                                                  "e.g. /company/detail or /reports/*")
    http_method: Literal["*", "GET", "POST", "PUT", "PATCH", "DELETE"] = "*"
    amount_minor: PositiveMinor = Field(description="price in atomic units (USDC: 6 decimals)")
    asset: Literal["USDC"] = "USDC"
    network: Literal["eip155:84532", "eip155:8453"] = DEFAULT_NETWORK
    pay_to: Address
    billing_mode: Literal["per_request"] = "per_request"
    description: str | None = Field(default=None, max_length=300)
    mime_type: str | None = Field(default=None, max_length=100)
    max_timeout_seconds: int = Field(default=60, ge=6, le=3600)
    protocol_versions: list[Literal[1, 2]] = Field(default=[2, 1], min_length=1)
    priority: int = Field(default=100, ge=0, le=10_000)


class PricingRuleOut(BaseModel):
    id: str
    merchant_id: str
    path_pattern: str
    http_method: str
    amount_minor: MinorOut
    currency: str
    asset_address: str
    network: str
    pay_to: str
    billing_mode: str
    description: str | None
    mime_type: str | None
    max_timeout_seconds: int
    protocol_versions: list[int]
    priority: int
    status: str
    created_at: Timestamp


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_name: Name = Field(min_length=1, max_length=200, description="who will hold the token")
    amount_minor: PositiveMinor = Field(description="the budget, in minor units of currency")
    currency: Annotated[CurrencyCode, AfterValidator(_token_currency)] = "USDC"
    per_call_cap_minor: PositiveMinor | None = None
    expires_at: datetime | None = Field(default=None, description="default: in 24 hours")
    allowed_merchants: list[str] | None = Field(default=None, max_length=100)
    allowed_paths: list[PathPattern] | None = Field(default=None, max_length=100)


class TokenOut(BaseModel):
    id: str
    merchant_id: str
    agent_name: str
    amount_minor: MinorOut
    currency: str
    spent_minor: MinorOut
    remaining_minor: MinorOut
    per_call_cap_minor: MinorOut | None
    calls: int
    expires_at: Timestamp
    allowed_merchants: list[str] | None
    allowed_paths: list[str] | None
    status: str
    created_at: Timestamp


class TokenCreated(TokenOut):
    token: str = Field(description="the bearer secret, shown once")


class FaucetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: Address
    amount_minor: PositiveMinor
    network: Literal["eip155:84532", "eip155:8453"] = DEFAULT_NETWORK
    asset: Literal["USDC"] = "USDC"
