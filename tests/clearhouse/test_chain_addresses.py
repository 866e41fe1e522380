"""The seeds reconciliation reads the platform's chain addresses and tokens from agree with what
the channel simulators and the x402 networks use."""

from __future__ import annotations

import csv
from pathlib import Path

from clearhouse import channel_files
from serving.x402.booking import TOKEN_CHANNEL, X402_CHANNEL
from serving.x402.networks import NETWORKS

SEEDS = Path(__file__).resolve().parents[2] / "dbt_project" / "seeds"


def _rows(name: str) -> list[dict]:
    with (SEEDS / name).open(newline="") as f:
        return list(csv.DictReader(f))


def test_the_crypto_channels_collection_address_is_seeded():
    seeded = {(r["network"], r["address"], r["channel_id"]) for r in _rows("ref_chain_addresses.csv")}
    assert (channel_files.BASE_NETWORK, channel_files.PLATFORM_ADDRESS, "ch_crypto_sim") in seeded
    assert all(r["address"] == r["address"].lower() for r in _rows("ref_chain_addresses.csv"))


def test_every_x402_asset_is_a_seeded_token():
    seeded = {(r["network"], r["token_address"], r["asset"]) for r in _rows("ref_chain_tokens.csv")}
    offered = {(net.caip2, asset.address.lower(), asset.symbol)
               for net in NETWORKS.values() for asset in net.assets}
    assert offered and offered <= seeded


def test_the_x402_channel_reconciliation_names_is_the_one_x402_books_on():
    import yaml

    project = yaml.safe_load((SEEDS.parent / "dbt_project.yml").read_text())
    assert project["vars"]["x402_channel_id"] == X402_CHANNEL
    assert project["vars"]["agent_token_channel_id"] == TOKEN_CHANNEL  # settlement's buyer side


def test_every_x402_network_has_the_gateways_confirmation_threshold_seeded():
    """reconciliation.md: chain_unconfirmed is "fewer confirmations than the network's
    threshold"; the gateway (serving/x402/networks.py) and reconciliation use the same one."""
    seeded = {r["network"]: int(r["confirmations"]) for r in _rows("ref_chain_networks.csv")}
    assert {net.caip2: net.confirmations for net in NETWORKS.values()}.items() <= seeded.items()
    # the networks whose tokens reconciliation knows all have their own threshold
    assert {r["network"] for r in _rows("ref_chain_tokens.csv")} <= set(seeded)
