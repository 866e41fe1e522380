"""ECB euro foreign exchange reference rates -> `FxRate` records (1 EUR = rate quote).

Accepted files:

- the daily CSV (`eurofxref.csv`): a header `Date, USD, JPY, ...,` and one row
  `30 October 2026, 1.1172, 175.68, ...,` (spaces after commas, a trailing comma);
- the history CSV (`eurofxref-hist.csv`): ISO dates, newest first, `N/A` where a currency had
  no rate that day (before it joined or after it left, e.g. CYP, SIT, HRK);
- either CSV inside the ECB's zip (`eurofxref.zip`, `eurofxref-hist.zip`), read directly;
- the gesmes XML (`eurofxref-daily.xml`, `-hist-90d.xml`, `-hist.xml`):
  `<Cube><Cube time="YYYY-MM-DD"><Cube currency="USD" rate="1.1790"/>...`.

One FxRate per (date, currency), in file order. `rate` is the text exactly as published
("0.83380" stays "0.83380"; only surrounding whitespace is removed): a positive decimal of digits
with an optional point, at most 16 digits before and 12 after it (what the NUMERIC(28,12) rate
column holds without rounding). Currency codes must be three capital letters; codes that are
not current ISO 4217 (CYP, SIT, ROL, ...) are kept, they were ISO codes on their dates. `N/A` is
the only "no rate" marker: an empty cell under a currency, a malformed rate, a repeated
(date, currency) or a CSV row whose cell count differs from the header's (a cut-off line) refuse
the file, with the date and currency (and line, for CSV) as location.

`cross_rate` derives a rate between two non-EUR currencies through EUR; its rule is documented
there so that dbt computes the same figure.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from lxml import etree

from ingest.files.csv_records import csv_records
from ingest.files.records import FxRate, ParsedFile, ParseError, read_source

FORMAT = "ecb_fx"
KIND = "fx_rates"
BASE = "EUR"
SOURCE = "ecb"
NO_RATE = "N/A"
# = the scale of the warehouse's derived rates (NUMERIC(38,16)): at least 10 significant digits
# (money.md) down to 10^-6, where 12 places gave IDR -> GBP 8 (0.000041124193)
CROSS_RATE_PLACES = 16

_MAX_UNZIPPED = 64 * 1024 * 1024  # the full history is ~2 MB; more is not an ECB file
_RATE = re.compile(r"[0-9]{1,16}(?:\.[0-9]{1,12})?")
_CURRENCY = re.compile(r"[A-Z]{3}")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_LONG_DATE = re.compile(r"([0-9]{1,2}) ([A-Za-z]+) ([0-9]{4})")  # "30 October 2026"
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_MONTH_NUMBER = {name.lower(): number for number, name in enumerate(_MONTHS, start=1)}
_CSV_HEADER = re.compile(rb"Date\s*,\s*[A-Z]{3}\s*(?:,|\r?\n|$)")
_GESMES_NS = "http://www.gesmes.org/xml/2002-08-01"
_ECB_NS = "http://www.ecb.int/vocabulary/2002-08-01/eurofxref"
# What a damaged zip can raise from zipfile/zlib before or while reading the member.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
               IndexError, NotImplementedError, RuntimeError, struct.error, OverflowError)


# --- parse -----------------------------------------------------------------------------------


def sniff(head: bytes, name: str) -> bool:
    if head.startswith(b"PK\x03\x04"):
        return b"eurofxref" in head or "eurofxref" in name.lower()
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        return b"gesmes" in text or (b"eurofxref" in text and b"<Cube" in text)
    return _CSV_HEADER.match(text) is not None


def parse(source: bytes | Path, name: str | None = None) -> ParsedFile:
    data = read_source(source)
    if data.startswith(b"PK"):
        data = _unzip(data)
    body = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not body:
        raise ParseError("empty_file", "the file has no content")
    rates = _parse_xml(data) if body.startswith(b"<") else _parse_csv(_decode(data))
    if not rates:
        raise ParseError("no_rates", "the file holds no rates")
    return ParsedFile(format=FORMAT, kind=KIND, fx_rates=rates)


def _unzip(data: bytes) -> bytes:
    """The one file inside an ECB zip (bounded, so a zip bomb is refused, not expanded)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            if len(members) != 1:
                raise ParseError("zip_members", f"an ECB zip holds one file, this one "
                                 f"{len(members)}")
            if members[0].file_size > _MAX_UNZIPPED:
                raise ParseError("zip_too_large", f"{members[0].filename} is "
                                 f"{members[0].file_size} bytes unzipped")
            with archive.open(members[0]) as member:
                content = member.read(_MAX_UNZIPPED + 1)
    except _ZIP_ERRORS as exc:
        raise ParseError("zip_corrupt", f"{type(exc).__name__}: {exc}", "zip archive") from None
    if len(content) > _MAX_UNZIPPED:
        raise ParseError("zip_too_large", "the zipped file is larger than an ECB file can be")
    return content


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError("encoding", f"not UTF-8: {exc.reason}", f"byte {exc.start}") from None


def _rate(text: str, day: dt.date, currency: str, line: str | None = None) -> str:
    """The published rate text, checked to be a positive decimal that fits the rate column."""
    rate = text.strip()
    if _RATE.fullmatch(rate) and rate.strip("0."):
        return rate
    where = f"{day.isoformat()} {currency}" + (f" ({line})" if line else "")
    raise ParseError("bad_rate", f"rate {text!r:.40} for {currency} on {day} is not a positive "
                     "decimal (at most 16 digits before the point and 12 after)", where)


def _currency(text: str, where: str) -> str:
    code = text.strip()
    if not _CURRENCY.fullmatch(code):
        raise ParseError("bad_currency", f"{text!r:.40} is not a three-letter currency code", where)
    return code


def _date(text: str, where: str) -> dt.date:
    value = text.strip()
    try:
        if _ISO_DATE.fullmatch(value):
            return dt.date.fromisoformat(value)
        match = _LONG_DATE.fullmatch(value)
        if match and match.group(2).lower() in _MONTH_NUMBER:
            day, month, year = match.groups()
            return dt.date(int(year), _MONTH_NUMBER[month.lower()], int(day))
    except ValueError:
        pass
    raise ParseError("bad_date", f"{text!r:.40} is not a date", where)


# --- CSV -------------------------------------------------------------------------------------


def _parse_csv(text: str) -> list[FxRate]:
    rows = _csv_rows(text)
    line, header = next(rows, (1, []))
    currencies = _csv_header(header, line)
    rates: list[FxRate] = []
    seen_dates: set[dt.date] = set()
    for line, row in rows:
        where = f"line {line}"
        if len(row) != len(header):
            raise ParseError("row_length", f"{len(row)} cells, the header has {len(header)}",
                             where)
        day = _date(row[0], where)
        if day in seen_dates:  # unique dates and columns: unique (date, currency)
            raise ParseError("duplicate_rate", f"a second row for {day}", where)
        seen_dates.add(day)
        for currency, cell in zip(currencies, row[1:], strict=False):
            if cell.strip() != NO_RATE:
                rates.append(FxRate(day, BASE, currency, _rate(cell, day, currency, where), SOURCE))
        _check_trailing(row[1 + len(currencies):], where)
    return rates


def _csv_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of the non-blank rows."""
    return ((line, row) for line, row in csv_records(text)
            if any(cell.strip() for cell in row))


def _csv_header(header: list[str], line: int) -> list[str]:
    """The currency columns; the header's trailing empty cells (the ECB's trailing comma) are
    not columns, but rows must have the same number of cells."""
    where = f"line {line}"
    if not header or header[0].strip() != "Date":
        raise ParseError("unknown_shape", "neither gesmes XML nor an ECB CSV (no 'Date' header)",
                         where)
    names = [cell.strip() for cell in header[1:]]
    while names and not names[-1]:
        names.pop()
    currencies = [_currency(name, where) for name in names]
    if len(set(currencies)) != len(currencies):
        raise ParseError("duplicate_currency", "a currency column appears twice", where)
    return currencies


def _check_trailing(cells: list[str], where: str) -> None:
    if any(cell.strip() for cell in cells):
        raise ParseError("row_length", "a value after the last currency column", where)


# --- XML -------------------------------------------------------------------------------------


def _parse_xml(data: bytes) -> list[FxRate]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise ParseError("xml_syntax", str(exc), f"line {exc.lineno}") from None
    if etree.QName(root).localname != "Envelope":
        raise ParseError("unknown_shape", f"root element {root.tag!r:.80} is not a gesmes "
                         "Envelope", "/")
    outer = [child for child in _elements(root) if etree.QName(child).localname == "Cube"]
    if len(outer) != 1:
        raise ParseError("unknown_shape", f"{len(outer)} top-level Cube elements, expected 1",
                         "/Envelope/Cube")
    rates: list[FxRate] = []
    seen: set[tuple[dt.date, str]] = set()
    for index, day_cube in enumerate(_cubes(outer[0], "/Envelope/Cube"), start=1):
        for rate in _read_day(day_cube, f"/Envelope/Cube/Cube[{index}]"):
            key = (rate.rate_date, rate.quote_currency)
            if key in seen:
                raise ParseError("duplicate_rate", f"a second {key[1]} rate for {key[0]}",
                                 f"{key[0].isoformat()} {key[1]}")
            seen.add(key)
            rates.append(rate)
    return rates


def _elements(parent: etree._Element) -> list[etree._Element]:
    return [child for child in parent if isinstance(child.tag, str)]


def _cubes(parent: etree._Element, where: str) -> list[etree._Element]:
    children = _elements(parent)
    for index, child in enumerate(children, start=1):
        if etree.QName(child).localname != "Cube":
            raise ParseError("unexpected_element", f"{child.tag!r:.80} where only Cube elements "
                             "belong", f"{where}/*[{index}]")
    return children


def _read_day(day_cube: etree._Element, where: str) -> Iterator[FxRate]:
    day = _date(day_cube.get("time") or "", where)
    for index, cube in enumerate(_cubes(day_cube, where), start=1):
        currency = _currency(cube.get("currency") or "", f"{day.isoformat()} {where}/Cube[{index}]")
        rate = cube.get("rate")
        if rate is None:
            raise ParseError("missing_rate", f"no rate for {currency} on {day}",
                             f"{day.isoformat()} {currency}")
        yield FxRate(day, BASE, currency, _rate(rate, day, currency), SOURCE)


# --- render ----------------------------------------------------------------------------------


def render(parsed: ParsedFile, fmt: str = "csv") -> bytes:
    """The rates as an ECB file: fmt="csv" writes the daily CSV for one date (the history CSV
    shape, N/A for gaps, for several), fmt="xml" the gesmes XML; `parse` reads either back (the
    CSV of several dates lists each date's currencies in column order)."""
    days = _by_date(parsed.fx_rates)
    if fmt == "csv":
        return _render_daily_csv(days) if len(days) == 1 else _render_hist_csv(days)
    if fmt == "xml":
        return _render_xml(days)
    raise ValueError(f"fmt must be 'csv' or 'xml', got {fmt!r}")


def _by_date(rates: Iterable[FxRate]) -> dict[dt.date, dict[str, str]]:
    days: dict[dt.date, dict[str, str]] = {}
    for rate in rates:
        if rate.base_currency != BASE:
            raise ValueError(f"ECB files are EUR-based; got a {rate.base_currency} rate")
        if not _CURRENCY.fullmatch(rate.quote_currency):
            raise ValueError(f"{rate.quote_currency!r} is not a three-letter currency code")
        text = rate.rate.strip()
        if not _RATE.fullmatch(text) or not text.strip("0."):
            raise ValueError(f"rate {rate.rate!r} is not a positive decimal of at most 16.12 digits")
        day = days.setdefault(rate.rate_date, {})
        if rate.quote_currency in day:
            raise ValueError(f"two {rate.quote_currency} rates for {rate.rate_date}")
        day[rate.quote_currency] = text
    if not days:
        raise ValueError("no rates to render")
    return days


def _long_date(day: dt.date) -> str:
    return f"{day.day:02d} {_MONTHS[day.month - 1]} {day.year}"  # not strftime: locale-free


def _render_daily_csv(days: dict[dt.date, dict[str, str]]) -> bytes:
    ((day, rates),) = days.items()
    header = "".join(f"{code}, " for code in rates)
    values = "".join(f"{rate}, " for rate in rates.values())
    return f"Date, {header}\n{_long_date(day)}, {values}\n".encode()


def _render_hist_csv(days: dict[dt.date, dict[str, str]]) -> bytes:
    currencies = list(dict.fromkeys(code for rates in days.values() for code in rates))
    lines = ["Date," + "".join(f"{code}," for code in currencies)]
    for day, rates in days.items():
        lines.append(day.isoformat() + "," + "".join(f"{rates.get(c, NO_RATE)}," for c in currencies))
    return ("\n".join(lines) + "\n").encode()


def _render_xml(days: dict[dt.date, dict[str, str]]) -> bytes:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<gesmes:Envelope xmlns:gesmes="{_GESMES_NS}" xmlns="{_ECB_NS}">',
        "\t<gesmes:subject>Reference rates</gesmes:subject>",
        "\t<gesmes:Sender>",
        "\t\t<gesmes:name>European Central Bank</gesmes:name>",
        "\t</gesmes:Sender>",
        "\t<Cube>",
    ]
    for day, rates in days.items():
        lines.append(f"\t\t<Cube time='{day.isoformat()}'>")
        lines.extend(f"\t\t\t<Cube currency='{code}' rate='{rate}'/>" for code, rate in rates.items())
        lines.append("\t\t</Cube>")
    lines += ["\t</Cube>", "</gesmes:Envelope>"]
    return ("\n".join(lines) + "\n").encode()


# --- cross rates -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CrossRate:
    """1 unit of the base currency = `rate` units of the quote currency, and how it was derived."""

    rate: str  # rounded, exactly CROSS_RATE_PLACES decimals, e.g. "157.2502685284640172"
    exact: Fraction  # quote_eur_rate / base_eur_rate, unrounded
    base_eur_rate: str  # the ECB rate used: 1 EUR = base_eur_rate base currency ("1" for EUR)
    quote_eur_rate: str  # 1 EUR = quote_eur_rate quote currency


def cross_rate(base_eur_rate: str, quote_eur_rate: str,
               places: int = CROSS_RATE_PLACES) -> CrossRate:
    """Derive base->quote through EUR from two ECB rates of the same date (EUR itself is "1").

    The rule, which dbt must follow to get the same figure:
      exact = quote_eur_rate / base_eur_rate, computed exactly (both are decimal texts);
      rate  = exact rounded half-up (ties away from zero) to 16 decimal places, written with
              exactly 16 decimals in plain notation.
    Exactly in integers, with Q, B the rates' digits and q, b their decimal counts:
      rate * 10^16 = (2 * Q * 10^(16 + b) + B * 10^q) div (2 * B * 10^q)   (integer division)
    which fits a 128-bit integer for ECB rates; never divide through a float or a DOUBLE.
    Example: JPY per USD on 2026-10-30 = 175.68 / 1.1172 -> "157.2502685284640172".
    """
    if not isinstance(places, int) or places < 0:
        raise ValueError(f"places must be a non-negative int, got {places!r}")
    base, quote = _positive_rate(base_eur_rate), _positive_rate(quote_eur_rate)
    exact = Fraction(quote) / Fraction(base)
    scaled = exact * 10**places
    units = (2 * scaled.numerator + scaled.denominator) // (2 * scaled.denominator)
    return CrossRate(_fixed_point(units, places), exact, base_eur_rate.strip(),
                     quote_eur_rate.strip())


def _fixed_point(units: int, places: int) -> str:
    """units * 10^-places as plain decimal text (string work: no context precision limits)."""
    digits = str(units).rjust(places + 1, "0")
    return f"{digits[:-places]}.{digits[-places:]}" if places else digits


def cross_rate_on(rates: Iterable[FxRate], rate_date: dt.date, base: str, quote: str,
                  places: int = CROSS_RATE_PLACES) -> CrossRate:
    """`cross_rate` for two currencies on one date, looked up in ECB rates (KeyError if either
    has no rate that day)."""
    eur_rates = {r.quote_currency: r.rate for r in rates
                 if r.rate_date == rate_date and r.base_currency == BASE}
    eur_rates[BASE] = "1"
    for code in (base, quote):
        if code not in eur_rates:
            raise KeyError(f"no ECB rate for {code} on {rate_date}")
    return cross_rate(eur_rates[base], eur_rates[quote], places)


def _positive_rate(text: str) -> Decimal:
    value = text.strip() if isinstance(text, str) else None
    if value is None or not _RATE.fullmatch(value) or not value.strip("0."):
        raise ValueError(f"an ECB rate must be a positive decimal text, got {text!r}")
    return Decimal(value)
