"""The networks and assets the gateway accepts: one table, real addresses and EIP-712 domains.

USDC implements EIP-3009 (transferWithAuthorization); its EIP-712 domain name differs per chain
("USD Coin" on Base, "USDC" on Base Sepolia), so a signature made for one chain's domain never
verifies on the other. Amounts are atomic units (USDC: 6 decimals, the money core's exponent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from serving.errors import ApiError
from warehouse.money import exponent


@dataclass(frozen=True)
class Asset:
    symbol: str  # the money core's currency code
    address: str  # checksummed contract address, as x402 sends it
    eip712_name: str
    eip712_version: str

    @property
    def decimals(self) -> int:
        return exponent(self.symbol)


@dataclass(frozen=True)
class Network:
    caip2: str  # v2 id, e.g. "eip155:84532"
    v1_name: str  # v1 id, e.g. "base-sepolia"
    chain_id: int
    block_seconds: int
    assets: tuple[Asset, ...]
    # Confirmations before a payment counts as final (reconciliation's chain_unconfirmed).
    confirmations: int = 10

    def asset(self, symbol_or_address: str) -> Asset | None:
        key = symbol_or_address.lower()
        return next((a for a in self.assets
                     if a.symbol.lower() == key or a.address.lower() == key), None)


NETWORKS: dict[str, Network] = {
    n.caip2: n for n in (
        Network("eip155:8453", "base", 8453, 2, (
            Asset("USDC", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "USD Coin", "2"),)),
        Network("eip155:84532", "base-sepolia", 84532, 2, (
            Asset("USDC", "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "USDC", "2"),)),
    )
}
BY_V1_NAME = {n.v1_name: n for n in NETWORKS.values()}
DEFAULT_NETWORK: Final = "eip155:84532"


def network(name: str) -> Network | None:
    """By CAIP-2 id or v1 name."""
    return NETWORKS.get(name) or BY_V1_NAME.get(name)


def require_network(name: str, field: str = "network") -> Network:
    found = network(name)
    if found is None:
        raise ApiError(422, "unsupported_network",
                       f"network {name!r} is not supported; use one of {sorted(NETWORKS)}",
                       {"field": field})
    return found


def require_asset(net: Network, symbol: str, field: str = "asset") -> Asset:
    found = net.asset(symbol)
    if found is None:
        raise ApiError(422, "unsupported_asset",
                       f"{symbol!r} is not offered on {net.caip2}; use "
                       f"{[a.symbol for a in net.assets]}", {"field": field})
    return found
