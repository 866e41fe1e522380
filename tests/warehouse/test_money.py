"""The money core (warehouse/money.py) against shared/spec/money.md.

Expected values are worked out by hand from the spec formulas (shown in the comments), or come
from an independent oracle (fractions.Fraction / decimal at high precision), never from the code
under test.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from warehouse.money import (
    MAX_ABS_MINOR,
    AmountOutOfRangeError,
    AmountTextError,
    CurrencyMismatchError,
    FloatAmountError,
    FxRate,
    Money,
    MoneyError,
    UnknownCurrencyError,
    allocate,
    convert,
    currency_table,
    div_round_half_up,
    exponent,
    fee_minor,
    prorate,
    refund_reversals,
    round_half_up,
    to_minor_int,
)

# --- oracles (independent of the code under test) --------------------------------------------


def half_up(x: Fraction) -> int:
    """Exact rational rounded half away from zero."""
    magnitude = abs(x)
    q, r = divmod(magnitude.numerator, magnitude.denominator)
    if 2 * r >= magnitude.denominator:
        q += 1
    return q if x >= 0 else -q


def test_oracle_half_up_itself() -> None:
    assert [half_up(Fraction(n, 2)) for n in (-5, -3, -1, 1, 3, 5)] == [-3, -2, -1, 1, 2, 3]
    assert half_up(Fraction(4999, 10000)) == 0
    assert half_up(Fraction(-4999, 10000)) == 0


amounts = st.integers(min_value=-MAX_ABS_MINOR, max_value=MAX_ABS_MINOR)
small_amounts = st.integers(min_value=-10**6, max_value=10**6)
any_amount = st.one_of(small_amounts, amounts)


# --- fee_minor: money.md point 5 (and the point 8 example) -----------------------------------


@pytest.mark.parametrize(
    ("amount", "rate_bps", "fixed", "expected"),
    [
        # money.md point 8: 123456789012345678901 * 25 / 10000 = 308641972530864197.2525
        (123456789012345678901, 25, 0, 308641972530864197),
        (-123456789012345678901, 25, 0, -308641972530864197),
        # 250 bps is 2.50 %: 10000 * 250 / 10000 = 250, plus 30 fixed
        (10000, 250, 0, 250),
        (10000, 250, 30, 280),
        # 1999 * 290 / 10000 = 57.971 -> 58, + 30
        (1999, 290, 30, 88),
        # 2^63 = 9223372036854775808; / 10000 = 922337203685477.5808 -> ...478
        (2**63, 1, 0, 922337203685478),
        (-(2**63), 1, 0, -922337203685478),
        # exactly half, far beyond double precision: (10^30 + 5000) / 10^4 = 10^26 + 0.5
        (10**30 + 5000, 1, 0, 10**26 + 1),
        (-(10**30 + 5000), 1, 0, -(10**26 + 1)),
        # just below half: (10^30 + 4999) / 10^4 = 10^26 + 0.4999
        (10**30 + 4999, 1, 0, 10**26),
        (-(10**30 + 4999), 1, 0, -(10**26)),
        # the 38-digit ceiling at 100 %: 99...9 (38 nines)
        (10**38 - 1, 10000, 0, 10**38 - 1),
    ],
)
def test_fee_minor_exact_values(amount: int, rate_bps: int, fixed: int, expected: int) -> None:
    result = fee_minor(amount, rate_bps, fixed)
    assert type(result) is int
    assert result == expected


@pytest.mark.parametrize(
    ("amount", "rate_bps", "expected"),
    [
        (5000, 1, 1),     # 0.5 -> 1 (half away from zero, not banker's 0)
        (-5000, 1, -1),   # -0.5 -> -1
        (15000, 1, 2),    # 1.5 -> 2
        (-15000, 1, -2),  # -1.5 -> -2
        (25000, 1, 3),    # 2.5 -> 3 (banker's rounding would give 2)
        (-25000, 1, -3),
        (4999, 1, 0),     # 0.4999 -> 0
        (-4999, 1, 0),
        (5001, 1, 1),
        (2, 2500, 1),     # 2 * 2500 / 10000 = 0.5
        (-2, 2500, -1),
        (3, 5000, 2),     # 1.5
        (-3, 5000, -2),
        (20, 250, 1),     # 0.5
        (10, 250, 0),     # 0.25
        (-10, 250, 0),
        (30, -250, -1),   # a negative rate (a rebate): -0.75 -> -1
    ],
)
def test_fee_minor_half_cases_round_away_from_zero(amount: int, rate_bps: int, expected: int) -> None:
    assert fee_minor(amount, rate_bps) == expected


def test_fee_minor_accepts_integer_strings() -> None:
    assert fee_minor("123456789012345678901", 25) == 308641972530864197
    assert fee_minor(10000, 250, "30") == 280


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"amount_minor": 100.0, "rate_bps": 25}, FloatAmountError, "amount_minor"),
        ({"amount_minor": Decimal("100"), "rate_bps": 25}, FloatAmountError, "amount_minor"),
        ({"amount_minor": "100.5", "rate_bps": 25}, FloatAmountError, "amount_minor"),
        ({"amount_minor": 100, "rate_bps": 2.5}, MoneyError, "rate_bps"),
        ({"amount_minor": 100, "rate_bps": True}, MoneyError, "rate_bps"),
        ({"amount_minor": 100, "rate_bps": "25"}, MoneyError, "rate_bps"),
        ({"amount_minor": 100, "rate_bps": 25, "fixed_minor": 0.3}, FloatAmountError, "fixed_minor"),
    ],
)
def test_fee_minor_refuses_non_integers(kwargs: dict, error: type, field: str) -> None:
    with pytest.raises(error) as info:
        fee_minor(**kwargs)
    assert field in str(info.value)


@given(amount=any_amount, rate_bps=st.integers(min_value=-20000, max_value=20000))
def test_fee_minor_is_odd_when_fixed_is_zero(amount: int, rate_bps: int) -> None:
    assert fee_minor(-amount, rate_bps) == -fee_minor(amount, rate_bps)


@given(
    amount=any_amount,
    rate_bps=st.integers(min_value=-20000, max_value=20000),
    fixed=st.integers(min_value=-10**6, max_value=10**6),
)
def test_fee_minor_matches_decimal_round_half_up(amount: int, rate_bps: int, fixed: int) -> None:
    with localcontext() as ctx:
        ctx.prec = 100  # amount * rate / 10000 is a terminating decimal: exact at this precision
        exact = Decimal(amount) * rate_bps / 10000
        expected = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP)) + fixed
    assert fee_minor(amount, rate_bps, fixed) == expected


# --- div_round_half_up, round_half_up ---------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "d", "expected"),
    [
        (1, 2, 1), (-1, 2, -1), (1, -2, -1), (-1, -2, 1),
        (3, 2, 2), (-3, 2, -2), (5, 2, 3), (-5, 2, -3),
        (1, 3, 0), (2, 3, 1), (-2, 3, -1), (7, 7, 1), (0, 5, 0), (0, -5, 0),
        (10**40 + 1, 2, 5 * 10**39 + 1),
    ],
)
def test_div_round_half_up_exact_values(n: int, d: int, expected: int) -> None:
    assert div_round_half_up(n, d) == expected


def test_div_round_half_up_refuses_floats_and_zero() -> None:
    with pytest.raises(FloatAmountError):
        div_round_half_up(1.0, 2)  # type: ignore[arg-type]
    with pytest.raises(FloatAmountError):
        div_round_half_up(1, Decimal(2))  # type: ignore[arg-type]
    with pytest.raises(ZeroDivisionError):
        div_round_half_up(1, 0)


big_ints = st.integers(min_value=-10**80, max_value=10**80)
nonzero = st.one_of(
    st.integers(min_value=-10**40, max_value=10**40), st.integers(min_value=-20, max_value=20)
).filter(lambda d: d != 0)


def _decimal_half_up_of_fraction(n: int, d: int) -> int:
    # Enough digits that truncating the (possibly non-terminating) quotient cannot move it
    # across a half point: a non-half quotient is >= 1/(2|d|) away from the nearest half.
    with localcontext() as ctx:
        ctx.prec = len(str(abs(n))) + 2 * len(str(abs(d))) + 10
        ctx.rounding = "ROUND_DOWN"
        q = Decimal(n) / Decimal(d)
        return int(q.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@given(n=st.one_of(big_ints, st.integers(-100, 100)), d=nonzero)
def test_div_round_half_up_equals_decimal_quantize(n: int, d: int) -> None:
    assert div_round_half_up(n, d) == _decimal_half_up_of_fraction(n, d)


@given(k=st.integers(min_value=-10**50, max_value=10**50), d=st.integers(1, 10**30))
def test_div_round_half_up_exact_halves_go_away_from_zero(k: int, d: int) -> None:
    # (2k + 1) / 2 is exactly half; scaled by d so the fraction is not in lowest terms.
    n = (2 * k + 1) * d
    expected = k + 1 if k >= 0 else k
    assert div_round_half_up(n, 2 * d) == expected
    assert div_round_half_up(-n, 2 * d) == -expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("2.5"), 3), (Decimal("-2.5"), -3), (Decimal("0.5"), 1), (Decimal("-0.5"), -1),
        (Decimal("2.4999999999"), 2), (Decimal("-2.4999999999"), -2), (Decimal("7"), 7),
        # 38 digits before the point: beyond the default 28-digit decimal context
        (Decimal("12345678901234567890123456789012345678.5"), 12345678901234567890123456789012345679),
        (Decimal("-12345678901234567890123456789012345678.5"), -12345678901234567890123456789012345679),
    ],
)
def test_round_half_up(value: Decimal, expected: int) -> None:
    assert round_half_up(value) == expected


def test_round_half_up_refuses_float_and_non_finite() -> None:
    with pytest.raises(FloatAmountError):
        round_half_up(2.5)  # type: ignore[arg-type]
    for bad in (Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")):
        with pytest.raises(MoneyError):
            round_half_up(bad)


# --- parsing amounts: money.md point 1 -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0), (12345, 12345), (-7, -7), ("12345", 12345), ("-7", -7), ("0", 0),
        (10**38 - 1, 10**38 - 1), (-(10**38 - 1), -(10**38 - 1)), (str(10**38 - 1), 10**38 - 1),
        ("-" + str(10**38 - 1), -(10**38 - 1)),
    ],
)
def test_to_minor_int_accepts_integers_and_digit_strings(value: object, expected: int) -> None:
    result = to_minor_int(value)
    assert type(result) is int
    assert result == expected


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (12.5, FloatAmountError),
        (12.0, FloatAmountError),  # a whole float is still a float
        (float("nan"), FloatAmountError),
        (Decimal("12"), FloatAmountError),
        (Decimal("12.5"), FloatAmountError),
        ("12.5", FloatAmountError),
        ("12.", FloatAmountError),
        ("1e3", FloatAmountError),
        ("1E3", FloatAmountError),
        ("", AmountTextError),
        ("-", AmountTextError),
        ("1_000", AmountTextError),
        ("0x10", AmountTextError),
        ("1,000", AmountTextError),
        ("\u0661\u0662", AmountTextError),  # Arabic-Indic digits
        ("\u00b2", AmountTextError),  # superscript two: isdigit() but not a decimal digit
        # api.md: "<integer as string>", one spelling per amount (docs/architecture.md)
        (" 42 ", AmountTextError),
        ("42\n", AmountTextError),
        ("+7", AmountTextError),
        ("0012", AmountTextError),
        ("0" * 50 + "1", AmountTextError),
        ("-0", AmountTextError),
        ("00", AmountTextError),
        ("-012", AmountTextError),
        ("--1", AmountTextError),
        (True, MoneyError),
        (False, MoneyError),
        (None, MoneyError),
        ([1], MoneyError),
        (b"12", MoneyError),
    ],
)
def test_to_minor_int_refuses_non_integers_naming_the_field(value: object, error: type) -> None:
    with pytest.raises(error) as info:
        to_minor_int(value, field="refund_amount_minor")
    assert "refund_amount_minor" in str(info.value)
    assert isinstance(info.value, MoneyError)


@pytest.mark.parametrize(("value", "why"), [
    (" 1250 ", "no spaces"), ("+1250", 'no "+" sign'), ("0012", "no leading zeros"),
    ("-0", 'zero is "0"'), ("12.50", "a decimal or exponent"), ("1e3", "a decimal or exponent"),
])
def test_refused_amount_strings_say_why(value: str, why: str) -> None:
    with pytest.raises(MoneyError) as info:
        to_minor_int(value)
    assert why in str(info.value) and repr(value) in str(info.value)
    # Only a decimal or an exponent is called a float; a badly spelt integer is invalid_amount.
    float_like = any(ch in value for ch in ".eE")
    assert isinstance(info.value, FloatAmountError) == float_like
    assert info.value.code == ("float_amount" if float_like else "invalid_amount")


@given(st.integers(min_value=-(10**38 - 1), max_value=10**38 - 1))
def test_every_int_round_trips_through_its_string(value: int) -> None:
    assert to_minor_int(str(value)) == value


def test_float_error_has_its_code_and_says_why() -> None:
    with pytest.raises(FloatAmountError) as info:
        to_minor_int(12.5)
    assert info.value.code == "float_amount"
    assert "amount_minor" in str(info.value)
    assert "float" in str(info.value)


@pytest.mark.parametrize("value", [10**38, -(10**38), str(10**38), "-" + str(10**38), "1" * 5000])
def test_to_minor_int_refuses_more_than_38_digits(value: object) -> None:
    with pytest.raises(AmountOutOfRangeError) as info:
        to_minor_int(value, field="gross_minor")
    assert "gross_minor" in str(info.value)
    assert info.value.code == "amount_out_of_range"


# --- Money -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error"),
    [(12.5, FloatAmountError), (Decimal("12.5"), FloatAmountError), ("12.5", FloatAmountError),
     ("1e3", FloatAmountError), (True, MoneyError)],
)
def test_money_refuses_non_integer_amounts(value: object, error: type) -> None:
    with pytest.raises(error) as info:
        Money(value, "USD")  # type: ignore[arg-type]
    assert "amount_minor" in str(info.value)


def test_money_parses_digit_strings_to_int() -> None:
    m = Money("123456789012345678901", "ETH")  # type: ignore[arg-type]
    assert m.amount_minor == 123456789012345678901
    assert type(m.amount_minor) is int
    assert m == Money(123456789012345678901, "ETH")


@pytest.mark.parametrize("code", ["ZZZ", "usd", "US", "XAU", "XXX", "", None, 840])
def test_unknown_currency_is_refused(code: object) -> None:
    with pytest.raises(UnknownCurrencyError) as info:
        Money(1, code)  # type: ignore[arg-type]
    assert info.value.code == "unknown_currency"
    with pytest.raises(UnknownCurrencyError):
        exponent(code)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "expected"),
    [("USD", 2), ("EUR", 2), ("CNY", 2), ("TWD", 2), ("HKD", 2), ("JPY", 0), ("KRW", 0),
     ("KWD", 3), ("BHD", 3), ("BTC", 8), ("ETH", 18), ("USDT", 6), ("USDC", 6)],
)
def test_exponents_from_money_md(code: str, expected: int) -> None:
    assert exponent(code) == expected


def test_add_and_subtract_keep_the_currency() -> None:
    assert Money(100, "USD") + Money(-30, "USD") == Money(70, "USD")
    assert Money(100, "USD") - Money(130, "USD") == Money(-30, "USD")
    assert -Money(5, "JPY") == Money(-5, "JPY")
    big = Money(10**37, "ETH") + Money(10**37, "ETH")
    assert big.amount_minor == 2 * 10**37


def test_add_refuses_another_currency() -> None:
    with pytest.raises(CurrencyMismatchError) as info:
        Money(100, "USD") + Money(100, "EUR")
    assert info.value.code == "currency_mismatch"
    assert "USD" in str(info.value) and "EUR" in str(info.value)
    with pytest.raises(CurrencyMismatchError):
        Money(100, "USDT") - Money(100, "USDC")


def test_money_refuses_plain_numbers_and_multiplication() -> None:
    with pytest.raises(TypeError):
        Money(100, "USD") + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        Money(100, "USD") * 2  # type: ignore[operator]
    with pytest.raises(TypeError):
        2 * Money(100, "USD")  # type: ignore[operator]


def test_sum_that_leaves_38_digits_is_refused() -> None:
    with pytest.raises(AmountOutOfRangeError):
        Money(MAX_ABS_MINOR, "ETH") + Money(1, "ETH")


def test_money_is_immutable() -> None:
    m = Money(1, "USD")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.amount_minor = 2  # type: ignore[misc]


def test_as_json_sends_amount_as_string() -> None:
    assert Money(123456789012345678901, "ETH").as_json() == {
        "amount_minor": "123456789012345678901", "currency": "ETH"}
    assert Money(-5, "JPY").as_json() == {"amount_minor": "-5", "currency": "JPY"}


@pytest.mark.parametrize(
    ("major", "code", "expected_minor"),
    [
        ("12.50", "USD", 1250),
        ("12.5", "USD", 1250),
        (Decimal("12.34"), "USD", 1234),
        (7, "USD", 700),
        ("1234", "JPY", 1234),
        ("1.234", "KWD", 1234),
        ("-0.005", "KWD", -5),
        ("1.5", "ETH", 1_500_000_000_000_000_000),
        ("0.000000000000000001", "ETH", 1),
        ("0.00000001", "BTC", 1),
        ("0.1", "USDC", 100_000),
        ("1e3", "USD", 100_000),
        ("1.0000", "CLF", 10_000),
        # 29 significant digits: more than the default 28-digit decimal context
        ("12345678901.123456789012345678", "ETH", 12345678901123456789012345678),
        # 38 digits of wei
        ("12345678901234567890.123456789012345678", "ETH",
         12345678901234567890123456789012345678),
    ],
)
def test_from_major(major: object, code: str, expected_minor: int) -> None:
    m = Money.from_major(major, code)  # type: ignore[arg-type]
    assert m == Money(expected_minor, code)


@pytest.mark.parametrize(
    ("major", "code"),
    [("1.5", "JPY"), ("0.001", "USD"), ("1.2345", "KWD"), ("0.0000000000000000001", "ETH"),
     ("abc", "USD"), ("", "USD"), ("NaN", "USD"), ("Infinity", "USD"), ("-Infinity", "USD"),
     (True, "USD"), ("1e40", "USD")],
)
def test_from_major_refuses_what_is_not_a_whole_number_of_minor_units(major: object, code: str) -> None:
    with pytest.raises(MoneyError):
        Money.from_major(major, code)  # type: ignore[arg-type]


def test_from_major_refuses_float() -> None:
    with pytest.raises(FloatAmountError):
        Money.from_major(12.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(UnknownCurrencyError):
        Money.from_major("1", "ZZZ")


@pytest.mark.parametrize(
    ("minor", "code", "major_text"),
    [
        (1250, "USD", "12.50"),
        (-1250, "USD", "-12.50"),
        (5, "JPY", "5"),
        (1234, "KWD", "1.234"),
        (1, "ETH", "0.000000000000000001"),
        (1_500_000_000_000_000_000, "ETH", "1.500000000000000000"),
        (123456789012345678901234567890, "ETH", "123456789012.345678901234567890"),
        (MAX_ABS_MINOR, "USD", "9" * 36 + "." + "99"),
    ],
)
def test_to_major_is_exact(minor: int, code: str, major_text: str) -> None:
    major = Money(minor, code).to_major()
    assert isinstance(major, Decimal)
    assert major == Decimal(major_text)
    assert major.as_tuple().exponent == -exponent(code)  # keeps the currency's decimals


def test_str_shows_major_units() -> None:
    assert str(Money(1250, "USD")) == "12.50 USD"
    assert str(Money(1234, "KWD")) == "1.234 KWD"
    assert str(Money(7, "JPY")) == "7 JPY"


@pytest.mark.parametrize(("minor", "code", "text"), [
    (1, "ETH", "0.000000000000000001 ETH"),  # str(Decimal) would say 1E-18
    (-1, "ETH", "-0.000000000000000001 ETH"),
    (1, "BTC", "0.00000001 BTC"),
    (0, "ETH", "0.000000000000000000 ETH"),
    (0, "USD", "0.00 USD"),
    (-1250, "USD", "-12.50 USD"),
    (10**38 - 1, "ETH", "99999999999999999999.999999999999999999 ETH"),
    (10**38 - 1, "JPY", "9" * 38 + " JPY"),
])
def test_str_is_plain_decimal_notation(minor: int, code: str, text: str) -> None:
    assert str(Money(minor, code)) == text
    assert "E" not in str(Money(minor, code)).split()[0]


_codes = sorted(currency_table())


@given(amount=amounts, code=st.sampled_from(_codes))
def test_to_major_from_major_round_trip(amount: int, code: str) -> None:
    m = Money(amount, code)
    assert m.to_major() == Fraction(amount, 10 ** exponent(code))
    assert Money.from_major(m.to_major(), code) == m
    assert Money.from_major(str(m.to_major()), code) == m


# --- allocate: money.md point 7 --------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "weights", "expected"),
    [
        (100, [1, 1, 1], [34, 33, 33]),
        (-100, [1, 1, 1], [-34, -33, -33]),
        (5, [1, 1], [3, 2]),            # tie: the earlier weight gets the extra unit
        (1, [1, 2], [0, 1]),            # 1/3, 2/3: the larger remainder wins
        (100, [1, 2, 4], [14, 29, 57]),  # 14.29, 28.57, 57.14
        (1001, [7000, 3000], [701, 300]),  # refund over principal/bonus: 700.7, 300.3
        (10, [3, 3, 3, 1], [3, 3, 3, 1]),
        (0, [1, 2], [0, 0]),
        (7, [0, 1, 0], [0, 7, 0]),
        (10**38 - 1, [1, 1], [5 * 10**37, 5 * 10**37 - 1]),
    ],
)
def test_allocate_exact_values(total: int, weights: list[int], expected: list[int]) -> None:
    assert allocate(total, weights) == expected


@pytest.mark.parametrize(
    ("weights", "error", "text"),
    [([], MoneyError, "weight"), ([-1, 2], MoneyError, "negative"), ([0, 0], MoneyError, "zero"),
     ([1.5, 1], FloatAmountError, "weight"), ([True, 1], MoneyError, "weight")],
)
def test_allocate_refuses_bad_weights(weights: list, error: type, text: str) -> None:
    with pytest.raises(error) as info:
        allocate(100, weights)
    assert text in str(info.value)


def test_allocate_refuses_float_total() -> None:
    with pytest.raises(FloatAmountError):
        allocate(100.0, [1, 1])  # type: ignore[arg-type]


weight_lists = st.lists(
    st.one_of(st.integers(0, 10), st.integers(0, 10**12)), min_size=1, max_size=20
).filter(lambda ws: sum(ws) > 0)


@given(total=any_amount, weights=weight_lists)
def test_allocate_parts_sum_to_total_and_stay_within_one_of_the_share(total: int, weights: list[int]) -> None:
    parts = allocate(total, weights)
    assert len(parts) == len(weights)
    assert all(type(p) is int for p in parts)
    assert sum(parts) == total
    weight_sum = sum(weights)
    for part, w in zip(parts, weights, strict=False):
        share = Fraction(total * w, weight_sum)
        assert abs(part - share) < 1
        if w == 0:
            assert part == 0


@given(total=st.integers(0, MAX_ABS_MINOR) | st.integers(0, 1000), weights=weight_lists)
def test_allocate_is_largest_remainder(total: int, weights: list[int]) -> None:
    """The units beyond the floors go to the largest fractional remainders, earlier on ties."""
    parts = allocate(total, weights)
    weight_sum = sum(weights)
    shares = [Fraction(total * w, weight_sum) for w in weights]
    up = [i for i, (p, s) in enumerate(zip(parts, shares, strict=False)) if p > s]
    down = [i for i, (p, s) in enumerate(zip(parts, shares, strict=False)) if p <= s]
    for i in up:
        for j in down:
            fi, fj = shares[i] % 1, shares[j] % 1
            assert fi > fj or (fi == fj and i < j)


@given(total=any_amount, weights=weight_lists)
def test_allocate_is_deterministic(total: int, weights: list[int]) -> None:
    first = allocate(total, weights)
    assert allocate(total, list(weights)) == first
    assert allocate(total, iter(weights)) == first  # any iterable
    assert allocate(total, tuple(weights)) == first


@given(total=any_amount, weights=weight_lists)
def test_allocate_negative_total_mirrors_positive(total: int, weights: list[int]) -> None:
    assert allocate(-total, weights) == [-p for p in allocate(total, weights)]


# --- prorate ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fee", "part", "whole", "expected"),
    [
        (290, 5000, 10000, 145),
        (291, 5000, 10000, 146),   # 145.5 -> 146
        (-291, 5000, 10000, -146),
        (100, 1, 3, 33),           # 33.33
        (100, 2, 3, 67),           # 66.67
        (308641972530864197, 1, 2, 154320986265432099),  # ...098.5 -> ...099
    ],
)
def test_prorate_exact_values(fee: int, part: int, whole: int, expected: int) -> None:
    assert prorate(fee, part, whole) == expected


def test_prorate_refuses_floats_and_zero_whole() -> None:
    with pytest.raises(FloatAmountError):
        prorate(100, 0.5, 1)  # type: ignore[arg-type]
    with pytest.raises(ZeroDivisionError):
        prorate(100, 0, 0)


nonzero_amounts = any_amount.filter(lambda x: x != 0)


@given(fee=any_amount, whole=nonzero_amounts)
def test_prorate_of_the_whole_is_the_fee(fee: int, whole: int) -> None:
    assert prorate(fee, whole, whole) == fee
    assert prorate(fee, 0, whole) == 0


@given(fee=any_amount, part=any_amount, whole=nonzero_amounts)
def test_prorate_is_exact_half_up(fee: int, part: int, whole: int) -> None:
    assert prorate(fee, part, whole) == half_up(Fraction(fee * part, whole))


@settings(max_examples=200)
@given(
    fee=any_amount,
    whole=st.one_of(st.integers(1, 1000), st.integers(1, MAX_ABS_MINOR)),
    data=st.data(),
)
def test_refund_reversals_follow_commission_md_and_a_full_refund_reverses_exactly(
    fee: int, whole: int, data: st.DataObject
) -> None:
    """commission.md: each refund reverses round_half_up(x * refund / captured); the refund
    completing the full refund reverses what is left (so the total is exact); partial reversals
    never add up beyond x (then they stop at it)."""
    if whole > 1:
        cuts = data.draw(st.lists(st.integers(1, whole - 1), unique=True, max_size=15))
    else:
        cuts = []
    boundaries = [0, *sorted(cuts), whole]
    refunds = [b - a for a, b in zip(boundaries, boundaries[1:], strict=False)]
    assert sum(refunds) == whole and all(r > 0 for r in refunds)

    reversals = refund_reversals(fee, refunds, whole)
    assert sum(reversals) == fee
    shares = 0
    for refund, reversal in zip(refunds[:-1], reversals[:-1], strict=True):
        share = half_up(Fraction(fee * refund, whole))  # the spec's formula, by the oracle
        if abs(shares + share) <= abs(fee):  # the cap does not bind
            assert reversal == share
        shares += share
        assert reversal * fee >= 0  # never the wrong sign
    assert abs(sum(reversals[:-1])) <= abs(fee)


@pytest.mark.parametrize(("total", "refunds", "captured", "expected"), [
    (5, [3_000, 3_000, 4_000], 10_000, [2, 2, 1]),  # 1.5 -> 2 twice, then the rest
    (25, [333, 333, 334], 1_000, [8, 8, 9]),
    (75, [999, 1_000], 1_999, [37, 38]),
    (3, [1] * 6, 6, [1, 1, 1, 0, 0, 0]),  # 0.5 -> 1 would reverse 6 of 3: stops at 3
    (-3, [1] * 6, 6, [-1, -1, -1, 0, 0, 0]),  # a negative spread, mirrored
    (5, [3_000], 10_000, [2]),  # a partial refund only
])
def test_refund_reversals_examples(total, refunds, captured, expected) -> None:
    assert refund_reversals(total, refunds, captured) == expected


# --- FX: money.md point 6 --------------------------------------------------------------------


def _rate(base: str, quote: str, rate: object, rate_id: str | None = None) -> FxRate:
    return FxRate(rate_id or f"fx_test_{base}{quote}", base, quote, rate, "ecb",  # type: ignore[arg-type]
                  date(2026, 10, 30))


def test_convert_usd_to_jpy_shifts_exponent_down() -> None:
    rate = _rate("USD", "JPY", Decimal("151.2345678901"), "fx_ecb_2026-10-30_USDJPY")
    # 123.45 USD * 151.2345678901 = 18669.907406032845 JPY -> 18670
    result = convert(Money(12345, "USD"), rate)
    assert result.money == Money(18670, "JPY")
    assert result.rate_id == "fx_ecb_2026-10-30_USDJPY"


def test_convert_half_cases_round_away_from_zero() -> None:
    usdjpy = _rate("USD", "JPY", "150.0000000000")
    assert convert(Money(1, "USD"), usdjpy).money == Money(2, "JPY")    # 1.5 -> 2
    assert convert(Money(-1, "USD"), usdjpy).money == Money(-2, "JPY")  # -1.5 -> -2
    assert convert(Money(3, "USD"), usdjpy).money == Money(5, "JPY")    # 4.5 -> 5
    jpyusd = _rate("JPY", "USD", "0.005000000000")
    assert convert(Money(1, "JPY"), jpyusd).money == Money(1, "USD")    # 0.5 cent -> 1
    assert convert(Money(-1, "JPY"), jpyusd).money == Money(-1, "USD")


def test_convert_jpy_to_usd_shifts_exponent_up() -> None:
    rate = _rate("JPY", "USD", Decimal("0.006612345678"))
    # 10000 JPY * 0.006612345678 = 66.12345678 USD = 6612.345678 cents -> 6612
    assert convert(Money(10000, "JPY"), rate).money == Money(6612, "USD")


def test_convert_usd_to_kwd() -> None:
    rate = _rate("USD", "KWD", "0.3071234567")
    # 100.00 USD * 0.3071234567 = 30.71234567 KWD = 30712.34567 fils -> 30712
    assert convert(Money(10000, "USD"), rate).money == Money(30712, "KWD")


def test_convert_18_decimal_eth_to_usd() -> None:
    rate = _rate("ETH", "USD", Decimal("3456.7890123456"), "fx_chainlink_ETHUSD_1")
    # 1.5 ETH = 1.5e18 wei; 1.5 * 3456.7890123456 = 5185.1835185184 USD -> 518518.35185184 cents
    result = convert(Money(1_500_000_000_000_000_000, "ETH"), rate)
    assert result.money == Money(518518, "USD")
    assert result.rate_id == "fx_chainlink_ETHUSD_1"


def test_convert_eth_amounts_beyond_bigint_and_double() -> None:
    r2000 = _rate("ETH", "USD", "2000.000000000")
    # 123456789012345678901 wei * 2000 / 10^16 = 24691357.8024691357802 cents
    assert convert(Money(123456789012345678901, "ETH"), r2000).money == Money(24691358, "USD")
    r1000 = _rate("ETH", "USD", "1000.000000000")
    # 12345678901234567890123456789 wei * 1000 / 10^16 = 1234567890123456.7890123456789
    assert convert(Money(12345678901234567890123456789, "ETH"), r1000).money == Money(
        1234567890123457, "USD")
    # and back: 1 cent at 0.0005 ETH/USD = 0.000005 ETH = 5 * 10^12 wei
    usdeth = _rate("USD", "ETH", "0.0005000000000")
    assert convert(Money(1, "USD"), usdeth).money == Money(5 * 10**12, "ETH")


def test_convert_does_not_double_round_long_rates() -> None:
    # 1 cent * 0.4999...9 (90 nines) is below one half: it must round to 0, not to 1.
    rate = _rate("USD", "EUR", Decimal("0.4" + "9" * 90))
    assert convert(Money(1, "USD"), rate).money == Money(0, "EUR")
    rate_up = _rate("USD", "EUR", Decimal("0.5" + "0" * 90 + "1"))
    assert convert(Money(-1, "USD"), rate_up).money == Money(-1, "EUR")


def test_convert_refuses_the_wrong_base() -> None:
    rate = _rate("USD", "JPY", "151.2345678901")
    with pytest.raises(CurrencyMismatchError) as info:
        convert(Money(100, "EUR"), rate)
    assert "EUR" in str(info.value)


rates = st.decimals(min_value=Decimal("1e-12"), max_value=Decimal("1e8"), allow_nan=False,
                    allow_infinity=False, places=None).filter(lambda r: r > 0)
long_rates = st.builds(
    lambda digits, exp: Decimal(f"{digits}E{exp}"),
    st.integers(1, 10**100), st.integers(-110, -95),
)


@settings(max_examples=300)
@given(
    amount=st.one_of(small_amounts, st.integers(-10**30, 10**30)),
    rate=st.one_of(rates, long_rates),
    base=st.sampled_from(["USD", "JPY", "KWD", "ETH", "BTC", "USDC", "CLF"]),
    quote=st.sampled_from(["USD", "JPY", "KWD", "ETH", "BTC", "USDC", "CLF"]),
)
def test_convert_is_exact_half_up(amount: int, rate: Decimal, base: str, quote: str) -> None:
    exact = Fraction(amount) * Fraction(rate) * Fraction(10) ** (exponent(quote) - exponent(base))
    expected = half_up(exact)
    assume(abs(expected) <= MAX_ABS_MINOR)
    result = convert(Money(amount, base), _rate(base, quote, rate, "r1"))
    assert result.money == Money(expected, quote)
    assert result.rate_id == "r1"


def test_fx_rate_refuses_floats() -> None:
    with pytest.raises(FloatAmountError) as info:
        _rate("USD", "JPY", 151.2345678901)
    assert "float" in str(info.value)


def test_fx_rate_keeps_decimal_source_and_date() -> None:
    rate = _rate("USD", "JPY", "151.2345678901", "fx_1")
    assert rate.rate == Decimal("151.2345678901")
    assert isinstance(rate.rate, Decimal)
    assert (rate.rate_id, rate.source, rate.as_of) == ("fx_1", "ecb", date(2026, 10, 30))


@pytest.mark.parametrize("bad", ["0", "-1.5", Decimal("0"), "abc", "", "NaN", "Infinity", True, None])
def test_fx_rate_refuses_non_positive_and_non_numbers(bad: object) -> None:
    with pytest.raises(MoneyError):
        _rate("USD", "JPY", bad)


def test_fx_rate_refuses_unknown_currencies() -> None:
    with pytest.raises(UnknownCurrencyError):
        _rate("USD", "XAU", "0.0003000000")
    with pytest.raises(UnknownCurrencyError):
        _rate("ZZZ", "USD", "1.000000000")


def test_convert_with_extreme_rate_exponents_stays_fast_and_exact() -> None:
    tiny = _rate("USD", "EUR", Decimal("1E-999999999"))
    assert convert(Money(MAX_ABS_MINOR, "USD"), tiny).money == Money(0, "EUR")
    huge = _rate("USD", "EUR", Decimal("1E+999999999"))
    assert convert(Money(0, "USD"), huge).money == Money(0, "EUR")
    with pytest.raises(AmountOutOfRangeError):
        convert(Money(1, "USD"), huge)
    # just at the boundary: 10^37 * 10 - 1 ... a rate that lands exactly on 38 nines
    nines = _rate("JPY", "KWD", Decimal("9" * 38 + "E-3"))
    assert convert(Money(1, "JPY"), nines).money == Money(10**38 - 1, "KWD")
    # 0.5 * 10^-k of a minor unit rounds to zero; exactly 0.5 rounds to one
    assert convert(Money(5, "USD"), _rate("USD", "EUR", Decimal("1E-1"))).money == Money(1, "EUR")
    assert convert(Money(5, "USD"), _rate("USD", "EUR", Decimal("1E-2"))).money == Money(0, "EUR")
    assert convert(Money(-5, "USD"), _rate("USD", "EUR", Decimal("1E-1"))).money == Money(-1, "EUR")
