"""Offline verification of an `exact` (EIP-3009) payment, in the order the gateway promises:

scheme -> network -> the accepted requirement is one we offered -> to == payTo -> value == amount
-> time window -> the EIP-712 signature recovers to `from`. The facilitator then checks the
payer's balance and that the authorization's nonce was never used (serving/x402/facilitator.py).

No network call: the EIP-712 digest is computed here and the signer recovered with
libsecp256k1 (coincurve), ~0.1 ms together; the crypto libraries are imported on first use (and
warmed in the background at start-up), never on the API's start-up path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from x402.schemas import PaymentPayload
from x402.schemas.v1 import PaymentPayloadV1

from serving.x402.networks import network
from serving.x402.protocol import InvalidPayment, Offer, uint256

# validAfter may be this far in the future (the payer's clock runs ahead of ours).
CLOCK_SKEW_SECONDS = 5
# validBefore must leave at least this long for settlement (x402's facilitators use 6 s).
SETTLE_MARGIN_SECONDS = 6
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_NONCE = re.compile(r"0x[0-9a-fA-F]{64}")
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{130}")
TRANSFER_WITH_AUTHORIZATION = [
    {"name": "from", "type": "address"}, {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"}, {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"}, {"name": "nonce", "type": "bytes32"},
]
EIP712_DOMAIN = [
    {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"},
]


@dataclass(frozen=True)
class Authorization:
    payer: str  # `from`, lowercase
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: str  # 0x + 64 hex, lowercase
    signature: str


@dataclass(frozen=True)
class Verified:
    offer: Offer
    authorization: Authorization
    version: int


def scheme_and_network(payload: PaymentPayload | PaymentPayloadV1) -> tuple[str, str]:
    if isinstance(payload, PaymentPayloadV1):
        return payload.scheme, payload.network
    return payload.accepted.scheme, payload.accepted.network


def verify_exact(payload: PaymentPayload | PaymentPayloadV1, offers: list[Offer],
                 now: int) -> Verified:
    """Check everything that needs no chain; raises InvalidPayment with x402's reason code."""
    scheme, network_name = scheme_and_network(payload)
    if scheme != "exact":
        raise InvalidPayment("unsupported_scheme", f"scheme {scheme!r} is not offered here")
    net = network(network_name)
    matching = [o for o in offers if net is not None and o.network is net]
    if not matching:
        raise InvalidPayment("invalid_network",
                             f"network {network_name!r} is not offered for this resource")
    if not isinstance(payload, PaymentPayloadV1):  # v2: it names the requirement it accepted
        accepted = payload.accepted.model_dump(by_alias=True, exclude_none=True)
        offer = next((o for o in matching if _same_requirement(
            accepted, o.v2().model_dump(by_alias=True, exclude_none=True))), None)
        if offer is None:
            raise InvalidPayment("invalid_payment_requirements",
                                 "`accepted` is not one of the requirements this resource offers")
        if 2 not in offer.versions:
            raise InvalidPayment("invalid_x402_version", "this resource takes x402 v1 only")
    else:  # v1 names no requirement: the one offered for this network
        offer = matching[0]
        if 1 not in offer.versions:
            raise InvalidPayment("invalid_x402_version", "this resource takes x402 v2 only")
    auth = read_authorization(payload.payload)
    if auth.to != offer.pay_to.lower():
        raise InvalidPayment("invalid_exact_evm_payload_recipient_mismatch",
                             f"authorization pays {auth.to}, not {offer.pay_to}",
                             payer=auth.payer)
    if auth.value != offer.amount:
        raise InvalidPayment("invalid_exact_evm_payload_authorization_value_mismatch",
                             f"authorization is for {auth.value}, the price is {offer.amount}",
                             payer=auth.payer)
    if auth.valid_after > now + CLOCK_SKEW_SECONDS:
        raise InvalidPayment("invalid_exact_evm_payload_authorization_valid_after",
                             f"authorization is valid only after {auth.valid_after}",
                             payer=auth.payer)
    if auth.valid_before < now + SETTLE_MARGIN_SECONDS:
        raise InvalidPayment("invalid_exact_evm_payload_authorization_valid_before",
                             f"authorization expires at {auth.valid_before}, too soon to settle",
                             payer=auth.payer)
    if recover_signer(offer, auth) != auth.payer:
        raise InvalidPayment("invalid_exact_evm_payload_signature",
                             "the signature does not recover to `from` for this asset's EIP-712 "
                             "domain", payer=auth.payer)
    return Verified(offer, auth, payload.x402_version)


def _same_requirement(accepted: dict, offered: dict) -> bool:
    """Equal as requirements: addresses compare case-insensitively, amounts as integers."""
    def norm(req: dict) -> tuple:
        return (req.get("scheme"), req.get("network"), str(req.get("asset", "")).lower(),
                str(req.get("amount")), str(req.get("payTo", "")).lower(),
                req.get("maxTimeoutSeconds"), req.get("extra") or {})
    return norm(accepted) == norm(offered)


def read_authorization(payload: dict) -> Authorization:
    auth, signature = payload.get("authorization"), payload.get("signature")
    if not isinstance(auth, dict) or not isinstance(signature, str):
        raise InvalidPayment("invalid_payload", "payload needs `authorization` and `signature`")
    try:
        payer, to, nonce = str(auth["from"]), str(auth["to"]), str(auth["nonce"])
        value, after, before = (_uint(auth[k], k) for k in ("value", "validAfter", "validBefore"))
    except KeyError as exc:
        raise InvalidPayment("invalid_payload", f"authorization lacks {exc.args[0]}") from None
    for name, text, pattern in (("from", payer, _ADDRESS), ("to", to, _ADDRESS),
                                ("nonce", nonce, _NONCE), ("signature", signature, _SIGNATURE)):
        if not pattern.fullmatch(text):
            raise InvalidPayment("invalid_payload", f"authorization.{name} is malformed")
    return Authorization(payer.lower(), to.lower(), value, after, before, nonce.lower(),
                         signature)


def _uint(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidPayment("invalid_payload", f"authorization.{name} must be an integer string")
    number = uint256(str(value))
    if number is None:
        raise InvalidPayment("invalid_payload", f"authorization.{name} must be a uint256")
    return number


def typed_data(offer: Offer, auth: Authorization) -> dict:
    """The EIP-712 document the payer signed (the form eth-account and wallets take)."""
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN,
                  "TransferWithAuthorization": TRANSFER_WITH_AUTHORIZATION},
        "primaryType": "TransferWithAuthorization",
        "domain": {"name": offer.asset.eip712_name, "version": offer.asset.eip712_version,
                   "chainId": offer.network.chain_id, "verifyingContract": offer.asset.address},
        "message": {"from": auth.payer, "to": auth.to, "value": auth.value,
                    "validAfter": auth.valid_after, "validBefore": auth.valid_before,
                    "nonce": auth.nonce},
    }


# --- EIP-712 digest and ecrecover, as USDC's contract computes them ------------------------------
# Hand-rolled on keccak + libsecp256k1 because eth-account's generic typed-data encoder costs
# ~1 ms per call; tests check this digest and signer against eth-account for random inputs.

_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _keccak(data: bytes) -> bytes:
    from Crypto.Hash import keccak

    return keccak.new(digest_bits=256, data=data).digest()


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address_word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


@cache
def _type_hashes() -> tuple[bytes, bytes]:
    domain = _keccak(b"EIP712Domain(string name,string version,uint256 chainId,"
                     b"address verifyingContract)")
    transfer = _keccak(b"TransferWithAuthorization(address from,address to,uint256 value,"
                       b"uint256 validAfter,uint256 validBefore,bytes32 nonce)")
    return domain, transfer


@cache
def domain_separator(name: str, version: str, chain_id: int, contract: str) -> bytes:
    domain_type, _ = _type_hashes()
    return _keccak(domain_type + _keccak(name.encode()) + _keccak(version.encode())
                   + _word(chain_id) + _address_word(contract))


def digest(offer: Offer, auth: Authorization) -> bytes:
    """The EIP-712 hash the payer signed (what USDC's transferWithAuthorization recovers from)."""
    _, transfer_type = _type_hashes()
    struct = _keccak(transfer_type + _address_word(auth.payer) + _address_word(auth.to)
                     + _word(auth.value) + _word(auth.valid_after) + _word(auth.valid_before)
                     + bytes.fromhex(auth.nonce[2:]))
    separator = domain_separator(offer.asset.eip712_name, offer.asset.eip712_version,
                                 offer.network.chain_id, offer.asset.address.lower())
    return _keccak(b"\x19\x01" + separator + struct)


def recover_signer(offer: Offer, auth: Authorization) -> str | None:
    """The address that signed the authorization, or None for a signature the contract would
    refuse (USDC's ECRecover: v of 27/28, s in the lower half of the curve order)."""
    from coincurve import PublicKey

    signature = bytes.fromhex(auth.signature[2:])
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    if v in (0, 1):
        v += 27
    if v not in (27, 28) or not 0 < s <= _SECP256K1_N // 2 or int.from_bytes(r, "big") == 0:
        return None
    try:
        key = PublicKey.from_signature_and_message(r + signature[32:64] + bytes([v - 27]),
                                                   digest(offer, auth), hasher=None)
    except ValueError:
        return None
    return "0x" + _keccak(key.format(compressed=False)[1:])[-20:].hex()


def warm_up() -> None:
    """Load the crypto libraries now (from a background thread at start-up)."""
    from coincurve import PublicKey  # noqa: F401
    from Crypto.Hash import keccak  # noqa: F401
