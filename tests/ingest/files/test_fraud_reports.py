"""Fraud reports CSV (late fraud labels): the parser's rules, the demo's writer, and the landing
loader on DuckDB and Postgres (exact rows, each file once, quarantine with reason and line, a
later file's report superseding the earlier row)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings

from ingest.files import formats
from ingest.files.checks import duplicate_current_fraud_reports
from ingest.files.formats import fraud_reports as fr
from ingest.files.loader import load_landing
from ingest.files.records import FraudReport, ParsedFile, ParseError
from ingest.files.warehouse_io import open_files_writer
from tests.ingest.files.mutations import damaged as _damaged
from tests.ingest.files.warehouse_reads import rows

HEADER = "report_id,payment_id,merchant_id,kind,source,reported_at,amount_minor,currency\n"
GOOD = (HEADER
        + "fr_001,pay_01,mer_a,stolen_card,chargeback,2026-12-01T10:00:00Z,12550,USD\n"
        + "fr_002,pay_02,mer_a,account_takeover,issuer_report,2026-12-01T11:30:00+01:00,,\n"
        + "fr_003,pay_03,mer_b,card_testing,internal_review,2026-12-01T23:59:59.5-05:00,0,JPY\n"
        + "fr_004,pay_04,mer_b,friendly_fraud,customer_claim,2026-12-02 08:15Z,"
        + "123456789012345678901,ETH\n").encode()

EXPECTED = [
    ("fr_001", "pay_01", "mer_a", "stolen_card", "chargeback",
     dt.datetime(2026, 12, 1, 10, 0), 12550, "USD"),
    ("fr_002", "pay_02", "mer_a", "account_takeover", "issuer_report",
     dt.datetime(2026, 12, 1, 10, 30), None, None),
    ("fr_003", "pay_03", "mer_b", "card_testing", "internal_review",
     dt.datetime(2026, 12, 2, 4, 59, 59, 500000), 0, "JPY"),
    ("fr_004", "pay_04", "mer_b", "friendly_fraud", "customer_claim",
     dt.datetime(2026, 12, 2, 8, 15), 123456789012345678901, "ETH"),
]


def as_tuples(reports: list[FraudReport]) -> list[tuple]:
    return [(r.report_id, r.payment_id, r.merchant_id, r.kind, r.source, r.reported_at,
             r.amount_minor, r.currency) for r in reports]


def refused(data: bytes | str) -> ParseError:
    with pytest.raises(ParseError) as err:
        fr.parse(data.encode() if isinstance(data, str) else data)
    return err.value


# --- the parser ----------------------------------------------------------------------------------


def test_a_good_file_parses_exactly():
    parsed = fr.parse(GOOD, "fraud-reports-2026-12-01.csv")
    assert parsed.format == "fraud_reports_csv" and parsed.kind == "fraud_reports"
    assert as_tuples(parsed.fraud_reports) == EXPECTED
    assert [r.line_number for r in parsed.fraud_reports] == [2, 3, 4, 5]
    assert parsed.row_count == 4 and not parsed.warnings


def test_bom_crlf_column_order_quotes_spaces_and_blank_lines_are_read():
    data = ("\ufeffcurrency,amount_minor,reported_at,source,kind,merchant_id,payment_id,report_id\r\n"
            "\r\n"
            ' EUR , 999 ,2026-12-01T10:00:00Z,chargeback,other,"mer,x",pay_9, fr_9 \r\n'
            "\r\n").encode()
    (report,) = fr.parse(data).fraud_reports
    assert as_tuples([report]) == [("fr_9", "pay_9", "mer,x", "other", "chargeback",
                                    dt.datetime(2026, 12, 1, 10), 999, "EUR")]
    assert report.line_number == 3


def test_a_header_only_file_has_no_reports():
    assert fr.parse(HEADER.encode()).fraud_reports == []


def _row(**overrides) -> str:
    row = {"report_id": "fr_1", "payment_id": "pay_1", "merchant_id": "mer_1",
           "kind": "stolen_card", "source": "chargeback", "reported_at": "2026-12-01T10:00:00Z",
           "amount_minor": "500", "currency": "USD"} | overrides
    return ",".join(row[c] for c in fr.COLUMNS) + "\n"


BAD_ROWS = [
    (_row(kind="phishing"), "unknown_kind"),
    (_row(kind="Stolen_Card"), "unknown_kind"),
    (_row(source="bank"), "unknown_source"),
    (_row(payment_id=""), "missing_field"),
    (_row(merchant_id=""), "missing_field"),
    (_row(report_id=""), "missing_field"),
    (_row(reported_at=""), "missing_field"),
    (_row(reported_at="yesterday"), "bad_timestamp"),
    (_row(reported_at="2026-12-01T10:00:00"), "bad_timestamp"),  # no offset
    (_row(reported_at="2026-12-01"), "bad_timestamp"),
    (_row(reported_at="2026-13-01T10:00:00Z"), "bad_timestamp"),
    (_row(reported_at="2026-12-01T10:00:00.1234567Z"), "bad_timestamp"),
    (_row(amount_minor="12.50"), "bad_amount"),
    (_row(amount_minor="-500"), "bad_amount"),
    (_row(amount_minor="+5"), "bad_amount"),
    (_row(amount_minor="1e3"), "bad_amount"),
    (_row(amount_minor="\u0665"), "bad_amount"),  # an Arabic-Indic digit is not a digit here
    (_row(amount_minor="1" * 39), "bad_amount"),
    (_row(currency=""), "missing_currency"),
    (_row(currency="XYZ"), "unknown_currency"),
    (_row(amount_minor="", currency="usd"), "unknown_currency"),
    (_row().rstrip("\n") + ",extra\n", "row_length"),
    (_row(report_id="fr_0"), "duplicate_report"),
]


@pytest.mark.parametrize(("bad_row", "reason"), BAD_ROWS,
                         ids=[f"{reason}-{i}" for i, (_, reason) in enumerate(BAD_ROWS)])
def test_a_bad_row_refuses_the_file_with_reason_and_line(bad_row, reason):
    good = _row(report_id="fr_0")
    err = refused(HEADER + good + "\n" + bad_row + good.replace("fr_0", "fr_z"))
    assert err.reason == reason
    assert err.location == "line 4"  # header, good row, a blank line, then the bad row
    assert err.message


@pytest.mark.parametrize(("data", "reason", "location"), [
    (b"", "empty_file", "line 1"),
    (b"\n\n", "empty_file", "line 1"),
    (HEADER.replace(",currency", "").encode(), "missing_column", "line 1"),
    (HEADER.replace("\n", ",note\n").encode(), "unexpected_column", "line 1"),
    (HEADER.replace("\n", ",kind\n").encode(), "duplicate_column", "line 1"),
    (b"Date, USD, JPY,\n", "bad_header", "line 1"),
    ((HEADER + _row() + _row(report_id="fr_2")).encode().replace(b"pay_1", b"pay_\xff", 2)
     .replace(b"pay_\xff", b"pay_1", 1), "encoding", "line 3"),
    ((HEADER + _row() + 'fr_2,"pay_2"x,mer,other,chargeback,2026-12-01T10:00:00Z,,\n').encode(),
     "csv_syntax", "line 3"),
])
def test_a_broken_file_is_refused_with_location(data, reason, location):
    err = refused(data)
    assert (err.reason, err.location) == (reason, location)


def test_sniff_recognises_only_this_format():
    assert fr.sniff(GOOD[:4096], "x.csv")
    assert formats.sniff_source(GOOD[:4096], "anything.csv") == "fraud_reports"
    assert formats.candidates("fraud_reports") == ("fraud_reports",)
    psp_header = (b"record_type,channel_reference,merchant_reference,transaction_at,currency,"
                  b"gross_minor,fee_minor,net_minor,payout_id,payout_date\n")
    assert not fr.sniff(psp_header, "ch_card_2026-11-20.csv")
    assert not fr.sniff(b"Date, USD, JPY, \n", "eurofxref.csv")
    for other in formats.FORMAT_MODULES:
        if other != "fraud_reports":
            assert not formats.module(other).sniff(GOOD[:4096], "fraud-reports-2026-12-01.csv")


def test_render_round_trips_and_refuses_what_would_not_read_back():
    parsed = fr.parse(GOOD)
    again = fr.parse(fr.render(parsed))
    assert again.fraud_reports == parsed.fraud_reports
    report = parsed.fraud_reports[0]
    for bad in (FraudReport(**{**_fields(report), "kind": "phishing"}),
                FraudReport(**{**_fields(report), "report_id": " fr_1"}),
                FraudReport(**{**_fields(report), "currency": None}),
                FraudReport(**{**_fields(report), "amount_minor": -1})):
        with pytest.raises(ValueError):
            fr.render(ParsedFile(format=fr.FORMAT, kind=fr.KIND, fraud_reports=[bad]))


def _fields(report: FraudReport) -> dict:
    return {name: getattr(report, name) for name in FraudReport.__slots__}


@hyp_settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_damaged(GOOD))
def test_a_damaged_file_parses_or_raises_parse_error(data):
    try:
        result = fr.parse(data)
    except ParseError as err:
        assert err.reason and err.message and err.location
    else:
        assert isinstance(result, ParsedFile)


# --- the writer ----------------------------------------------------------------------------------

DAY = dt.date(2026, 12, 1)
REPORTS = [
    {"report_id": "fr_w1", "payment_id": "pay_w1", "merchant_id": "mer_a", "kind": "stolen_card",
     "source": "chargeback", "reported_at": dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC),
     "amount_minor": 4200, "currency": "EUR"},
    {"report_id": "fr_w2", "payment_id": "pay_w2", "merchant_id": "mer_b",
     "kind": "mule_cash_out", "source": "internal_review",
     "reported_at": dt.datetime(2026, 12, 1, 9, 45)},  # naive = UTC; no amount
    {"report_id": "fr_w3", "payment_id": "pay_w3", "merchant_id": "mer_b", "kind": "other",
     "source": "customer_claim", "reported_at": "2026-12-01T12:00:00+02:00",
     "amount_minor": 1, "currency": "KWD"},
]
WRITTEN = [
    ("fr_w1", "pay_w1", "mer_a", "stolen_card", "chargeback", dt.datetime(2026, 12, 1, 9, 30),
     4200, "EUR"),
    ("fr_w2", "pay_w2", "mer_b", "mule_cash_out", "internal_review",
     dt.datetime(2026, 12, 1, 9, 45), None, None),
    ("fr_w3", "pay_w3", "mer_b", "other", "customer_claim", dt.datetime(2026, 12, 1, 10, 0), 1,
     "KWD"),
]


def test_the_writer_names_the_day_writes_atomically_and_reads_back(tmp_path):
    path = fr.write_fraud_reports(tmp_path, DAY, REPORTS)
    assert path == tmp_path / "fraud_reports" / "fraud-reports-2026-12-01.csv"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind
    assert as_tuples(fr.parse(path.read_bytes()).fraud_reports) == WRITTEN
    # The same reports again: the same file, not a second one.
    assert fr.write_fraud_reports(tmp_path, DAY, REPORTS) == path
    assert len(list(path.parent.iterdir())) == 1
    # Other reports for a day whose file still waits: written beside it, never over it.
    second = fr.write_fraud_reports(tmp_path, DAY, REPORTS[:1])
    assert second.name == "fraud-reports-2026-12-01.2.csv"
    assert as_tuples(fr.parse(path.read_bytes()).fraud_reports) == WRITTEN


def test_the_writer_writes_nothing_without_reports_and_refuses_bad_ones(tmp_path):
    assert fr.write_fraud_reports(tmp_path, DAY, []) is None
    for bad in ({**REPORTS[0], "kind": "phishing"}, {**REPORTS[0], "amount": 5},
                {**REPORTS[0], "amount_minor": 42.0}, {**REPORTS[0], "amount_minor": True},
                {**REPORTS[0], "currency": None}, {**REPORTS[0], "reported_at": "2026-12-01"},
                {k: v for k, v in REPORTS[0].items() if k != "payment_id"}):
        with pytest.raises(ValueError):
            fr.write_fraud_reports(tmp_path, DAY, [bad])
    assert not (tmp_path / "fraud_reports").exists() or not any(
        (tmp_path / "fraud_reports").iterdir())


# --- the loader, on DuckDB and Postgres -----------------------------------------------------------


def drop(settings, name: str, data: bytes, source: str = "fraud_reports"):
    folder = settings.landing_dir / source
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


RAW_COLUMNS = ("report_id, payment_id, merchant_id, kind, source, reported_at, "
               "CAST(amount_minor AS VARCHAR(40)), currency")


def current_reports(settings) -> list[tuple]:
    got = rows(settings, f"SELECT {RAW_COLUMNS} FROM raw.fraud_reports "
                         "WHERE superseded_by IS NULL ORDER BY report_id")
    return [(*r[:6], None if r[6] is None else int(r[6]), r[7]) for r in got]


def test_a_good_file_loads_exactly_and_only_once(settings):
    drop(settings, "fraud-reports-2026-12-01.csv", GOOD)
    (outcome,) = load_landing(settings).files
    assert (outcome.status, outcome.format, outcome.rows) == ("loaded", "fraud_reports_csv", 4)
    assert outcome.totals == {"ETH": "123456789012345678901", "JPY": "0", "USD": "12550"}
    assert current_reports(settings) == EXPECTED
    assert rows(settings, "SELECT count(*) FROM raw.fraud_reports") == [(4,)]
    ids = rows(settings, "SELECT fraud_report_line_id, file_id, line_number "
                         "FROM raw.fraud_reports ORDER BY line_number")
    assert ids == [(f"{outcome.file_id[:16]}:{n}", outcome.file_id, n) for n in (2, 3, 4, 5)]
    landed = rows(settings, "SELECT source, format, kind, status, row_count, totals "
                            "FROM raw.landed_files")
    assert landed == [("fraud_reports", "fraud_reports_csv", "fraud_reports", "loaded", 4,
                       json.dumps(outcome.totals))]
    assert (settings.home_dir / "archive" / "fraud_reports"
            / f"{outcome.file_id[:12]}__fraud-reports-2026-12-01.csv").is_file()

    # The same bytes again (a re-sent file, under any name): skipped, nothing doubles.
    drop(settings, "fraud-reports-2026-12-01.csv", GOOD)
    drop(settings, "resent.csv", GOOD)
    again = load_landing(settings)
    assert [f.status for f in again.files] == ["duplicate", "duplicate"]
    assert rows(settings, "SELECT count(*) FROM raw.fraud_reports") == [(4,)]
    assert rows(settings, "SELECT count(*) FROM raw.landed_files") == [(1,)]
    assert not [p for p in settings.landing_dir.rglob("*") if p.is_file()]


def test_a_bad_file_is_quarantined_and_the_rest_of_the_batch_loads(settings, shared_data):
    bad = GOOD.replace(b"account_takeover", b"phishing")
    drop(settings, "fraud-reports-2026-12-01.csv", GOOD)
    drop(settings, "fraud-reports-2026-12-02.csv", bad)
    drop(settings, "eurofxref.csv", (shared_data / "fx" / "eurofxref.csv").read_bytes(), "fx")
    report = load_landing(settings)
    assert report.summary()["loaded"] == 2 and report.summary()["quarantined"] == 1
    (quarantined,) = [f for f in report.files if f.status == "quarantined"]
    assert (quarantined.reason, quarantined.location) == ("unknown_kind", "line 3")
    assert quarantined.path.endswith("fraud-reports-2026-12-02.csv")
    (sidecar,) = (settings.quarantine_dir / "fraud_reports").glob("*.reason.json")
    assert json.loads(sidecar.read_text()) == {
        "file": "fraud-reports-2026-12-02.csv", "file_id": quarantined.file_id,
        "source": "fraud_reports", "reason": "unknown_kind", "message": quarantined.message,
        "location": "line 3"}
    assert (settings.quarantine_dir / "fraud_reports"
            / f"{quarantined.file_id[:12]}__fraud-reports-2026-12-02.csv").read_bytes() == bad
    # Nothing of the bad file reached the table; the good one and the FX file did.
    assert current_reports(settings) == EXPECTED
    assert rows(settings, "SELECT count(*) FROM raw.fraud_reports") == [(4,)]
    assert rows(settings, "SELECT count(*) FROM raw.fx_rates")[0][0] > 0
    registry = rows(settings, "SELECT original_name, status, reason, location, row_count "
                              "FROM raw.landed_files WHERE source = 'fraud_reports' "
                              "ORDER BY original_name")
    assert registry == [("fraud-reports-2026-12-01.csv", "loaded", None, None, 4),
                        ("fraud-reports-2026-12-02.csv", "quarantined", "unknown_kind",
                         "line 3", 0)]


def test_a_later_file_repeating_a_report_id_supersedes_that_report(settings):
    drop(settings, "fraud-reports-2026-12-01.csv", GOOD)
    (first,) = load_landing(settings).files
    update = (HEADER
              # fr_001 reclassified and its amount corrected; fr_005 is new
              + "fr_001,pay_01,mer_a,friendly_fraud,chargeback,2026-12-01T10:00:00Z,12000,USD\n"
              + "fr_005,pay_05,mer_c,other,customer_claim,2026-12-03T00:00:00Z,,\n").encode()
    drop(settings, "fraud-reports-2026-12-03.csv", update)
    (second,) = load_landing(settings).files
    assert second.status == "loaded" and second.superseded == [first.file_id]
    assert current_reports(settings) == [
        ("fr_001", "pay_01", "mer_a", "friendly_fraud", "chargeback",
         dt.datetime(2026, 12, 1, 10), 12000, "USD"),
        *EXPECTED[1:],
        ("fr_005", "pay_05", "mer_c", "other", "customer_claim", dt.datetime(2026, 12, 3), None,
         None)]
    # The earlier row stays, marked; the pair is recorded per report.
    assert rows(settings, "SELECT kind, file_id, superseded_by FROM raw.fraud_reports "
                          "WHERE report_id = 'fr_001' ORDER BY superseded_by NULLS LAST") == [
        ("stolen_card", first.file_id, second.file_id), ("friendly_fraud", second.file_id, None)]
    assert rows(settings, "SELECT superseded_file_id, superseding_file_id, supersession_key "
                          "FROM raw.file_supersessions") == [
        (first.file_id, second.file_id, "fraud_report|fr_001")]
    writer = open_files_writer(settings)
    try:
        assert duplicate_current_fraud_reports(writer).passed
    finally:
        writer.close()


def test_the_writers_file_round_trips_through_the_loader(settings):
    path = fr.write_fraud_reports(settings.landing_dir, DAY, REPORTS)
    assert path.parent == settings.landing_dir / "fraud_reports"
    (outcome,) = load_landing(settings).files
    assert (outcome.status, outcome.rows, outcome.source) == ("loaded", 3, "fraud_reports")
    assert current_reports(settings) == WRITTEN
    stored = rows(settings, "SELECT CAST(amount_minor AS VARCHAR(40)) FROM raw.fraud_reports "
                            "WHERE report_id = 'fr_w1'")
    assert stored == [("4200",)] and Decimal(stored[0][0]) == 4200
