from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.files.amounts import AmountError, to_minor


@pytest.mark.parametrize(
    ("text", "cur", "sep", "minor"),
    [("1234.56", "EUR", ".", 123456), ("-0.01", "EUR", ".", -1), ("+8.85", "EUR", ".", 885),
     ("1234,56", "EUR", ",", 123456), (".5", "EUR", ".", 50), ("12.", "EUR", ".", 1200),
     ("18.1500", "EUR", ".", 1815), ("1000", "JPY", ".", 1000), ("1.234", "KWD", ".", 1234),
     ("0.000001", "USDC", ".", 1)],
)
def test_exact_conversion(text, cur, sep, minor):
    assert to_minor(text, cur, sep=sep) == minor


@pytest.mark.parametrize(
    ("text", "cur", "reason"),
    [("1.001", "EUR", "amount_precision"), ("1.5", "JPY", "amount_precision"),
     ("1e3", "EUR", "bad_amount"), ("", "EUR", "bad_amount"), ("-", "EUR", "bad_amount"),
     ("1.2.3", "EUR", "bad_amount"), ("1", "XXZ", "unknown_currency"),
     ("9" * 40, "EUR", "amount_out_of_range")],
)
def test_refusals(text, cur, reason):
    with pytest.raises(AmountError) as err:
        to_minor(text, cur)
    assert err.value.reason == reason


@given(st.decimals(min_value=Decimal("-1e15"), max_value=Decimal("1e15"), places=2,
                   allow_nan=False, allow_infinity=False))
def test_matches_decimal_scaling(value):
    assert to_minor(format(value, "f"), "EUR") == int(value.scaleb(2))
