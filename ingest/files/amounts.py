"""Decimal text from a file -> integer minor units, exactly and fast (string work, no float).

Every parser uses `to_minor`; it is the ingest side of the money core (`warehouse.money`), which
owns the exponents. It accepts what statement formats write: "1234.56", "-0.01", "+8.85",
"1234,56" (MT940 decimal comma, pass sep=","), ".5" and "12." . Digits beyond the currency's
exponent are accepted only when they are zeros ("18.1500" EUR -> 1815); anything else is an
`AmountError` - the parser turns it into a ParseError with the location.
"""

from __future__ import annotations

from functools import lru_cache

from warehouse.money import UnknownCurrencyError, exponent


class AmountError(ValueError):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@lru_cache(maxsize=512)
def currency_exponent(code: str) -> int:
    """The exponent of an ISO 4217 / chain asset code, or AmountError('unknown_currency')."""
    try:
        return exponent(code)
    except UnknownCurrencyError:
        raise AmountError("unknown_currency", f"unknown currency {code!r}") from None


_DIGITS = frozenset("0123456789")


def to_minor(text: str, currency: str, *, sep: str = ".") -> int:
    """Exact minor units of a decimal amount written in `currency`'s major unit."""
    return scale_decimal(text, currency_exponent(currency), sep=sep, what=currency)


def scale_decimal(text: str, exp: int, *, sep: str = ".", what: str = "amount") -> int:
    s = text.strip()
    if not s:
        raise AmountError("bad_amount", "empty amount")
    sign = 1
    if s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    whole, dot, frac = s.partition(sep)
    if not whole and not frac:
        raise AmountError("bad_amount", f"{text!r} is not a decimal amount")
    if not _DIGITS.issuperset(whole) or not _DIGITS.issuperset(frac):
        raise AmountError("bad_amount", f"{text!r} is not a decimal amount")
    if len(frac) > exp:
        extra = frac[exp:]
        if extra.strip("0"):
            raise AmountError(
                "amount_precision",
                f"{text!r} has more decimals than {what} allows ({exp})",
            )
        frac = frac[:exp]
    if len(whole) + exp > 38:
        raise AmountError("amount_out_of_range", f"{text!r} has more than 38 digits")
    return sign * int((whole or "0") + frac.ljust(exp, "0"))
