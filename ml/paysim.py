"""Import labelled transactions in the PaySim column layout.

PaySim (Lopez-Rojas et al., "PaySim: a financial mobile money simulator for fraud detection",
2016; the public file is Kaggle's `PS_20174392719_1491204439457_log.csv`) writes one
transaction per line with a header:

    step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest,isFraud,isFlaggedFraud

- `step`: the hour of the simulation (an integer >= 0; 1 step = 1 hour).
- `type`: CASH_IN, CASH_OUT, DEBIT, PAYMENT or TRANSFER.
- `amount` and the four balances: decimal currency units such as `181.0` or `9839.64`.
- `nameOrig`, `nameDest`: account ids (non-empty text).
- `isFraud`, `isFlaggedFraud`: 0 or 1 (`isFlaggedFraud` is PaySim's own rule: a TRANSFER over
  200,000).

`load_paysim(path)` returns a polars frame with the same column names, money as exact integer
minor units (`exponent` decimals, 2 by default: `181.00` -> 18100, `0.1` -> 10), the labels as
Int8, and `seq`: the event's position in the file, which orders events within one step (PaySim
gives no finer time). Every column is read as text and money is parsed as digits, never through
a float, so no amount gains or loses a minor unit. Decimals beyond the exponent are accepted only
when they are zeros (`1.500` -> 150); `1.505` is refused. Extra columns are ignored.

A malformed file raises `PaySimError` naming the file, the line (the header is line 1) and the
column, e.g. `data.csv line 7, column amount: '12,5' is not a decimal amount`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl

COLUMNS = ("step", "type", "amount", "nameOrig", "oldbalanceOrg", "newbalanceOrig", "nameDest",
           "oldbalanceDest", "newbalanceDest", "isFraud", "isFlaggedFraud")
MONEY_COLUMNS = ("amount", "oldbalanceOrg", "newbalanceOrig", "oldbalanceDest", "newbalanceDest")
FLAG_COLUMNS = ("isFraud", "isFlaggedFraud")
TYPES = ("CASH_IN", "CASH_OUT", "DEBIT", "PAYMENT", "TRANSFER")

# A non-negative decimal: digits, optionally a point and more digits ("12", "12.", ".5", "12.50").
_DECIMAL = r"^(?:\d+(?:\.\d*)?|\.\d+)$"


class PaySimError(ValueError):
    """A PaySim-layout file that cannot be imported; the message names the line and column."""


def load_paysim(path: str | Path, *, exponent: int = 2) -> pl.DataFrame:
    path = Path(path)
    try:
        raw = pl.read_csv(path, infer_schema=False)  # every column as text: money stays exact
    except pl.exceptions.PolarsError as exc:
        raise PaySimError(_locate_shape_error(path) or f"{path}: not a readable CSV file ({exc})"
                          ) from None
    missing = [name for name in COLUMNS if name not in raw.columns]
    if missing:
        raise PaySimError(f"{path}: missing column(s) {', '.join(missing)} "
                          f"(the PaySim layout is {','.join(COLUMNS)})")
    raw = raw.select(COLUMNS).with_row_index("seq")
    for name in COLUMNS:
        _check(path, raw, name, exponent)
    return raw.select(
        pl.col("seq").cast(pl.Int64),
        pl.col("step").cast(pl.Int64),
        pl.col("type"),
        *[_minor_units(name, exponent) for name in MONEY_COLUMNS],
        pl.col("nameOrig"), pl.col("nameDest"),
        *[pl.col(name).cast(pl.Int8) for name in FLAG_COLUMNS],
    ).select("seq", *COLUMNS)


def _check(path: Path, raw: pl.DataFrame, name: str, exponent: int) -> None:
    """Raise PaySimError for the first row whose `name` value is invalid."""
    value = pl.col(name)
    if name in MONEY_COLUMNS:
        _first_bad(path, raw, name, ~value.str.contains(_DECIMAL),
                   "is not a non-negative decimal amount")
        # Digits past the minor unit would be rounded away: refuse them unless they are zeros.
        extra = value.str.extract(r"\.(\d*)$", 1).fill_null("").str.slice(exponent)
        _first_bad(path, raw, name, extra.str.contains("[1-9]"),
                   f"has more than {exponent} decimals")
        # Int64 holds 18 digits of minor units.
        whole = value.str.extract(r"^0*(\d*)", 1).str.len_chars()
        _first_bad(path, raw, name, whole + exponent > 18, "is too large")
        return
    if name == "step":
        bad, why = ~value.str.contains(r"^\d{1,9}$"), "is not a whole step number >= 0"
    elif name == "type":
        bad, why = ~value.is_in(TYPES), f"is not one of {', '.join(TYPES)}"
    elif name in FLAG_COLUMNS:
        bad, why = ~value.is_in(["0", "1"]), "is not 0 or 1"
    else:
        bad, why = value.str.strip_chars().str.len_chars() == 0, "is empty"
    _first_bad(path, raw, name, bad, why)


def _first_bad(path: Path, raw: pl.DataFrame, name: str, bad: pl.Expr, why: str) -> None:
    first = raw.filter(bad.fill_null(True)).head(1)
    if first.height:
        seq, shown = first["seq"][0], first[name][0]
        what = "is missing" if shown is None else f"{shown!r} {why}"
        raise PaySimError(f"{path} line {seq + 2}, column {name}: {what}")


def _minor_units(name: str, exponent: int) -> pl.Expr:
    """Decimal text -> integer minor units by string work: whole digits followed by the fraction
    padded to `exponent` digits. Fraction digits past the exponent are zeros (_check refused
    anything else) and are cut."""
    whole = pl.col(name).str.extract(r"^(\d*)", 1)
    frac = pl.col(name).str.extract(r"\.(\d*)$", 1).fill_null("")
    digits = pl.concat_str(whole, frac.str.slice(0, exponent).str.pad_end(exponent, "0"))
    return digits.str.strip_chars_start("0").replace("", "0").cast(pl.Int64).alias(name)


def _locate_shape_error(path: Path) -> str | None:
    """polars does not say which line has the wrong number of fields; find it with csv."""
    with path.open(newline="") as fh:
        rows = csv.reader(fh)
        header = next(rows, None)
        if header is None:
            return f"{path}: empty file"
        for number, row in enumerate(rows, start=2):
            if len(row) != len(header):
                return f"{path} line {number}: {len(row)} fields, the header has {len(header)}"
    return None
