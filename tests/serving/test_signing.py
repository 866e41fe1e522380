"""Clearhouse-Signature (api.md): round trip, tampering, staleness both ways, rotated secrets."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from serving import signing

SECRET = "whsec_test_0123456789"
BODY = b'{"id":"evt_1","type":"payment.succeeded","data":{"amount_minor":"1000"}}'
T = 1_795_000_000


def test_sign_matches_the_format_in_api_md():
    header = signing.sign(SECRET, BODY, T)
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={T},v1={expected}"


def test_round_trip_returns_the_timestamp():
    header = signing.sign(SECRET, BODY, T)
    assert signing.verify(SECRET, BODY, header, now=T + 10) == T
    when = datetime.fromtimestamp(T, UTC)
    assert signing.verify(SECRET, BODY, signing.sign(SECRET, BODY, when), now=when) == T


@pytest.mark.parametrize("body", [BODY.replace(b"1000", b"9000"), BODY + b" ", b""])
def test_tampered_body_is_a_mismatch(body):
    header = signing.sign(SECRET, BODY, T)
    with pytest.raises(signing.SignatureMismatch) as err:
        signing.verify(SECRET, body, header, now=T)
    assert err.value.code == "invalid_signature"


def test_wrong_secret_and_moved_timestamp_are_mismatches():
    header = signing.sign(SECRET, BODY, T)
    with pytest.raises(signing.SignatureMismatch):
        signing.verify("whsec_other", BODY, header, now=T)
    replayed = header.replace(f"t={T}", f"t={T + 100}")  # a captured signature with a new t
    with pytest.raises(signing.SignatureMismatch):
        signing.verify(SECRET, BODY, replayed, now=T + 100)


@pytest.mark.parametrize(("offset", "ok"), [(-301, False), (-300, True), (300, True),
                                            (301, False), (-86_400, False)])
def test_stale_and_future_timestamps(offset, ok):
    """Signed at T; checked at T - offset: a signature from the future is refused too."""
    header = signing.sign(SECRET, BODY, T)
    now = T - offset
    if ok:
        assert signing.verify(SECRET, BODY, header, now=now) == T
    else:
        with pytest.raises(signing.StaleSignature) as err:
            signing.verify(SECRET, BODY, header, now=now)
        assert err.value.code == "stale_signature"


def test_forged_and_stale_is_reported_as_forged():
    with pytest.raises(signing.SignatureMismatch):
        signing.verify(SECRET, BODY, f"t={T},v1={'0' * 64}", now=T + 10_000)


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header(header):
    with pytest.raises(signing.MissingSignature):
        signing.verify(SECRET, BODY, header, now=T)


@pytest.mark.parametrize("header", ["garbage", f"t={T}", "v1=abc", f"t=x{T},v1=ab",
                                    f"t={T},t={T},v1=ab", "t=-5,v1=ab", f"t={T};v1=ab",
                                    f"t={T},v0=ab"])
def test_malformed_headers(header):
    with pytest.raises(signing.MalformedSignature) as err:
        signing.verify(SECRET, BODY, header, now=T)
    assert err.value.code == "invalid_signature"


def test_rotation_sender_signs_with_old_and_new_secrets():
    header = signing.sign(["whsec_new", "whsec_old"], BODY, T)
    assert header.count("v1=") == 2
    assert signing.verify("whsec_old", BODY, header, now=T) == T  # receiver not yet rotated
    assert signing.verify("whsec_new", BODY, header, now=T) == T  # receiver rotated
    with pytest.raises(signing.SignatureMismatch):
        signing.verify("whsec_other", BODY, header, now=T)


def test_rotation_receiver_accepts_old_and_new_secrets():
    old = signing.sign("whsec_old", BODY, T)
    new = signing.sign("whsec_new", BODY, T)
    for header in (old, new):
        assert signing.verify(["whsec_new", "whsec_old"], BODY, header, now=T) == T


def test_unknown_schemes_and_spaces_are_tolerated():
    v1 = signing.sign(SECRET, BODY, T).split(",")[1]
    assert signing.verify(SECRET, BODY, f" t={T}, v0=deadbeef, {v1} ", now=T) == T


def test_empty_secret_is_refused():
    with pytest.raises(ValueError):
        signing.sign("", BODY, T)
    with pytest.raises(ValueError):
        signing.verify([], BODY, signing.sign(SECRET, BODY, T), now=T)
