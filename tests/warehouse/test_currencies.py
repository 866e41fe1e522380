"""warehouse/data/currencies.csv against the ISO 4217 List One XML and money.md point 2.

The XML is parsed here directly (not through scripts/build_currency_table.py), and the expected
counts and examples are those written in shared/data/MANIFEST.md.
"""

from __future__ import annotations

import csv
import importlib.util
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from tests.shared_paths import shared_dir
from warehouse.money import UnknownCurrencyError, currency, currency_table, exponent

REPO = Path(__file__).resolve().parents[2]
SHARED = shared_dir()
ISO_XML = SHARED / "data" / "iso4217" / "iso4217_table.xml"
CSV_PATH = REPO / "warehouse" / "data" / "currencies.csv"

CHAIN_ASSETS = {"BTC": 8, "ETH": 18, "USDT": 6, "USDC": 6}


@pytest.fixture(scope="module")
def iso() -> dict:
    if not ISO_XML.exists():
        pytest.fail(f"ISO 4217 table not found at {ISO_XML}")
    root = ET.parse(ISO_XML).getroot()
    with_units: dict[str, set[int]] = {}
    numeric: dict[str, str] = {}
    all_codes: set[str] = set()
    for entry in root.iter("CcyNtry"):
        code = entry.findtext("Ccy")
        if not code:
            continue  # e.g. ANTARCTICA: no universal currency
        all_codes.add(code)
        units = (entry.findtext("CcyMnrUnts") or "").strip()
        if units.isdigit():
            with_units.setdefault(code, set()).add(int(units))
            numeric[code] = entry.findtext("CcyNbr") or ""
    return {"published": root.get("Pblshd"), "units": with_units, "numeric": numeric,
            "all_codes": all_codes}


@pytest.fixture(scope="module")
def csv_rows() -> list[dict[str, str]]:
    with CSV_PATH.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_iso_xml_is_the_one_the_manifest_describes(iso: dict) -> None:
    # MANIFEST.md: "178 codes by minor units: 2 -> 139, 0 -> 17, 3 -> 7, 4 -> 2, N.A. -> 13"
    assert iso["published"] == "2026-01-01"
    assert len(iso["all_codes"]) == 178
    assert all(len(units) == 1 for units in iso["units"].values()), "a code with two exponents"
    by_exponent = Counter(next(iter(u)) for u in iso["units"].values())
    assert by_exponent == {2: 139, 0: 17, 3: 7, 4: 2}
    assert len(iso["all_codes"] - set(iso["units"])) == 13


def test_table_has_exactly_the_iso_codes_with_numeric_minor_units(iso: dict) -> None:
    table = currency_table()
    fiat = {code: c for code, c in table.items() if c.source.startswith("iso4217")}
    assert set(fiat) == set(iso["units"])
    for code, c in fiat.items():
        assert {c.exponent} == iso["units"][code], code
        assert c.source == f"iso4217:{iso['published']}"


def test_counts_by_exponent_match_the_xml(iso: dict) -> None:
    fiat = [c for c in currency_table().values() if c.source.startswith("iso4217")]
    from_table = Counter(c.exponent for c in fiat)
    from_xml = Counter(next(iter(u)) for u in iso["units"].values())
    assert from_table == from_xml
    assert from_table == {2: 139, 0: 17, 3: 7, 4: 2}


def test_codes_without_minor_units_are_absent(iso: dict) -> None:
    table = currency_table()
    na_codes = iso["all_codes"] - set(iso["units"])
    assert na_codes >= {"XAU", "XAG", "XDR", "XXX", "XTS"}
    assert not na_codes & set(table)


def test_csv_file_is_well_formed_and_is_what_the_table_loads(iso: dict, csv_rows: list) -> None:
    assert list(csv_rows[0]) == ["code", "numeric", "name", "exponent", "source"]
    codes = [r["code"] for r in csv_rows]
    assert len(codes) == len(set(codes)), "duplicate codes"
    assert codes == sorted(codes)
    assert len(csv_rows) == 165 + len(CHAIN_ASSETS)
    table = currency_table()
    assert set(table) == set(codes)
    for row in csv_rows:
        c = table[row["code"]]
        assert (c.code, c.exponent, c.name, c.source) == (
            row["code"], int(row["exponent"]), row["name"], row["source"])
        if row["source"].startswith("iso4217"):
            assert row["numeric"] == iso["numeric"][row["code"]]
            assert len(row["numeric"]) == 3 and row["numeric"].isdigit()


@pytest.mark.parametrize(("code", "decimals"), sorted(CHAIN_ASSETS.items()))
def test_chain_assets_use_token_decimals(code: str, decimals: int) -> None:
    c = currency(code)
    assert c.exponent == decimals
    assert c.source == "chain"
    assert exponent(code) == decimals


def test_only_the_chain_assets_are_chain() -> None:
    chain = {code for code, c in currency_table().items() if c.source == "chain"}
    assert chain == set(CHAIN_ASSETS)


@pytest.mark.parametrize(
    ("code", "expected"),
    [("JPY", 0), ("KRW", 0), ("VND", 0), ("ISK", 0),
     ("KWD", 3), ("BHD", 3), ("TND", 3),
     ("CLF", 4), ("UYW", 4),
     ("USD", 2), ("EUR", 2), ("CNY", 2), ("TWD", 2), ("HKD", 2)],
)
def test_manifest_and_spec_examples(code: str, expected: int) -> None:
    assert exponent(code) == expected
    assert currency(code).source.startswith("iso4217:")


@pytest.mark.parametrize("code", ["XAU", "XAG", "XDR", "XXX"])
def test_codes_without_minor_units_are_unknown(code: str) -> None:
    with pytest.raises(UnknownCurrencyError):
        currency(code)


def test_build_script_regenerates_the_committed_csv(tmp_path: Path, monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location(
        "build_currency_table", REPO / "scripts" / "build_currency_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "currencies.csv"
    monkeypatch.setattr(module, "OUT", out)
    module.main(str(ISO_XML))
    assert out.read_bytes() == CSV_PATH.read_bytes()
