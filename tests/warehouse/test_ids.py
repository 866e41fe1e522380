"""warehouse/ids.py: prefixed, 26-character Crockford base32, time-ordered ids (api.md)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warehouse import ids
from warehouse.ids import PREFIXES, new_id

CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case: no i, l, o, u
MAX_MS = 2**48 - 1

# The prefixes api.md names ("pay_, re_, mer_, agt_, ch_, po_, evt_, ...").
API_MD_PREFIXES = {"payment": "pay", "refund": "re", "merchant": "mer", "agent": "agt",
                   "channel": "ch", "payout": "po", "event": "evt"}


def decode(body: str) -> int:
    value = 0
    for ch in body:
        value = value * 32 + CROCKFORD.index(ch)
    return value


def split(id_: str) -> tuple[str, str]:
    prefix, sep, body = id_.partition("_")
    assert sep == "_"
    return prefix, body


@pytest.mark.parametrize(("kind", "prefix"), sorted(API_MD_PREFIXES.items()))
def test_prefixes_from_api_md(kind: str, prefix: str) -> None:
    assert new_id(kind).startswith(f"{prefix}_")


def test_prefixes_are_distinct_and_have_no_separator() -> None:
    assert len(set(PREFIXES.values())) == len(PREFIXES)
    for prefix in PREFIXES.values():
        assert prefix and "_" not in prefix and prefix.islower() and prefix.isalpha()


@pytest.mark.parametrize("kind", sorted(PREFIXES))
def test_every_kind_has_a_26_character_crockford_body(kind: str) -> None:
    prefix, body = split(new_id(kind))
    assert prefix == PREFIXES[kind]
    assert len(body) == 26
    assert set(body) <= set(CROCKFORD)
    assert body[0] in "01234567"  # 26 * 5 = 130 bits carry a 128-bit value


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(KeyError):
        new_id("invoice")


def test_body_carries_the_milliseconds_in_its_top_48_bits() -> None:
    at_ms = 1_795_000_000_123
    _, body = split(new_id("payment", at_ms=at_ms))
    assert decode(body) >> 80 == at_ms
    assert decode(body) < 2**128


def test_default_time_is_now_in_milliseconds(monkeypatch) -> None:
    monkeypatch.setattr(ids.time, "time", lambda: 1_795_000_000.123456)
    _, body = split(new_id("refund"))
    assert decode(body) >> 80 == 1_795_000_000_123


def test_10k_ids_are_unique() -> None:
    made = [new_id("payment") for _ in range(10_000)]
    assert len(set(made)) == 10_000


def test_10k_ids_in_the_same_millisecond_are_unique_and_share_the_time_part() -> None:
    made = [new_id("event", at_ms=1_795_000_000_000) for _ in range(10_000)]
    assert len(set(made)) == 10_000
    assert len({split(i)[1][:10] for i in made}) == 1  # first 10 chars = the top 50 bits
    assert len({split(i)[1][10:] for i in made}) == 10_000  # the random 80 bits differ


def test_ids_sort_by_at_ms() -> None:
    rng = random.Random(20261121)
    times = sorted({0, 1, 2, MAX_MS - 1, MAX_MS, *(rng.randrange(0, MAX_MS) for _ in range(2000))})
    made = [new_id("payment", at_ms=t) for t in times]
    shuffled = made[:]
    rng.shuffle(shuffled)
    assert sorted(shuffled) == made


@given(a=st.integers(0, MAX_MS), b=st.integers(0, MAX_MS))
def test_earlier_millisecond_sorts_first(a: int, b: int) -> None:
    ia, ib = new_id("payment", at_ms=a), new_id("payment", at_ms=b)
    if a < b:
        assert ia < ib
    elif a > b:
        assert ia > ib
    else:
        assert ia[:14] == ib[:14]  # "pay_" + 10 time characters


@pytest.mark.parametrize("at_ms", [-1, 2**48, 2**50, 10**16])
def test_at_ms_outside_48_bits_is_refused(at_ms: int) -> None:
    # Unchecked, 2**50 wraps to the same top bits as 0 and sorts before every real id.
    with pytest.raises(ValueError):
        new_id("payment", at_ms=at_ms)


def test_wall_clock_ids_made_in_one_millisecond_sort_in_the_order_made(monkeypatch) -> None:
    # A clock that does not move between ids must not reorder them: list cursors page by id,
    # newest first.
    from types import SimpleNamespace

    monkeypatch.setattr("warehouse.ids.time", SimpleNamespace(time=lambda: 1_795_000_000.001))
    made = [new_id("payment") for _ in range(500)]
    assert sorted(made) == made and len(set(made)) == 500
    assert {decode(split(i)[1]) >> 80 for i in made} == {1_795_000_000_001}
