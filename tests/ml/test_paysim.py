"""PaySim-layout import: exact minor units, and malformed files named by line and column."""

from __future__ import annotations

import pytest

from ingest.files.amounts import scale_decimal
from ml.paysim import COLUMNS, PaySimError, load_paysim

HEADER = ",".join(COLUMNS)


def row(amount="181.00", **overrides) -> str:
    values = {"step": "1", "type": "TRANSFER", "amount": amount, "nameOrig": "C1",
              "oldbalanceOrg": "181.0", "newbalanceOrig": "0.0", "nameDest": "C2",
              "oldbalanceDest": "0.0", "newbalanceDest": "0.0", "isFraud": "1",
              "isFlaggedFraud": "0"} | overrides
    return ",".join(values[name] for name in COLUMNS)


def write(tmp_path, *lines: str, header: str = HEADER):
    path = tmp_path / "paysim.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


AMOUNTS = {"181.00": 18100, "181.0": 18100, "0.1": 10, "0.29": 29, ".5": 50, "12.": 1200,
           "7": 700, "0": 0, "0.00": 0, "1.500": 150, "000123.45": 12345,
           # floats would get these wrong: 0.29 * 100 = 28.999999999999996, and 2**53 + 1
           "90071992547409.93": 2**53 + 1, "92233720368547.75": 9223372036854775}


def test_amounts_become_exact_minor_units(tmp_path):
    frame = load_paysim(write(tmp_path, *[row(text) for text in AMOUNTS]))
    assert frame["amount"].to_list() == list(AMOUNTS.values())
    # the same as the ingest parsers' exact string scaling
    assert frame["amount"].to_list() == [scale_decimal(text, 2) for text in AMOUNTS]
    assert frame["amount"].dtype.is_integer() and frame["oldbalanceOrg"][0] == 18100


def test_columns_types_and_order(tmp_path):
    frame = load_paysim(write(tmp_path, row(), row(step="0", isFraud="0")))
    assert frame.columns == ["seq", *COLUMNS]
    assert frame["seq"].to_list() == [0, 1] and frame["step"].to_list() == [1, 0]
    assert frame["isFraud"].to_list() == [1, 0]


@pytest.mark.parametrize(("bad", "message"), [
    (row('"12,5"'), "line 3, column amount: '12,5' is not a non-negative decimal amount"),
    (row("-3.00"), "line 3, column amount: '-3.00' is not a non-negative decimal amount"),
    (row("1e5"), "line 3, column amount: '1e5' is not"),
    (row("1.505"), "line 3, column amount: '1.505' has more than 2 decimals"),
    (row("1" * 17), "line 3, column amount: '" + "1" * 17 + "' is too large"),
    (row(oldbalanceDest="abc"), "line 3, column oldbalanceDest: 'abc'"),
    (row(type="REFUND"), "line 3, column type: 'REFUND' is not one of CASH_IN"),
    (row(step="1.5"), "line 3, column step: '1.5' is not a whole step number"),
    (row(isFraud="yes"), "line 3, column isFraud: 'yes' is not 0 or 1"),
    (row(nameOrig=""), "line 3, column nameOrig: is missing"),
    (row() + ",extra", "line 3: 12 fields, the header has 11"),
])
def test_malformed_rows_are_refused_with_line_and_column(tmp_path, bad, message):
    with pytest.raises(PaySimError, match="paysim.csv") as caught:
        load_paysim(write(tmp_path, row(), bad, row()))
    assert message in str(caught.value)


def test_missing_columns_are_named(tmp_path):
    header = HEADER.replace(",isFlaggedFraud", "")
    path = write(tmp_path, row().rsplit(",", 1)[0], header=header)
    with pytest.raises(PaySimError, match="missing column\\(s\\) isFlaggedFraud"):
        load_paysim(path)
