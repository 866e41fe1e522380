"""The gateway's own EIP-712 digest and signer recovery agree with eth-account, and refuse what
USDC's contract refuses (high s, v other than 27/28)."""

from __future__ import annotations

import secrets

from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.x402.networks import NETWORKS
from serving.x402.protocol import Offer
from serving.x402.verify import Authorization, digest, recover_signer, typed_data

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ADDRESSES = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
UINT256 = st.integers(min_value=0, max_value=2**256 - 1)


def _offer(network: str) -> Offer:
    net = NETWORKS[network]
    return Offer(net, net.assets[0], 1, "0x" + "00" * 20)


def _signed(account, offer: Offer, auth: Authorization) -> Authorization:
    message = encode_typed_data(full_message=typed_data(offer, auth))
    signature = account.sign_message(message).signature
    return Authorization(**{**auth.__dict__, "signature": "0x" + bytes(signature).hex()})


@settings(max_examples=40, deadline=None)
@given(network=st.sampled_from(sorted(NETWORKS)), to=ADDRESSES, value=UINT256,
       valid_after=UINT256, valid_before=UINT256, nonce=st.binary(min_size=32, max_size=32))
def test_digest_and_signer_match_eth_account(network, to, value, valid_after, valid_before,
                                             nonce):
    account = Account.create()
    offer = _offer(network)
    auth = Authorization(account.address.lower(), to, value, valid_after, valid_before,
                         "0x" + nonce.hex(), "")
    message = encode_typed_data(full_message=typed_data(offer, auth))
    expected = b"\x19" + message.version + message.header + message.body
    from eth_utils import keccak

    assert digest(offer, auth) == keccak(expected)
    signed = _signed(account, offer, auth)
    assert recover_signer(offer, signed) == account.address.lower()
    assert Account.recover_message(message, signature=signed.signature).lower() == \
        account.address.lower()


def _auth() -> tuple[object, Offer, Authorization]:
    account = Account.create()
    offer = _offer("eip155:84532")
    auth = Authorization(account.address.lower(), "0x" + "ab" * 20, 10_000, 0, 2**40,
                         "0x" + secrets.token_hex(32), "")
    return account, offer, _signed(account, offer, auth)


def test_the_other_chains_domain_recovers_someone_else():
    account, offer, signed = _auth()
    assert recover_signer(_offer("eip155:8453"), signed) != account.address.lower()


def test_high_s_and_bad_v_are_refused_like_the_contract_does():
    account, offer, signed = _auth()
    raw = bytes.fromhex(signed.signature[2:])
    r, s, v = raw[:32], int.from_bytes(raw[32:64], "big"), raw[64]
    # The same signature with s' = n - s and the other v recovers the same key in plain
    # ecrecover; USDC refuses it (malleability), so must we.
    flipped = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    assert recover_signer(offer, Authorization(**{**signed.__dict__,
                                                  "signature": "0x" + flipped.hex()})) is None
    for bad_v in (2, 26, 29):
        mangled = "0x" + (raw[:64] + bytes([bad_v])).hex()
        assert recover_signer(offer, Authorization(**{**signed.__dict__,
                                                      "signature": mangled})) is None
    zero_based = "0x" + (raw[:64] + bytes([v - 27])).hex()  # v as 0/1 is the same signature
    assert recover_signer(offer, Authorization(**{**signed.__dict__,
                                                  "signature": zero_based})) == \
        account.address.lower()
