"""Clearhouse PSP settlement CSV: the spec's rules, round trips and fuzzing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.files.formats import psp_csv
from ingest.files.records import ParsedFile, ParseError, PspLine
from tests.ingest.files.mutations import damaged as mutations

NAME = "ch_card_sim_2024-03-03.csv"
HEADER = ",".join(psp_csv.COLUMNS)
GOOD = [
    "payment,pi_1,pay_1,2024-03-02T10:00:00Z,USD,1000,59,941,po_1,2024-03-03",
    "payment,pi_2,pay_2,2024-03-02T11:30:00.250000Z,USD,2500,103,2397,po_1,2024-03-03",
    "refund,re_1,rf_1,2024-03-02T12:00:00+00:00,USD,-500,0,-500,po_1,2024-03-03",
    "chargeback,dp_1,pay_0,2024-03-02T13:00:00Z,USD,-300,1500,-1800,po_1,2024-03-03",
    "fee_adjustment,,,2024-03-02T14:00:00Z,USD,0,100,-100,po_1,2024-03-03",
    "payout,,,,USD,938,0,938,po_1,2024-03-03",
]


def csv_bytes(rows: list[str], header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode("utf-8")


def lines_of(parsed: ParsedFile) -> list[dict]:
    """Rows as dicts, whichever shape (table or lines) the parser returned."""
    if parsed.psp_table is not None:
        return parsed.psp_table.to_pylist()
    return [{f: getattr(line, f) for f in PspLine.__slots__} for line in parsed.psp_lines]


def refused(data: bytes, name: str | None = NAME) -> ParseError:
    with pytest.raises(ParseError) as err:
        psp_csv.parse(data, name)
    return err.value


# --- the happy path ------------------------------------------------------------------------------

def test_parses_every_record_type_into_the_arrow_shape():
    parsed = psp_csv.parse(csv_bytes(GOOD), NAME)
    assert parsed.format == "psp_csv" and parsed.kind == "psp_bill" and parsed.warnings == []
    table = parsed.psp_table
    assert table.schema == psp_csv.TABLE_SCHEMA
    assert table.column_names == list(PspLine.__slots__)
    rows = table.to_pylist()
    assert [r["record_type"] for r in rows] == ["payment", "payment", "refund", "chargeback",
                                                 "fee_adjustment", "payout"]
    assert [r["line_number"] for r in rows] == [2, 3, 4, 5, 6, 7]
    assert {r["channel"] for r in rows} == {"ch_card_sim"}
    first = rows[1]
    assert first["transaction_at"] == dt.datetime(2024, 3, 2, 11, 30, 0, 250000)
    assert first["payout_date"] == dt.date(2024, 3, 3)
    assert (first["gross_minor"], first["fee_minor"], first["net_minor"]) == (2500, 103, 2397)
    assert rows[4]["channel_reference"] is None and rows[5]["transaction_at"] is None
    assert parsed.row_count == 6


def test_column_order_may_differ_and_a_bom_and_trailing_blank_lines_are_fine():
    order = list(reversed(psp_csv.COLUMNS))
    rows = [",".join(reversed(r.split(","))) for r in GOOD]
    data = b"\xef\xbb\xbf" + csv_bytes(rows, ",".join(order)) + b"\n\r\n"
    assert lines_of(psp_csv.parse(data, NAME)) == lines_of(psp_csv.parse(csv_bytes(GOOD), NAME))


def test_file_name_gives_channel_and_day_and_path_sources_use_their_name(tmp_path):
    assert psp_csv.file_facts("ch_wechat_sim_2024-03-03.csv") == ("ch_wechat_sim",
                                                                  dt.date(2024, 3, 3))
    path = tmp_path / "card_stripe_2024-01-31.csv"
    path.write_bytes(csv_bytes(GOOD))
    assert psp_csv.parse(path).psp_table.column("channel")[0].as_py() == "card_stripe"
    assert psp_csv.parse(csv_bytes(GOOD)).psp_table.column("channel").null_count == len(GOOD)


def test_empty_file_with_only_a_header_has_no_rows():
    assert psp_csv.parse(csv_bytes([]), NAME).row_count == 0


def test_references_keep_commas_quotes_newlines_and_words_like_null():
    rows = ['payment,"a,b ""c""","x\ny",2024-03-02T10:00:00Z,USD,1,0,1,,',
            "payment,NA,null,2024-03-02T10:00:00Z,USD,1,0,1,,"]
    parsed = lines_of(psp_csv.parse(csv_bytes(rows), NAME))
    assert [r["channel_reference"] for r in parsed] == ['a,b "c"', "NA"]
    assert [r["merchant_reference"] for r in parsed] == ["x\ny", "null"]
    assert [r["line_number"] for r in parsed] == [2, 4]  # the quoted line break takes a line


def test_amounts_beyond_int64_come_back_exact_as_lines():
    big = 123456789012345678901234567890
    rows = [f"payment,tx1,p1,2024-03-02T10:00:00Z,ETH,{big},{10**18},{big - 10**18},,"]
    parsed = psp_csv.parse(csv_bytes(rows), "eth_2024-03-03.csv")
    assert parsed.psp_table is None
    assert parsed.psp_lines[0].gross_minor == big and parsed.psp_lines[0].net_minor == big - 10**18


# --- the spec's rules, each refused with its reason and line -------------------------------------

def replace_in(row: int, old: str, new: str) -> bytes:
    rows = list(GOOD)
    assert old in rows[row]
    rows[row] = rows[row].replace(old, new, 1)
    return csv_bytes(rows)


@pytest.mark.parametrize(("data", "reason", "line"), [
    (replace_in(0, "payment", "sale"), "bad_record_type", 2),
    (replace_in(0, "payment", "other"), "bad_record_type", 2),
    (replace_in(1, ",2500,", ",25.00,"), "bad_amount", 3),
    (replace_in(1, ",2500,", ",2.5e3,"), "bad_amount", 3),
    (replace_in(1, ",2500,", ",+2500,"), "bad_amount", 3),
    (replace_in(1, ",2500,", ",0x9C4,"), "bad_amount", 3),
    (replace_in(1, ",2500,", ",2500.0,"), "bad_amount", 3),
    (replace_in(1, ",2500,", "," + "9" * 40 + ","), "bad_amount", 3),
    (replace_in(1, ",2397,", ",2398,"), "net_mismatch", 3),
    (replace_in(2, "-500,0,-500", "500,0,500"), "bad_sign", 4),
    (replace_in(3, "-300,1500,-1800", "300,1500,-1200"), "bad_sign", 5),
    (replace_in(0, "1000,59,941", "-1000,59,-1059"), "bad_sign", 2),
    (replace_in(0, "10:00:00Z", "10:00:00"), "bad_timestamp", 2),
    (replace_in(0, "10:00:00Z", "10:00:00+08:00"), "bad_timestamp", 2),
    (replace_in(0, "2024-03-02T10:00:00Z", "02/03/2024 10:00"), "bad_timestamp", 2),
    (replace_in(0, "2024-03-02T10", "2024-02-30T10"), "bad_timestamp", 2),
    (replace_in(0, "pay_1,2024-03-02T10:00:00Z", "pay_1,"), "missing_field", 2),
    (replace_in(0, "pi_1,pay_1", ","), "missing_reference", 2),
    (replace_in(2, "re_1,rf_1", ","), "missing_reference", 4),
    (replace_in(3, "dp_1,pay_0", ","), "missing_reference", 5),
    (replace_in(5, "po_1,2024", ",2024"), "missing_field", 7),
    (replace_in(5, ",2024-03-03", ","), "missing_field", 7),
    (replace_in(0, ",2024-03-03", ",2024-03-32"), "bad_date", 2),
    (replace_in(0, ",2024-03-03", ",03.03.2024"), "bad_date", 2),
    (replace_in(0, "USD", "XXZ"), "unknown_currency", 2),
    (replace_in(0, "USD", ""), "missing_field", 2),
    (replace_in(2, ",po_1,2024-03-03", ""), "column_count", 4),
    (replace_in(2, "rf_1", '"rf_1'), "csv_syntax", 4),
    (csv_bytes([*GOOD[:2], "", *GOOD[2:]]), "missing_field", 4),
    (csv_bytes([*GOOD, "payout,,,,USD,938,0,938,po_1,2024-03-03"]), "duplicate_payout", 8),
    (csv_bytes(GOOD).replace(b"pay_2", b"pay_\xff"), "encoding", 3),
])
def test_rule_breaks_are_refused_at_their_line(data, reason, line):
    error = refused(data)
    assert error.reason == reason, error
    assert error.location == f"line {line}"
    assert error.message


@pytest.mark.parametrize("row", [0, 2, 3])
def test_a_line_needs_only_one_of_the_two_references(row):
    # reconciliation.md: a PSP line carries the channel's reference or the platform's id, at
    # least one of them; reconciliation matches on either.
    ids = {0: ("pi_1", "pay_1"), 2: ("re_1", "rf_1"), 3: ("dp_1", "pay_0")}[row]
    channel_ref, platform_id = ids
    only_platform_id = lines_of(psp_csv.parse(replace_in(row, f"{channel_ref},", ","), NAME))
    assert (only_platform_id[row]["channel_reference"],
            only_platform_id[row]["merchant_reference"]) == (None, platform_id)
    only_channel_ref = lines_of(psp_csv.parse(replace_in(row, f",{platform_id},", ",,"), NAME))
    assert (only_channel_ref[row]["channel_reference"],
            only_channel_ref[row]["merchant_reference"]) == (channel_ref, None)


def test_a_line_without_either_reference_is_refused_saying_so():
    error = refused(replace_in(1, "pi_2,pay_2", ","))
    assert (error.reason, error.location) == ("missing_reference", "line 3")
    assert "channel_reference or merchant_reference" in error.message
    assert error.message.startswith("a payment")


@pytest.mark.parametrize(("header", "reason"), [
    (HEADER.replace(",payout_date", ""), "missing_column"),
    (HEADER + ",note", "unexpected_column"),
    (HEADER + ",payout_id", "duplicate_column"),
    ("", "missing_column"),
])
def test_header_must_hold_exactly_the_spec_columns(header, reason):
    error = refused(csv_bytes(GOOD, header))
    assert (error.reason, error.location) == (reason, "line 1")


@pytest.mark.parametrize("name", ["settlement.csv", "ch_card_2024-3-3.csv",
                                  "ch_card_2024-02-30.csv", "ch_card_2024-03-03.txt",
                                  "_2024-03-03.csv"])
def test_other_file_names_are_refused(name):
    error = refused(csv_bytes(GOOD), name)
    assert error.reason == "bad_file_name" and name in error.message


def test_blank_line_in_the_middle_is_named():
    assert "blank line" in refused(csv_bytes([*GOOD[:2], "", *GOOD[2:]])).message


# --- payout totals -------------------------------------------------------------------------------

def test_payout_total_mismatch_is_a_warning_naming_the_figures():
    parsed = psp_csv.parse(replace_in(5, "938,0,938", "940,0,940"), NAME)
    assert parsed.row_count == len(GOOD)
    [warning] = parsed.warnings
    assert warning.code == "payout_total_mismatch"
    assert "po_1" in warning.message and "940" in warning.message and "938" in warning.message


def test_rows_of_a_payout_without_its_payout_row_are_flagged():
    parsed = psp_csv.parse(csv_bytes(GOOD[:5]), NAME)
    assert [w.code for w in parsed.warnings] == ["payout_row_missing"]


def test_payout_in_another_currency_does_not_count_the_rows():
    parsed = psp_csv.parse(replace_in(5, "USD", "EUR"), NAME)
    assert sorted(w.code for w in parsed.warnings) == ["payout_row_missing",
                                                       "payout_total_mismatch"]


def test_a_row_dated_otherwise_than_its_payout_row_is_a_warning_naming_both_dates():
    # psp-settlement-csv.md: payout_date is "the value date of that payout" - one date per payout
    # the payout and its other rows dated 2024-03-05, the first payment (line 2) 2024-03-03
    rows = [GOOD[0], *(row.replace("2024-03-03", "2024-03-05") for row in GOOD[1:])]
    parsed = psp_csv.parse(csv_bytes(rows), NAME)
    assert parsed.row_count == len(GOOD)  # loaded, not refused
    [warning] = parsed.warnings
    assert warning.code == "payout_date_mismatch"
    assert "po_1" in warning.message and "line 2" in warning.message
    assert "2024-03-03" in warning.message and "2024-03-05" in warning.message
    # the row keeps the date the file gives it
    assert [r["payout_date"] for r in lines_of(parsed)][:2] == [dt.date(2024, 3, 3),
                                                                dt.date(2024, 3, 5)]


def test_a_row_without_a_payout_date_is_not_a_date_mismatch():
    parsed = psp_csv.parse(replace_in(0, "po_1,2024-03-03", "po_1,"), NAME)
    assert parsed.warnings == []


# --- sniff and render ----------------------------------------------------------------------------

def test_sniff_knows_the_header_and_nothing_else(shared_data):
    assert psp_csv.sniff(csv_bytes(GOOD)[:4096], NAME)
    assert psp_csv.sniff(b"\xef\xbb\xbf" + csv_bytes(GOOD, ",".join(sorted(psp_csv.COLUMNS))), "x")
    assert not psp_csv.sniff(csv_bytes(GOOD, HEADER + ",x"), NAME)
    for path in (shared_data / "psp").rglob("*"):
        if path.is_file():
            assert not psp_csv.sniff(path.read_bytes()[:4096], path.name), path


def test_render_writes_the_spec_and_round_trips_a_table():
    parsed = psp_csv.parse(csv_bytes(GOOD), NAME)
    data = psp_csv.render(parsed)
    assert data.decode().splitlines()[0] == HEADER
    assert lines_of(psp_csv.parse(data, NAME)) == lines_of(parsed)
    assert psp_csv.render(psp_csv.parse(data, NAME)) == data


def test_render_refuses_record_types_the_csv_does_not_have():
    line = PspLine(1, "other", None, "x", None, dt.datetime(2024, 1, 1), "USD", 1, 0, 1)
    with pytest.raises(ValueError, match="record types"):
        psp_csv.render(ParsedFile("psp_csv", "psp_bill", psp_lines=[line]))


def test_render_writes_aware_times_in_utc():
    at = dt.datetime(2024, 1, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    line = PspLine(1, "payment", None, "x", None, at, "USD", 1, 0, 1)
    data = psp_csv.render(ParsedFile("psp_csv", "psp_bill", psp_lines=[line]))
    assert b"2024-01-01T01:00:00.000000Z" in data


# --- hypothesis: generated rows round-trip -------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)
REFERENCE = st.one_of(st.none(), TEXT)
CURRENCIES = ["USD", "EUR", "JPY", "CNY", "KWD", "USDC", "ETH"]
PAYOUT_CURRENCY = {"po_1": "USD", "po,2": "ETH"}


@st.composite
def psp_files(draw, big: bool):
    limit = 10**37 if big else 10**15
    amount = st.integers(0, limit)
    rows = []
    for index in range(draw(st.integers(0, 8))):
        record_type = draw(st.sampled_from(["payment", "refund", "chargeback", "fee_adjustment"]))
        gross = draw(amount)
        if record_type in ("refund", "chargeback"):
            gross = -max(gross, 1)
        elif record_type == "fee_adjustment":
            gross = draw(st.integers(-limit, limit))
        fee = draw(st.integers(-limit, limit))
        at = draw(st.datetimes(dt.datetime(1971, 1, 1), dt.datetime(2200, 1, 1)))
        payout = draw(st.sampled_from([None, "po_1", "po,2"]))
        currency = PAYOUT_CURRENCY.get(payout) or draw(st.sampled_from(CURRENCIES))
        channel_ref, platform_id = draw(REFERENCE), draw(REFERENCE)
        if record_type != "fee_adjustment" and channel_ref is None and platform_id is None:
            # payments, refunds and chargebacks carry at least one of the two references
            channel_ref, platform_id = draw(st.sampled_from([(draw(TEXT), None),
                                                             (None, draw(TEXT))]))
        rows.append(PspLine(index, record_type, None, channel_ref, platform_id, at,
                            currency, gross, fee, gross - fee, payout,
                            dt.date(2024, 3, 3) if payout else None))
    for payout, currency in PAYOUT_CURRENCY.items():
        batch = [r.net_minor for r in rows if r.payout_id == payout]
        if batch:
            rows.append(PspLine(0, "payout", None, None, None, None, currency, sum(batch), 0,
                                sum(batch), payout, dt.date(2024, 3, 3)))
    return rows


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("line_number", "channel")} for row in rows]


@pytest.mark.parametrize("big", [False, True])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_rows_render_and_parse_back_equal(big, data):
    rows = data.draw(psp_files(big))
    parsed = psp_csv.parse(psp_csv.render(ParsedFile("psp_csv", "psp_bill", psp_lines=rows)),
                           NAME)
    assert parsed.warnings == []
    expected = [{f: getattr(r, f) for f in PspLine.__slots__} for r in rows]
    assert comparable(lines_of(parsed)) == comparable(expected)


# --- hypothesis: a broken file is a ParseError, never another exception --------------------------

SAMPLE = csv_bytes([*GOOD, 'payment,"q,""x""",m,2024-03-02T10:00:00Z,JPY,7,0,7,,'])


@settings(max_examples=150, deadline=None)
@given(data=mutations(SAMPLE))
def test_fuzzed_files_parse_or_raise_parse_error(data):
    try:
        parsed = psp_csv.parse(data, NAME)
    except ParseError as error:
        assert error.reason and error.message
    else:
        assert isinstance(parsed.psp_table, pa.Table) or parsed.psp_lines is not None


def test_a_path_that_is_not_named_like_the_spec_can_still_be_named_by_the_caller(tmp_path):
    path = Path(tmp_path / "upload-1234.bin")
    path.write_bytes(csv_bytes(GOOD))
    assert refused(path.read_bytes(), path.name).reason == "bad_file_name"
    assert psp_csv.parse(path, NAME).row_count == len(GOOD)
