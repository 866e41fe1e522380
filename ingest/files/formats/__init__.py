"""One module per file format family; each follows the contract in `ingest.files.records`.

`SOURCES` maps a landing folder (`HOME/landing/<source>/`) to the formats expected there; files in
any other folder are matched against every format by `sniff`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

FORMAT_MODULES = ("camt", "mt940", "bai2", "psp_csv", "wechat", "alipay", "chain", "ecb",
                  "fraud_reports")

SOURCES: dict[str, tuple[str, ...]] = {
    "bank": ("camt", "mt940", "bai2"),
    "camt": ("camt",),
    "mt940": ("mt940",),
    "bai2": ("bai2",),
    "psp": ("psp_csv", "wechat", "alipay"),
    "wechat": ("wechat",),
    "alipay": ("alipay",),
    "chain": ("chain",),
    "fx": ("ecb",),
    "fraud_reports": ("fraud_reports",),
}


def module(name: str) -> ModuleType:
    return importlib.import_module(f"ingest.files.formats.{name}")


def candidates(source: str) -> tuple[str, ...]:
    return SOURCES.get(source, FORMAT_MODULES)

# The landing folder a file of each format goes to when an operator hands it in.
HOME_SOURCE = {"camt": "bank", "mt940": "bank", "bai2": "bank", "psp_csv": "psp",
               "wechat": "psp", "alipay": "psp", "chain": "chain", "ecb": "fx",
               "fraud_reports": "fraud_reports"}


def sniff_source(head: bytes, name: str) -> str:
    """The landing folder for a file, by the first format that recognises it ('inbox' if none:
    the loader then quarantines it as unknown_format)."""
    from ingest.files.records import as_utf8

    head = as_utf8(head, head=True)
    for fmt in FORMAT_MODULES:
        if module(fmt).sniff(head, name):
            return HOME_SOURCE[fmt]
    return "inbox"
