"""A paying HTTP client for x402-priced APIs.

On a 402 it reads the price (the v2 `PAYMENT-REQUIRED` header, else the v1 body) and pays once:
with an agent payment token when it holds one and the resource offers the `token` scheme, else
on chain with x402 `exact`, signed by the x402 package's own client. It retries the request once
with the payment and never again, so a refusal cannot turn into a loop of payments. Every attempt
to buy lands in `purchases`; a refused payment raises `PaymentRefused` with x402's reason code.

x402 and eth_account take seconds to import, so they are imported on the first `exact` payment.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import httpx

# Wire names (x402 v2, and v1 for the legacy body and headers).
PAYMENT_REQUIRED = "PAYMENT-REQUIRED"
PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE"
PAYMENT_RESPONSE = "PAYMENT-RESPONSE"
X_PAYMENT_RESPONSE = "X-PAYMENT-RESPONSE"
TOKEN_SCHEME = "token"
EXACT_SCHEME = "exact"


@dataclass
class Purchase:
    """One attempt to buy a resource. status: paid | refused (nothing was charged) |
    not_charged (the upstream failed, so the gateway charged nothing) | unconfirmed (delivered
    without a receipt)."""

    url: str
    amount_minor: int
    currency: str
    scheme: str | None  # token | exact; None when nothing offered could be paid with
    status: str
    transaction: str | None = None  # pay_... for a token, the chain transaction for exact
    reason: str | None = None
    message: str | None = None
    http_status: int | None = None
    payer: str | None = None  # apt_... or the 0x address
    network: str | None = None
    x402_version: int | None = None


class PaymentRefused(Exception):
    """The client could not pay, or the server refused the payment: `reason` is the code."""

    def __init__(self, purchase: Purchase):
        super().__init__(f"{purchase.reason}: {purchase.message or ''}".rstrip(": "))
        self.purchase = purchase
        self.reason = purchase.reason
        self.message = purchase.message
        self.status = purchase.http_status


def _b64json(value: str) -> Any:
    try:
        return json.loads(base64.b64decode(value.strip(), validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def _b64(document: dict) -> str:
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def payment_required(response: httpx.Response) -> dict | None:
    """The 402's requirements: the v2 header when present (it carries every scheme), else a v1
    body."""
    header = response.headers.get(PAYMENT_REQUIRED)
    if header:
        decoded = _b64json(header)
        if isinstance(decoded, dict) and decoded.get("x402Version") == 2:
            return decoded
    body = _json(response)
    if isinstance(body, dict) and body.get("x402Version") == 1 and body.get("accepts"):
        return body
    return None


def _amount(offer: dict) -> int:
    raw = str(offer.get("amount") or offer.get("maxAmountRequired") or "")
    return int(raw) if raw.isdigit() else 0


def _asset_symbol(offer: dict) -> str:
    """USDC for the default stablecoins x402 knows (by CAIP-2 id or v1 name); the token offer
    already names its currency."""
    if offer.get("scheme") == TOKEN_SCHEME:
        return str(offer.get("asset"))
    from x402.mechanisms.evm.default_assets import DEFAULT_ASSETS
    from x402.mechanisms.evm.v1.constants import V1_NETWORK_CHAIN_IDS

    net = str(offer.get("network", ""))
    if net in V1_NETWORK_CHAIN_IDS:
        net = f"eip155:{V1_NETWORK_CHAIN_IDS[net]}"
    asset = str(offer.get("asset", "")).lower()
    return next((a["symbol"] for a in DEFAULT_ASSETS.get(net, []) if a["asset"].lower() == asset),
                asset)


def _refusal(response: httpx.Response) -> tuple[str, str | None]:
    """(reason, message) of a refused payment: the 402's `error`, or a 403's error code."""
    body = _json(response)
    body = body if isinstance(body, dict) else {}
    if isinstance(body.get("error"), dict):  # 403 and other API errors
        return str(body["error"].get("code")), body["error"].get("message")
    required = payment_required(response) or {}
    reason = required.get("error") or body.get("error") or f"http_{response.status_code}"
    return str(reason), body.get("message")


class PayingClient:
    """`get`/`request` like httpx, paying for 402-priced resources (see the module doc).

    `http` may be any httpx.Client (FastAPI's TestClient is one); it is then not closed here.
    `max_per_call_minor` refuses, before paying, any resource priced above it."""

    def __init__(self, base_url: str, *, token: str | None = None, account=None,
                 max_per_call_minor: int | None = None, http: httpx.Client | None = None,
                 timeout: float = 30.0):
        if token is None and account is None:
            raise ValueError("a PayingClient needs a payment token or an account to pay with")
        self.base_url = base_url.rstrip("/")
        self.token, self.account, self.max_per_call_minor = token, account, max_per_call_minor
        self._http = http if http is not None else httpx.Client(timeout=timeout)
        self._owns_http = http is None
        self._signer = None  # (x402ClientSync, x402HTTPClientSync), built on first use
        self.purchases: list[Purchase] = []

    def __enter__(self) -> PayingClient:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def spent_minor(self, currency: str = "USDC") -> int:
        return sum(p.amount_minor for p in self.purchases
                   if p.status == "paid" and p.currency == currency)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        """The response (paid for when it was priced); PaymentRefused when it could not be."""
        url = path if "://" in path else self.base_url + path
        first = self._http.request(method, url, **kwargs)
        if first.status_code != 402:
            return first
        resource = str(first.request.url)
        required = payment_required(first)
        if required is None:
            raise self._refused(Purchase(resource, 0, "", None, "refused",
                                         reason="invalid_payment_required",
                                         message="the 402 carries no x402 requirements",
                                         http_status=402))
        scheme, offer, headers = self._pay(resource, required)
        headers = {**(kwargs.pop("headers", None) or {}), **headers}
        paid = self._http.request(method, url, headers=headers, **kwargs)
        purchase = Purchase(resource, _amount(offer), _asset_symbol(offer), scheme, "paid",
                            http_status=paid.status_code, network=offer.get("network"),
                            x402_version=required.get("x402Version"))
        if paid.status_code in (402, 403):
            purchase.status = "refused"
            purchase.reason, purchase.message = _refusal(paid)
            raise self._refused(purchase)
        if paid.status_code >= 400:  # the gateway charges nothing when it did not deliver
            purchase.status = "not_charged"
            purchase.reason, purchase.message = _refusal(paid)
        else:
            receipt = _b64json(paid.headers.get(PAYMENT_RESPONSE)
                               or paid.headers.get(X_PAYMENT_RESPONSE) or "")
            receipt = receipt if isinstance(receipt, dict) else {}
            if not receipt.get("success"):
                purchase.status = "unconfirmed"  # delivered without a receipt: check the seller
            purchase.transaction, purchase.payer = receipt.get("transaction"), receipt.get("payer")
            if str(receipt.get("amount", "")).isdigit():
                purchase.amount_minor = int(receipt["amount"])
        self.purchases.append(purchase)
        return paid

    def _refused(self, purchase: Purchase) -> PaymentRefused:
        self.purchases.append(purchase)
        return PaymentRefused(purchase)

    def _pay(self, resource: str, required: dict) -> tuple[str, dict, dict[str, str]]:
        """(scheme, the offer paid, the payment headers) for one retry."""
        accepts = [a for a in required.get("accepts") or [] if isinstance(a, dict)]
        cap = self.max_per_call_minor
        if self.token is not None and required.get("x402Version") == 2:
            offer = next((a for a in accepts if a.get("scheme") == TOKEN_SCHEME), None)
            if offer is not None:
                self._check_cap(resource, offer, TOKEN_SCHEME)
                return TOKEN_SCHEME, offer, {PAYMENT_SIGNATURE: _b64({
                    "x402Version": 2, "accepted": offer, "payload": {"token": self.token}})}
        exact = [a for a in accepts if a.get("scheme") == EXACT_SCHEME]
        if self.account is not None and exact:
            affordable = [a for a in exact if cap is None or _amount(a) <= cap]
            if not affordable:
                self._check_cap(resource, min(exact, key=_amount), EXACT_SCHEME)
            return self._sign_exact(resource, required, affordable)
        cheapest = min(accepts, key=_amount, default={})
        currency = _asset_symbol(cheapest) if cheapest else ""
        raise self._refused(Purchase(
            resource, _amount(cheapest), currency, None, "refused",
            reason="no_supported_offer", http_status=402,
            message=f"offered schemes {sorted({str(a.get('scheme')) for a in accepts})}; "
                    f"this client pays with {'a token' if self.token else 'an account'}"))

    def _check_cap(self, resource: str, offer: dict, scheme: str) -> None:
        if self.max_per_call_minor is not None and _amount(offer) > self.max_per_call_minor:
            raise self._refused(Purchase(
                resource, _amount(offer), _asset_symbol(offer), scheme, "refused",
                reason="client_cap_exceeded", http_status=402,
                message=f"{_amount(offer)} exceeds this client's per-call cap of "
                        f"{self.max_per_call_minor}"))

    def _sign_exact(self, resource: str, required: dict,
                    offers: list[dict]) -> tuple[str, dict, dict[str, str]]:
        from x402.schemas import NoMatchingRequirementsError, PaymentRequired
        from x402.schemas.v1 import PaymentRequiredV1

        client, http_client = self._x402()
        model = PaymentRequired if required.get("x402Version") == 2 else PaymentRequiredV1
        try:
            payload = client.create_payment_payload(model.model_validate({**required,
                                                                          "accepts": offers}))
        except NoMatchingRequirementsError as exc:
            raise self._refused(Purchase(
                resource, _amount(offers[0]), _asset_symbol(offers[0]), EXACT_SCHEME, "refused",
                reason="no_supported_offer", message=str(exc), http_status=402)) from None
        if payload.x402_version == 2:
            chosen = payload.accepted.model_dump(by_alias=True, exclude_none=True)
        else:  # a v1 payload names only scheme and network
            chosen = next(a for a in offers if a.get("network") == payload.network)
        return EXACT_SCHEME, chosen, http_client.encode_payment_signature_header(payload)

    def _x402(self):
        if self._signer is None:
            from x402 import x402ClientSync
            from x402.client_base import max_amount
            from x402.http import x402HTTPClientSync
            from x402.mechanisms.evm.exact.register import register_exact_evm_client
            from x402.mechanisms.evm.signers import EthAccountSigner

            client = x402ClientSync()
            register_exact_evm_client(client, EthAccountSigner(self.account))
            # x402's default cap is $1 per payment; this client's own cap replaces it.
            client.set_spend_controls(False)
            if self.max_per_call_minor is not None:
                client.register_policy(max_amount(self.max_per_call_minor))
            self._signer = client, x402HTTPClientSync(client)
        return self._signer
