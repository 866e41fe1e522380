"""Spine audit: the Money type as a caller uses it (ordering within one currency)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warehouse.money import CurrencyMismatchError, Money

AMOUNTS = st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1)


@given(AMOUNTS, AMOUNTS)
def test_amounts_of_one_currency_order_as_their_minor_units(a, b):
    x, y = Money(a, "ETH"), Money(b, "ETH")
    assert (x < y, x <= y, x > y, x >= y) == (a < b, a <= b, a > b, a >= b)
    assert max(x, y).amount_minor == max(a, b)


def test_amounts_of_two_currencies_do_not_compare():
    with pytest.raises(CurrencyMismatchError):
        _ = Money(100, "USD") < Money(1, "JPY")
    with pytest.raises(TypeError):
        _ = Money(100, "USD") < 5
    assert Money(100, "USD") != Money(100, "EUR")  # equal amounts, other money
