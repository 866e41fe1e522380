"""The money core: the one place where Clearhouse's money rules live (shared/spec/money.md).

Amounts are integer counts of a currency's minor unit. Floats are refused everywhere; all
intermediate arithmetic is on int or Decimal, and rounding to the minor unit is half-up
(half away from zero).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, Inexact, InvalidOperation, localcontext
from functools import lru_cache
from importlib import resources

BPS_DENOMINATOR = 10_000
# 38 digits: what DECIMAL(38,0)/NUMERIC(38,0) hold in the warehouse and the API's database.
MAX_ABS_MINOR = 10**38 - 1
# Decimal precision for money work: the default context keeps only 28 digits, fewer than an
# amount may have, so every Decimal step on amounts runs with this many digits.
_DECIMAL_PREC = 100


class MoneyError(ValueError):
    """Base of the money errors: a message meant for a person, and a machine code."""

    code = "invalid_money"


class FloatAmountError(MoneyError):
    code = "float_amount"


class AmountTextError(MoneyError):
    """An amount string that is not an integer's plain spelling (" 1250", "+1250", "0012") but
    no decimal either: the code must not call it a float."""

    code = "invalid_amount"


class UnknownCurrencyError(MoneyError):
    code = "unknown_currency"


class CurrencyMismatchError(MoneyError):
    code = "currency_mismatch"


class AmountOutOfRangeError(MoneyError):
    code = "amount_out_of_range"


# --- currencies -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    exponent: int
    name: str
    source: str  # "iso4217:<published>" or "chain"


@lru_cache(maxsize=1)
def currency_table() -> dict[str, Currency]:
    """ISO 4217 (fiat) plus chain assets, from warehouse/data/currencies.csv."""
    text = resources.files("warehouse").joinpath("data/currencies.csv").read_text("utf-8")
    table = {}
    for row in csv.DictReader(text.splitlines()):
        table[row["code"]] = Currency(row["code"], int(row["exponent"]), row["name"], row["source"])
    return table


def currency(code: str) -> Currency:
    if not isinstance(code, str):
        raise UnknownCurrencyError(f"currency must be a code such as 'USD', got {code!r}")
    try:
        return currency_table()[code]
    except KeyError:
        raise UnknownCurrencyError(f"unknown currency {code!r}") from None


def exponent(code: str) -> int:
    return currency(code).exponent


# --- amounts ---------------------------------------------------------------------------------


# The one spelling of an integer amount in text (api.md: "<integer as string>"): digits with an
# optional "-", no "+", no spaces, no leading zeros, no "-0". ASCII digits only.
_INTEGER_TEXT = re.compile(r"0|-?[1-9][0-9]*")


def to_minor_int(value: object, *, field: str = "amount_minor") -> int:
    """Parse an integer minor-unit amount from int or an integer string; refuse anything else.

    Floats, Decimals, bools and strings with a decimal point or exponent are refused, because an
    amount that is not already a whole number of minor units has lost or invented precision.
    A string must be the integer's plain spelling (`0|-?[1-9][0-9]*`): " 1250 ", "+1250", "0012"
    and "-0" are refused too, so that one amount has one text.
    """
    if isinstance(value, bool):
        raise MoneyError(f"{field} must be an integer number of minor units, got a boolean")
    if isinstance(value, int):
        result = value
    elif isinstance(value, float):
        raise FloatAmountError(
            f"{field} must be an integer number of minor units, got the float {value!r}; "
            "send it as a string such as \"1250\""
        )
    elif isinstance(value, Decimal):
        raise FloatAmountError(f"{field} must be an integer number of minor units, not a decimal")
    elif isinstance(value, str):
        if _INTEGER_TEXT.fullmatch(value) is None:
            error = FloatAmountError if any(ch in value for ch in ".eE") else AmountTextError
            raise error(
                f"{field} must be an integer number of minor units as a string of digits "
                f"(optionally after \"-\"), got {value!r}{_why_not_integer_text(value)}"
            )
        if len(value.lstrip("-")) > 38:  # before int(): huge strings are slow or refused there
            raise AmountOutOfRangeError(f"{field} has more than 38 digits")
        result = int(value)
    else:
        raise MoneyError(f"{field} must be an integer or a string of digits, got {type(value).__name__}")
    if abs(result) > MAX_ABS_MINOR:
        raise AmountOutOfRangeError(f"{field} has more than 38 digits")
    return result


def _why_not_integer_text(text: str) -> str:
    """What is wrong with an amount string, for the error message."""
    if text != text.strip():
        return ": no spaces around the digits"
    if any(ch in text for ch in ".eE"):
        return ": a decimal or exponent is not a whole number of minor units"
    body = text.removeprefix("-")
    if text.startswith("+"):
        return ": no \"+\" sign"
    if body.isascii() and body.isdigit() and body:
        return ": zero is \"0\"" if set(body) == {"0"} else ": no leading zeros"
    return ""


@dataclass(frozen=True, slots=True)
class Money:
    """An amount of minor units of one currency. Immutable; arithmetic keeps the currency."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "amount_minor", to_minor_int(self.amount_minor))
        currency(self.currency)  # validates the code

    @classmethod
    def zero(cls, code: str) -> Money:
        return cls(0, code)

    @classmethod
    def from_major(cls, major: str | Decimal | int, code: str) -> Money:
        """From a major-unit amount such as "12.50" (edge use only: input files, display)."""
        if isinstance(major, float):
            raise FloatAmountError("major amounts must be given as str or Decimal, not float")
        if isinstance(major, bool) or not isinstance(major, (str, Decimal, int)):
            raise MoneyError(f"a major amount must be a str, Decimal or int, got {major!r}")
        try:
            parsed = Decimal(major.strip() if isinstance(major, str) else major)
        except InvalidOperation:
            raise MoneyError(f"{major!r} is not a decimal amount") from None
        if not parsed.is_finite():
            raise MoneyError(f"{major!r} is not a finite amount")
        if parsed and parsed.adjusted() + exponent(code) > 38:
            raise AmountOutOfRangeError(f"{major} {code} has more than 38 digits of minor units")
        with localcontext() as ctx:
            ctx.prec = _DECIMAL_PREC
            ctx.traps[Inexact] = True
            try:
                value = parsed.scaleb(exponent(code))
            except Inexact:
                raise MoneyError(f"{major} {code} has too many digits") from None
        if value != value.to_integral_value():
            raise MoneyError(f"{major} {code} has more decimals than the currency's minor unit")
        return cls(int(value), code)

    def to_major(self) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = _DECIMAL_PREC  # exact: amounts have at most 38 digits
            return Decimal(self.amount_minor).scaleb(-exponent(self.currency))

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatchError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    # Ordering within one currency (a limit, a balance check); across currencies it is an error,
    # as adding is: 100 USD is neither more nor less than 1 JPY without a rate.
    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor < other.amount_minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor <= other.amount_minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor > other.amount_minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor >= other.amount_minor

    def __mul__(self, other: object) -> Money:
        raise TypeError("multiply through fee_minor/prorate/convert: money rules round explicitly")

    def as_json(self) -> dict[str, str]:
        return {"amount_minor": str(self.amount_minor), "currency": self.currency}

    def __str__(self) -> str:
        # Plain notation always: "0.000000000000000001 ETH", never str(Decimal)'s "1E-18 ETH".
        return f"{format(self.to_major(), 'f')} {self.currency}"


# --- rounding and rates ---------------------------------------------------------------------


def div_round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half away from zero, exactly (integers only)."""
    if not isinstance(numerator, int) or not isinstance(denominator, int):
        raise FloatAmountError("div_round_half_up takes integers only")
    if denominator == 0:
        raise ZeroDivisionError("division by zero")
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    quotient = (abs(numerator) * 2 + denominator) // (2 * denominator)
    return quotient if numerator >= 0 else -quotient


def round_half_up(value: Decimal) -> int:
    """A Decimal rounded to a whole number of minor units, half away from zero."""
    if isinstance(value, float):
        raise FloatAmountError("round_half_up takes a Decimal, not a float")
    value = Decimal(value)
    if not value.is_finite():
        raise MoneyError(f"cannot round {value} to minor units")
    with localcontext() as ctx:
        # quantize fails when the result needs more digits than the context holds (28 by default)
        ctx.prec = max(_DECIMAL_PREC, value.adjusted() + 2)
        return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def fee_minor(amount_minor: int, rate_bps: int, fixed_minor: int = 0) -> int:
    """fee = round_half_up(amount * rate_bps / 10000) + fixed (money.md point 5)."""
    amount_minor = to_minor_int(amount_minor)
    if not isinstance(rate_bps, int) or isinstance(rate_bps, bool):
        raise MoneyError("rate_bps must be an integer number of basis points")
    return div_round_half_up(amount_minor * rate_bps, BPS_DENOMINATOR) + to_minor_int(
        fixed_minor, field="fixed_minor"
    )


def prorate(amount_minor: int, part_minor: int, whole_minor: int) -> int:
    """round_half_up(amount * part / whole): e.g. the fee reversed by a partial refund."""
    return div_round_half_up(to_minor_int(amount_minor) * to_minor_int(part_minor),
                             to_minor_int(whole_minor))


def refund_reversals(total_minor: int, refunds_minor: Iterable[int],
                     captured_minor: int) -> list[int]:
    """What each of a payment's refunds, in order, reverses of `total_minor` - a fee or a
    commission the capture earned: round_half_up(total * refund / captured), commission.md's
    formula on the refund's own amount; the refund that completes the full refund reverses what
    is left, so a full refund reverses exactly; and partial refunds never reverse more than the
    total (each rounding up, six refunds of a sixth of a 3 would take back 6: the running total
    stops at the total). dbt's `refund_reversal` macro is the same rule."""
    total_minor, captured_minor = to_minor_int(total_minor), to_minor_int(captured_minor)

    def capped(running: int) -> int:
        return min(running, total_minor) if total_minor >= 0 else max(running, total_minor)

    out, shares_before, refunded = [], 0, 0
    for refund in refunds_minor:
        share = prorate(total_minor, refund, captured_minor)
        refunded += to_minor_int(refund)
        if refunded == captured_minor:
            out.append(total_minor - capped(shares_before))
        else:
            out.append(capped(shares_before + share) - capped(shares_before))
        shares_before += share
    return out


def allocate(total_minor: int, weights: Iterable[int]) -> list[int]:
    """Split total over weights by largest remainder; the parts always sum to total exactly.

    Ties in the remainder go to the earlier weight, so the split is deterministic. Works for
    negative totals (the split of -total is the negation of the split of total).
    """
    total_minor = to_minor_int(total_minor)
    weights = [to_minor_int(w, field="weight") for w in weights]
    if not weights:
        raise MoneyError("allocate needs at least one weight")
    if any(w < 0 for w in weights):
        raise MoneyError("allocation weights must not be negative")
    weight_sum = sum(weights)
    if weight_sum == 0:
        raise MoneyError("allocation weights must not all be zero")
    sign = -1 if total_minor < 0 else 1
    magnitude = abs(total_minor)
    floors = [magnitude * w // weight_sum for w in weights]
    remainders = [magnitude * w % weight_sum for w in weights]
    short = magnitude - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:short]:
        floors[i] += 1
    parts = [sign * p for p in floors]
    assert sum(parts) == total_minor, "largest-remainder split must sum to the total"
    return parts


# --- FX --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FxRate:
    """Units of quote currency per 1 unit of base currency, with where it came from."""

    rate_id: str
    base: str
    quote: str
    rate: Decimal
    source: str
    as_of: date

    def __post_init__(self) -> None:
        if isinstance(self.rate, float):
            raise FloatAmountError("an FX rate must be a Decimal or a string, never a float")
        if isinstance(self.rate, bool) or not isinstance(self.rate, (str, Decimal, int)):
            raise MoneyError(f"an FX rate must be a Decimal or a string, got {self.rate!r}")
        try:
            rate = Decimal(self.rate.strip() if isinstance(self.rate, str) else self.rate)
        except InvalidOperation:
            raise MoneyError(f"an FX rate must be a number, got {self.rate!r}") from None
        if not rate.is_finite() or rate <= 0:
            raise MoneyError("an FX rate must be positive")
        object.__setattr__(self, "rate", rate)
        currency(self.base)
        currency(self.quote)


@dataclass(frozen=True, slots=True)
class Converted:
    money: Money
    rate_id: str


def convert(money: Money, rate: FxRate) -> Converted:
    """converted = round_half_up(amount * rate * 10^(exp_quote - exp_base)), keeping the rate id."""
    if money.currency != rate.base:
        raise CurrencyMismatchError(f"rate {rate.rate_id} converts {rate.base}, not {money.currency}")
    shift = exponent(rate.quote) - exponent(rate.base)
    # Exact for any rate: rate = coefficient * 10^rate_exp, so the converted amount is the integer
    # fraction amount * coefficient * 10^(rate_exp + shift), rounded once, half away from zero.
    _, digits, rate_exp = rate.rate.as_tuple()
    assert isinstance(rate_exp, int)  # FxRate refuses NaN and infinities
    coefficient = int("".join(map(str, digits)))
    scale = rate_exp + shift
    product = money.amount_minor * coefficient
    # Settle extreme rate exponents before building 10^|scale| (a Decimal may carry any exponent).
    if product == 0 or -scale > len(str(abs(product))) + 1:  # below half a minor unit
        return Converted(Money(0, rate.quote), rate.rate_id)
    if scale > 40:  # at least 10^41 minor units
        raise AmountOutOfRangeError(f"{money} at rate {rate.rate_id} has more than 38 digits")
    numerator = product * 10 ** max(scale, 0)
    return Converted(Money(div_round_half_up(numerator, 10 ** max(-scale, 0)), rate.quote),
                     rate.rate_id)


# --- stored-value wallets ---------------------------------------------------------------------


def allocate_increment(weights: Iterable[int], done_minor: int, amount_minor: int) -> list[int]:
    """The parts of `amount` when `done` of sum(weights) was already split the same way.

    Cumulative largest remainder: part_k = allocate(done + amount)[k] - allocate(done)[k], so the
    increments of a sequence of partial amounts sum to exactly allocate(total), and a sequence
    that reaches sum(weights) gives back exactly the weights (a wallet spend refunded in parts
    restores its original principal and bonus). Parts are never negative for two weights.
    """
    weights = [to_minor_int(w, field="weight") for w in weights]
    done_minor, amount_minor = to_minor_int(done_minor), to_minor_int(amount_minor)
    if done_minor < 0 or amount_minor < 0:
        raise MoneyError("allocate_increment takes non-negative amounts")
    if done_minor + amount_minor > sum(weights):
        raise MoneyError("allocate_increment: more than the whole would be split")
    after = allocate(done_minor + amount_minor, weights)
    before = allocate(done_minor, weights)
    return [a - b for a, b in zip(after, before, strict=True)]


@dataclass(frozen=True, slots=True)
class Clawback:
    """What one refund of a wallet top-up does (all amounts >= 0).

    principal_out: the principal leaving the wallet (the refund amount r).
    bonus_clawed: the bonus taken back from the wallet.
    shortfall: bonus that was due but already spent; kept from the cash instead.
    cash: what the customer gets back through the channel = principal_out - shortfall.
    """

    principal_out: int
    bonus_due: int
    bonus_clawed: int
    shortfall: int
    cash: int


def topup_clawback(*, topup_principal: int, topup_bonus: int, refunded_before: int,
                   clawed_before: int, refund: int, wallet_bonus: int) -> Clawback:
    """Claw back a top-up's bonus pro rata to the principal refunded, cumulatively.

    bonus_due = prorate(topup_bonus, refunded_before + refund, topup_principal) - clawed_before
    bonus_clawed = min(bonus_due, wallet_bonus); shortfall = bonus_due - bonus_clawed (the bonus
    was spent), capped at the refund so the cash never goes negative; cash = refund - shortfall.
    `clawed_before` counts what earlier refunds settled (bonus clawed + shortfall), so an
    uncollected part carries over to the next refund, and a full refund with the bonus unspent
    claws back exactly the whole bonus.
    """
    topup_principal, topup_bonus = to_minor_int(topup_principal), to_minor_int(topup_bonus)
    refunded_before, clawed_before = to_minor_int(refunded_before), to_minor_int(clawed_before)
    refund, wallet_bonus = to_minor_int(refund), to_minor_int(wallet_bonus)
    if min(topup_principal - 1, topup_bonus, refunded_before, clawed_before, refund,
           wallet_bonus) < 0:
        raise MoneyError("topup_clawback takes non-negative amounts and a positive principal")
    if refunded_before + refund > topup_principal:
        raise MoneyError("a top-up cannot be refunded beyond its principal")
    target = prorate(topup_bonus, refunded_before + refund, topup_principal)
    bonus_due = max(target - clawed_before, 0)
    bonus_clawed = min(bonus_due, wallet_bonus)
    shortfall = min(bonus_due - bonus_clawed, refund)
    return Clawback(principal_out=refund, bonus_due=bonus_due, bonus_clawed=bonus_clawed,
                    shortfall=shortfall, cash=refund - shortfall)
