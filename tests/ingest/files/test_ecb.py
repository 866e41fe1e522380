"""ECB euro reference rates: the real daily/history CSV, zip and gesmes XML, refusals, render,
cross rates."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.files.formats import ecb
from ingest.files.records import FxRate, ParsedFile, ParseError
from tests.ingest.files.mutations import damaged as _damaged

DAY = dt.date(2026, 10, 30)
XML_DAY = dt.date(2018, 6, 11)


@pytest.fixture(scope="module")
def fx(shared_data: Path) -> Path:
    return shared_data / "fx"


@pytest.fixture(scope="module")
def hist(fx) -> ParsedFile:
    return ecb.parse(fx / "eurofxref-hist.zip", "eurofxref-hist.zip")


@pytest.fixture(scope="module")
def hist_by_key(hist) -> dict[tuple[dt.date, str], str]:
    return {(r.rate_date, r.quote_currency): r.rate for r in hist.fx_rates}


def _rates(parsed: ParsedFile, day: dt.date) -> dict[str, str]:
    return {r.quote_currency: r.rate for r in parsed.fx_rates if r.rate_date == day}


def _refused(data: bytes) -> ParseError:
    with pytest.raises(ParseError) as err:
        ecb.parse(data)
    return err.value


# --- the real files ----------------------------------------------------------------------------


def test_daily_csv(fx):
    parsed = ecb.parse(fx / "eurofxref.csv", "eurofxref.csv")
    assert (parsed.format, parsed.kind, len(parsed.fx_rates)) == ("ecb_fx", "fx_rates", 29)
    rates = _rates(parsed, DAY)
    assert (rates["USD"], rates["JPY"], rates["IDR"]) == ("1.1172", "175.68", "20275.17")
    assert rates["GBP"] == "0.83380"  # the text as published, trailing zero and all
    assert parsed.fx_rates[0] == FxRate(DAY, "EUR", "USD", "1.1172", "ecb")
    assert parsed.warnings == []


def test_history_zip(hist):
    dates = sorted({r.rate_date for r in hist.fx_rates})
    assert (len(dates), dates[0], dates[-1]) == (7126, dt.date(1999, 1, 4), DAY)
    assert (_rates(hist, DAY)["USD"], _rates(hist, DAY)["JPY"]) == ("1.1172", "175.68")
    first_day = _rates(hist, dt.date(1999, 1, 4))
    # Currencies that later joined the euro are kept with their ISO codes of the time.
    assert (first_day["CYP"], first_day["SIT"], first_day["TRL"]) == ("0.58231", "189.045",
                                                                      "372274")
    assert "BGN" not in first_day  # N/A that day
    assert all(r.rate != "N/A" and r.base_currency == "EUR" and r.source == "ecb"
               for r in hist.fx_rates)
    assert len({(r.rate_date, r.quote_currency) for r in hist.fx_rates}) == len(hist.fx_rates)


def test_history_csv_outside_the_zip_is_the_same(fx, hist):
    with zipfile.ZipFile(fx / "eurofxref-hist.zip") as archive:
        text = archive.read("eurofxref-hist.csv")
    assert ecb.parse(text).fx_rates == hist.fx_rates


def test_daily_csv_equals_the_history(fx, hist_by_key):
    daily = ecb.parse(fx / "eurofxref.csv")
    assert all(Decimal(r.rate) == Decimal(hist_by_key[(r.rate_date, r.quote_currency)])
               for r in daily.fx_rates)


def test_daily_xml(fx):
    parsed = ecb.parse(fx / "eu_central_bank_exchange_rates.xml")
    rates = _rates(parsed, XML_DAY)
    assert (len(parsed.fx_rates), len(rates), rates["USD"]) == (32, 32, "1.1790")


def test_90_day_xml(fx):
    parsed = ecb.parse(fx / "eu_central_bank_exchange_rates_90_day.xml")
    dates = sorted({r.rate_date for r in parsed.fx_rates})
    assert (len(dates), dates[0], dates[-1]) == (61, dt.date(2018, 3, 14), XML_DAY)
    assert len(parsed.fx_rates) == 1952
    assert _rates(parsed, XML_DAY)["USD"] == "1.179"  # the 90-day file drops trailing zeros


@pytest.mark.parametrize(("name", "cells"), [("eu_central_bank_exchange_rates_90_day.xml", 1952),
                                             ("eu_central_bank_exchange_rates.xml", 32)])
def test_every_xml_cell_equals_the_history_csv(fx, hist_by_key, name, cells):
    parsed = ecb.parse(fx / name)
    assert len(parsed.fx_rates) == cells
    mismatches = [r for r in parsed.fx_rates
                  if Decimal(r.rate) != Decimal(hist_by_key[(r.rate_date, r.quote_currency)])]
    assert mismatches == []


@pytest.mark.parametrize("name", ["eurofxref.csv", "eurofxref-hist.zip",
                                  "eu_central_bank_exchange_rates.xml",
                                  "eu_central_bank_exchange_rates_90_day.xml"])
def test_sniff_recognises_the_samples(fx, name):
    assert ecb.sniff((fx / name).read_bytes()[:4096], name)


@pytest.mark.parametrize(("head", "name"), [
    (b'{"jsonrpc": "2.0", "result": []}', "x.json"),
    (b'<?xml version="1.0"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">',
     "camt.xml"),
    (b"Date,Amount,Currency\n", "bank.csv"),
    (b"PK\x03\x04" + b"\x00" * 26 + b"statement.csv", "statement.zip"),
])
def test_sniff_refuses_other_files(head, name):
    assert not ecb.sniff(head, name)


# --- refusals ----------------------------------------------------------------------------------

CSV_HEAD = b"Date,USD,JPY,\n"


@pytest.mark.parametrize(("row", "reason", "location"), [
    (b"2026-10-30,1.1x72,175.68,\n", "bad_rate", "2026-10-30 USD (line 2)"),
    (b"2026-10-30,-1.1172,175.68,\n", "bad_rate", "2026-10-30 USD (line 2)"),
    (b"2026-10-30,0.0000,175.68,\n", "bad_rate", "2026-10-30 USD (line 2)"),
    (b"2026-10-30,1.1172,1.7568e2,\n", "bad_rate", "2026-10-30 JPY (line 2)"),
    (b"2026-10-30,1.1172,,\n", "bad_rate", "2026-10-30 JPY (line 2)"),
    (b"2026-10-30,1.1172,0.1234567890123,\n", "bad_rate", "2026-10-30 JPY (line 2)"),
    (b"2026-10-30,1.1172,175.68\n", "row_length", "line 2"),  # cut off before the last comma
    (b"2026-10-30,1.1172,\n", "row_length", "line 2"),
    (b"2026-10-30,1.1172,175.68,9,\n", "row_length", "line 2"),
    (b"2026-13-30,1.1172,175.68,\n", "bad_date", "line 2"),
    (b"30 Octember 2026,1.1172,175.68,\n", "bad_date", "line 2"),
    (b"2026-10-30,1.1172,175.68,\n2026-10-30,1.1,175,\n", "duplicate_rate", "line 3"),
    (b'2026-10-30,"1.1172,175.68,\n', "csv_syntax", "line 2"),
])
def test_malformed_csv_rows_are_refused(row, reason, location):
    err = _refused(CSV_HEAD + row)
    assert (err.reason, err.location) == (reason, location)


def test_rates_keep_their_text_and_tolerate_whitespace():
    parsed = ecb.parse(b"Date , USD ,JPY,\r\n 30 October 2026 ,  1.10 ,N/A,\r\n\r\n")
    assert parsed.fx_rates == [FxRate(DAY, "EUR", "USD", "1.10", "ecb")]


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty_file"),
    (b"Date,USD,USD,\n2026-10-30,1,2,\n", "duplicate_currency"),
    (b"Date,usd,\n2026-10-30,1,\n", "bad_currency"),
    (b"Date,EURO,\n2026-10-30,1,\n", "bad_currency"),
    (b"Date,USD,\n2026-10-30,N/A,\n", "no_rates"),
    (b"Date,USD,\n", "no_rates"),
    (b"Currency,Rate\nUSD,1.1\n", "unknown_shape"),
    (b"\xff\xfeD\x00a\x00", "encoding"),
    (b"PK\x03\x04garbage", "zip_corrupt"),
])
def test_malformed_files_are_refused(data, reason):
    assert _refused(data).reason == reason


def _zip(**members: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def test_zips_hold_exactly_one_rates_file():
    daily = b"Date, USD, \n30 October 2026, 1.1172, \n"
    assert ecb.parse(_zip(**{"eurofxref.csv": daily})).fx_rates[0].rate == "1.1172"
    assert _refused(_zip(a=daily, b=daily)).reason == "zip_members"
    assert _refused(_zip()).reason == "zip_members"
    damaged = bytearray(_zip(**{"eurofxref.csv": daily * 50}))
    damaged[60] ^= 0xFF  # inside the compressed data
    assert _refused(bytes(damaged)).reason == "zip_corrupt"


def _xml(cubes: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><gesmes:Envelope xmlns:gesmes="'
            f'http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/'
            f'2002-08-01/eurofxref"><Cube>{cubes}</Cube></gesmes:Envelope>').encode()


@pytest.mark.parametrize(("cubes", "reason", "location"), [
    ("<Cube time='2018-06-11'><Cube currency='USD' rate='1,179'/></Cube>", "bad_rate",
     "2018-06-11 USD"),
    ("<Cube time='2018-06-11'><Cube currency='USD' rate=''/></Cube>", "bad_rate",
     "2018-06-11 USD"),
    ("<Cube time='2018-06-11'><Cube currency='USD'/></Cube>", "missing_rate", "2018-06-11 USD"),
    ("<Cube time='2018-06-11'><Cube currency='US' rate='1'/></Cube>", "bad_currency",
     "2018-06-11 /Envelope/Cube/Cube[1]/Cube[1]"),
    ("<Cube time='11/06/2018'><Cube currency='USD' rate='1'/></Cube>", "bad_date",
     "/Envelope/Cube/Cube[1]"),
    ("<Cube><Cube currency='USD' rate='1'/></Cube>", "bad_date", "/Envelope/Cube/Cube[1]"),
    ("<Cube time='2018-06-11'><Cube currency='USD' rate='1'/><Cube currency='USD' rate='1'/>"
     "</Cube>", "duplicate_rate", "2018-06-11 USD"),
    ("<Cube time='2018-06-11'><Rate currency='USD' rate='1'/></Cube>", "unexpected_element",
     "/Envelope/Cube/Cube[1]/*[1]"),
    ("", "no_rates", None),
])
def test_malformed_xml_is_refused(cubes, reason, location):
    err = _refused(_xml(cubes))
    assert (err.reason, err.location) == (reason, location)


def test_cut_off_and_foreign_xml_is_refused(fx):
    data = (fx / "eu_central_bank_exchange_rates.xml").read_bytes()
    assert _refused(data[:-40]).reason == "xml_syntax"
    assert _refused(b"<Document><Cube/></Document>").reason == "unknown_shape"
    entity = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' \
             b"<gesmes:Envelope xmlns:gesmes='g'><Cube><Cube time='2018-06-11'>" \
             b"<Cube currency='USD' rate='&e;'/></Cube></Cube></gesmes:Envelope>"
    assert _refused(entity).reason in ("bad_rate", "xml_syntax")  # never reads the file


# --- render ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "fmt"), [("eurofxref.csv", "csv"),
                                           ("eu_central_bank_exchange_rates.xml", "xml")])
def test_render_reproduces_the_real_daily_files(fx, name, fmt):
    data = (fx / name).read_bytes()
    assert ecb.render(ecb.parse(data), fmt) == data


def test_render_history_round_trips(fx):
    parsed = ecb.parse(fx / "eu_central_bank_exchange_rates_90_day.xml")
    assert ecb.parse(ecb.render(parsed, "xml")).fx_rates == parsed.fx_rates
    csv_bytes = ecb.render(parsed, "csv")
    assert csv_bytes.startswith(b"Date,USD,JPY,BGN,")
    assert ecb.parse(csv_bytes).fx_rates == parsed.fx_rates


def test_render_refuses_what_is_not_an_ecb_file():
    usd = FxRate(DAY, "EUR", "USD", "1.1172", "ecb")
    with pytest.raises(ValueError, match="EUR-based"):
        ecb.render(ParsedFile("x", "fx_rates", fx_rates=[FxRate(DAY, "USD", "JPY", "1", "x")]))
    with pytest.raises(ValueError, match="positive decimal"):
        ecb.render(ParsedFile("x", "fx_rates", fx_rates=[FxRate(DAY, "EUR", "USD", "-1", "x")]))
    with pytest.raises(ValueError, match="two USD"):
        ecb.render(ParsedFile("x", "fx_rates", fx_rates=[usd, usd]))
    with pytest.raises(ValueError, match="no rates"):
        ecb.render(ParsedFile("x", "fx_rates"))
    with pytest.raises(ValueError, match="fmt"):
        ecb.render(ParsedFile("x", "fx_rates", fx_rates=[usd]), "json")


_codes = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3)


def _decimal_text(units: int, places: int) -> str:
    """units * 10^-places written with exactly `places` decimals ("0.050", "12")."""
    digits = str(units).rjust(places + 1, "0")
    return f"{digits[:-places]}.{digits[-places:]}" if places else digits


_rate_texts = st.builds(_decimal_text, st.integers(1, 10**16 - 1), st.integers(0, 12))
_days = st.dictionaries(st.dates(dt.date(1999, 1, 1), dt.date(2100, 1, 1)),
                        st.dictionaries(_codes, _rate_texts, min_size=1, max_size=5),
                        min_size=1, max_size=4)


def _file(days: dict[dt.date, dict[str, str]]) -> ParsedFile:
    rates = [FxRate(day, "EUR", code, rate, "ecb")
             for day, codes in days.items() for code, rate in codes.items()]
    return ParsedFile(ecb.FORMAT, ecb.KIND, fx_rates=rates)


@settings(max_examples=100, deadline=None)
@given(days=_days, fmt=st.sampled_from(["csv", "xml"]))
def test_render_parse_round_trip(days, fmt):
    original = _file(days)
    data = ecb.render(original, fmt)
    parsed = ecb.parse(data)
    if fmt == "xml" or len(days) == 1:
        assert parsed.fx_rates == original.fx_rates
    else:  # the history CSV lists each date's currencies in column order
        key = lambda r: (r.rate_date, r.quote_currency)  # noqa: E731
        assert sorted(parsed.fx_rates, key=key) == sorted(original.fx_rates, key=key)
    assert ecb.sniff(data[:4096], f"eurofxref.{fmt}")


# --- cross rates -------------------------------------------------------------------------------


def test_cross_rate_through_eur():
    usd_jpy = ecb.cross_rate("1.1172", "175.68")
    assert usd_jpy.rate == "157.2502685284640172"
    assert usd_jpy.exact == Fraction(17568, 100) / Fraction(11172, 10000)
    assert (usd_jpy.base_eur_rate, usd_jpy.quote_eur_rate) == ("1.1172", "175.68")
    assert ecb.cross_rate("1", "1.1172").rate == "1.1172000000000000"  # EUR -> USD
    # IDR -> GBP: 12 significant digits (money.md asks for at least 10; 12 places gave 8)
    assert ecb.cross_rate("20275.17", "0.8338").rate == "0.0000411241927935"
    assert ecb.cross_rate("1.1172", "1.1172", places=0).rate == "1"


def test_cross_rate_rounds_half_up():
    assert ecb.cross_rate("2", "0.000000000001", places=12).rate == "0.000000000001"  # 5e-13
    assert ecb.cross_rate("2", "0.000000000003", places=12).rate == "0.000000000002"  # 1.5e-12
    assert ecb.cross_rate("2", "0.000000000001").rate == "0.0000000000005000"
    assert ecb.cross_rate("8", "1", places=2).rate == "0.13"  # 0.125


def test_cross_rate_refuses_bad_rates():
    for bad in ("0", "-1", "1e3", "", "abc", 1.5):
        with pytest.raises(ValueError):
            ecb.cross_rate(bad, "1")
    with pytest.raises(ValueError):
        ecb.cross_rate("1", "1", places=-1)


def test_cross_rate_on_a_date(fx):
    daily = ecb.parse(fx / "eurofxref.csv").fx_rates
    assert ecb.cross_rate_on(daily, DAY, "USD", "JPY") == ecb.cross_rate("1.1172", "175.68")
    assert ecb.cross_rate_on(daily, DAY, "EUR", "GBP").rate == "0.8338000000000000"
    with pytest.raises(KeyError):
        ecb.cross_rate_on(daily, DAY, "USD", "HRK")
    with pytest.raises(KeyError):
        ecb.cross_rate_on(daily, DAY + dt.timedelta(days=1), "USD", "JPY")


@settings(max_examples=100, deadline=None)
@given(base=_rate_texts, quote=_rate_texts)
def test_cross_rate_matches_decimal_half_up(base, quote):
    with localcontext() as ctx:
        ctx.prec = 100  # enough digits for the quotient to be exact at 16 places before rounding
        expected = (Decimal(quote) / Decimal(base)).quantize(Decimal("1E-16"), ROUND_HALF_UP)
    assert ecb.cross_rate(base, quote).rate == f"{expected:f}"


# --- fuzz: damaged real files never raise anything but ParseError ------------------------------


def _hist_head(fx: Path, lines: int) -> bytes:
    with zipfile.ZipFile(fx / "eurofxref-hist.zip") as archive:
        return b"\n".join(archive.read("eurofxref-hist.csv").split(b"\n")[:lines])


@pytest.mark.parametrize("sample", ["eurofxref.csv", "eu_central_bank_exchange_rates.xml",
                                    "eu_central_bank_exchange_rates_90_day.xml", "hist_head",
                                    "hist_head.zip", "eurofxref-hist.zip"])
def test_fuzzed_real_files_parse_or_raise_parse_error(fx, sample):
    if sample.startswith("hist_head"):
        data = _hist_head(fx, 300)  # 300 real rows: fast, and every column's N/A pattern
        if sample.endswith(".zip"):
            data = _zip(**{"eurofxref-hist.csv": data})
    else:
        data = (fx / sample).read_bytes()
    # The full history takes ~1 s to parse whenever a damaged zip stays readable.
    examples = 25 if sample == "eurofxref-hist.zip" else 100

    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(damaged=_damaged(data))
    def check(damaged: bytes) -> None:
        try:
            result = ecb.parse(damaged)
        except ParseError as err:
            assert err.reason and err.message
        else:
            assert isinstance(result, ParsedFile) and result.fx_rates

    check()
