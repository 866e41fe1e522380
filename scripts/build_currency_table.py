"""Regenerate warehouse/data/currencies.csv from the ISO 4217 List One XML plus the chain assets.

Usage: python scripts/build_currency_table.py ../shared/data/iso4217/iso4217_table.xml
The CSV is committed: the money core reads it at run time and never needs the XML.
"""

from __future__ import annotations

import csv
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# Chain assets: exponent = the token's decimals (money.md point 2).
CHAIN_ASSETS = [
    ("BTC", "", "Bitcoin", 8),
    ("ETH", "", "Ether", 18),
    ("USDT", "", "Tether USD", 6),
    ("USDC", "", "USD Coin", 6),
]

OUT = Path(__file__).resolve().parents[1] / "warehouse" / "data" / "currencies.csv"


def main(xml_path: str) -> None:
    root = ET.parse(xml_path).getroot()
    published = root.get("Pblshd", "")
    rows: dict[str, tuple[str, str, str, int, str]] = {}
    for entry in root.iter("CcyNtry"):
        code = entry.findtext("Ccy")
        units = entry.findtext("CcyMnrUnts")
        if not code or units is None or not units.isdigit():
            continue  # entries without a currency, or N.A. minor units (gold, SDR...)
        rows[code] = (code, entry.findtext("CcyNbr") or "", entry.findtext("CcyNm") or "",
                      int(units), f"iso4217:{published}")
    for code, number, name, exponent in CHAIN_ASSETS:
        rows[code] = (code, number, name, exponent, "chain")
    with OUT.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["code", "numeric", "name", "exponent", "source"])
        for code in sorted(rows):
            writer.writerow(rows[code])
    print(f"wrote {len(rows)} currencies to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/iso4217/iso4217_table.xml")
