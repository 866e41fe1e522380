"""Spec audit of the landing zone (2026-12-05): probes through `load_landing` (what the sensor's
assets and `clearhouse ingest` call) and the raw tables, on DuckDB and Postgres, for what the
other ingest tests did not pin down. See docs/audits/2026-12-05-ingest.md."""

from __future__ import annotations

import json

from ingest.files import checks
from ingest.files.loader import load_landing
from ingest.files.schema import BANK_STATEMENT_LINES
from ingest.files.warehouse_io import open_files_writer
from tests.ingest.files.warehouse_reads import rows, with_writer

PSP_HEADER = (b"record_type,channel_reference,merchant_reference,transaction_at,currency,"
              b"gross_minor,fee_minor,net_minor,payout_id,payout_date\n")
PSP_ROWS = (b"payment,crd_1,pay_01,2026-11-20T12:00:00.000000Z,USD,2550,74,2476,po_1,2026-11-21\n"
            b"payout,,,2026-11-21T06:00:00.000000Z,USD,2476,0,2476,po_1,2026-11-21\n")

# The sample files and the folder each is dropped in (the EXPECTED_* dumps, genkgo's .json
# regression dumps, licences and the mt-940 .yml files are not files a bank or PSP sends).
FOLDERS = {"mt940": "bank", "bai2": "bank", "camt": "bank", "psp": "psp", "chain": "chain",
           "fx": "fx"}


def drop(settings, source: str, name: str, data: bytes):
    folder = settings.landing_dir / source
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def outcome(report, name):
    return next(f for f in report.files if f.path.endswith(name))


def sample_files(shared_data):
    for path in sorted(shared_data.rglob("*")):
        if not path.is_file() or path.name.startswith(("EXPECTED", "LICENSE", "MANIFEST")):
            continue
        top = path.relative_to(shared_data).parts[0]
        if top not in FOLDERS or path.suffix in (".yml", ".md", ".beancount"):
            continue
        if top == "camt" and path.suffix == ".json":
            continue  # genkgo's expected dumps
        if top == "chain" and "expected_" in path.name and path.suffix == ".csv":
            continue  # ethereum-etl's decoded output, not logs
        if top == "chain" and (path.name.startswith("DERIVED_usdc_expected") or path.name in (
                "expected_blocks.json", "expected_receipts.json", "expected_token_transfers.json")):
            continue
        yield FOLDERS[top], path


# --- every sample: one state each, and a quarantine always says why and where ------------------

def test_every_sample_ends_in_one_state_and_each_quarantine_names_reason_and_location(
        settings, shared_data):
    files = list(sample_files(shared_data))
    for i, (source, path) in enumerate(files):
        drop(settings, source, f"{i:03d}_{path.name}", path.read_bytes())
    report = load_landing(settings)
    assert len(report.files) == len(files)
    for f in report.files:
        assert f.status in ("loaded", "quarantined", "duplicate"), f
        if f.status == "quarantined":
            assert f.reason and f.location, (f.path, f.reason, f.location, f.message)
    registry = dict(rows(settings, "SELECT original_name, status FROM raw.landed_files"))
    quarantined = {n for n, s in registry.items() if s == "quarantined"}
    for name in quarantined:
        reason = json.loads(next((settings.quarantine_dir).rglob(f"*{name}.reason.json"))
                            .read_text())
        assert reason["reason"] and reason["location"], reason
    assert not list(settings.landing_dir.rglob("*.*")), "every file left the landing zone"


def test_broken_consumer_exports_point_at_their_stated_count(settings, shared_data):
    drop(settings, "psp", "alipay.csv",
         (shared_data / "psp/deb-sig/example-alipay-records.csv").read_bytes())
    drop(settings, "psp", "wechat.csv",
         (shared_data / "psp/deb-sig/example-wechat-records.csv").read_bytes())
    report = load_landing(settings)
    for name in ("alipay.csv", "wechat.csv"):
        bad = outcome(report, name)
        assert bad.status == "quarantined" and bad.reason == "record_count_mismatch"
        assert bad.location and bad.location.startswith("line "), bad
    # The stated count 共66笔记录 is on line 8 of the Alipay export (GB18030).
    assert outcome(report, "alipay.csv").location == "line 8"


def test_a_trade_bill_without_its_summary_says_where_it_was_cut(settings, shared_data):
    bill = (shared_data / "psp/wechatpay/wechatpay_v3_tradebill_ALL_2021-01-28.csv").read_bytes()
    cut = b"\n".join(bill.split(b"\n")[:4]) + b"\n"
    drop(settings, "psp", "cut.csv", cut)
    bad = outcome(load_landing(settings), "cut.csv")
    assert bad.status == "quarantined" and bad.reason == "missing_trailer"
    assert bad.location == "line 5"


# --- one bad file never blocks the others; nothing half-written -------------------------------

def test_a_nul_byte_in_a_psp_csv_is_quarantined_at_its_line_and_the_rest_loads(settings):
    drop(settings, "psp", "ch_card_sim_2026-11-20.csv",
         PSP_HEADER + PSP_ROWS.replace(b"pay_01", b"pay_\x0001"))
    drop(settings, "psp", "ch_wallet_sim_2026-11-20.csv", PSP_HEADER + PSP_ROWS)
    report = load_landing(settings)
    bad = outcome(report, "ch_card_sim_2026-11-20.csv")
    assert (bad.status, bad.reason, bad.location) == ("quarantined", "bad_character", "line 2")
    assert outcome(report, "ch_wallet_sim_2026-11-20.csv").status == "loaded"
    assert rows(settings, "SELECT COUNT(*) FROM raw.psp_lines")[0][0] == 2


def test_a_corrected_psp_file_resent_under_its_name_supersedes_the_first(settings, tmp_path):
    """psp-settlement-csv.md: one file per channel and day, `<channel>_<YYYY-MM-DD>.csv`. Landed
    again under its name with other bytes while the first still waits (`clearhouse ingest`), the
    re-send keeps its name (it used to be renamed `<stem>.<ms>.csv` and quarantined as
    bad_file_name) and, loaded after the first, supersedes it; landing is left empty."""
    from ingest.files.loader import land

    name = "ch_card_sim_2026-11-20.csv"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / name).write_bytes(PSP_HEADER + PSP_ROWS)
    (tmp_path / "b" / name).write_bytes(PSP_HEADER + PSP_ROWS.replace(b"2550,74,2476",
                                                                       b"2550,75,2475"))
    first = land(settings, tmp_path / "a" / name, "psp")
    second = land(settings, tmp_path / "b" / name, "psp")
    assert second.name == name and second != first
    report = load_landing(settings)
    assert [(f.status, f.reason) for f in report.files] == [("loaded", None), ("loaded", None)]
    assert len(report.files[1].superseded) == 1
    current = rows(settings, "SELECT fee_minor, settlement_date FROM raw.psp_lines "
                             "WHERE superseded_by IS NULL AND record_type = 'payment'")
    assert [(int(fee), str(day)) for fee, day in current] == [(75, "2026-11-20")]
    assert [p for p in (settings.landing_dir / "psp").rglob("*")] == []


def test_an_empty_resend_supersedes_and_the_day_is_the_names_last_date(settings):
    """A header-only corrected re-send of a channel-day replaces its rows (the channel and day
    come from the name, not from a first row it does not have); a channel whose name holds a
    date settles on the date before `.csv`."""
    drop(settings, "psp", "ch_card_sim_2026-11-20.csv", PSP_HEADER + PSP_ROWS)
    load_landing(settings)
    drop(settings, "psp", "ch_card_sim_2026-11-20.csv", PSP_HEADER)
    [empty] = load_landing(settings).files
    assert empty.status == "loaded" and len(empty.superseded) == 1
    assert rows(settings, "SELECT COUNT(*) FROM raw.psp_lines WHERE superseded_by IS NULL"
                )[0][0] == 0
    drop(settings, "psp", "ch_2026-01-01_2026-11-21.csv", PSP_HEADER + PSP_ROWS)
    load_landing(settings)
    assert rows(settings, "SELECT DISTINCT channel, CAST(settlement_date AS VARCHAR) "
                          "FROM raw.psp_lines WHERE superseded_by IS NULL") == [
        ("ch_2026-01-01", "2026-11-21")]


def test_text_after_a_closing_quote_is_quarantined_not_glued_on(settings):
    """RFC 4180: a quoted value ends at its closing quote. `"crd_1"x` was loaded as crd_1x
    (Arrow's reader is lenient; the strict one ran only when a value spanned lines)."""
    bad = PSP_ROWS.replace(b"payment,crd_1,", b'payment,"crd_1"x,')
    drop(settings, "psp", "ch_card_sim_2026-11-20.csv", PSP_HEADER + bad)
    drop(settings, "psp", "ch_wallet_sim_2026-11-20.csv",
         PSP_HEADER + PSP_ROWS.replace(b"payment,crd_1,", b'payment,"crd_1",'))
    report = load_landing(settings)
    quarantined = outcome(report, "ch_card_sim_2026-11-20.csv")
    assert (quarantined.status, quarantined.reason, quarantined.location) == (
        "quarantined", "csv_syntax", "line 2")
    assert outcome(report, "ch_wallet_sim_2026-11-20.csv").status == "loaded"
    assert rows(settings, "SELECT channel_reference FROM raw.psp_lines "
                          "WHERE record_type = 'payment'") == [("crd_1",)]


def test_a_nul_byte_in_a_wechat_bill_is_quarantined_at_its_line(settings, shared_data):
    bill = (shared_data / "psp/wechatpay/wechatpay_v3_tradebill_ALL_2021-01-28.csv").read_bytes()
    drop(settings, "psp", "bill.csv", bill.replace(b"for testing", b"for\x00testing", 1))
    bad = outcome(load_landing(settings), "bill.csv")
    assert (bad.status, bad.reason, bad.location) == ("quarantined", "bad_character", "line 2")


class FailingLines:
    """The real writer, except that inserting the lines of the statement file named `victim`
    fails: the statement header row of that file is already written at that point."""

    def __init__(self, writer, fail_times=1):
        self.writer = writer
        self.fail_times = fail_times

    def __getattr__(self, name):
        return getattr(self.writer, name)

    def insert(self, table, data, constants=None):
        if table is BANK_STATEMENT_LINES and self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("the warehouse went away mid-file")
        return self.writer.insert(table, data, constants)


def test_a_load_failing_midway_leaves_nothing_half_written_and_the_batch_goes_on(
        settings, shared_data):
    drop(settings, "bank", "a_sns.sta", (shared_data / "mt940/jejik/sns.sta").read_bytes())
    drop(settings, "fx", "eurofxref.csv", (shared_data / "fx/eurofxref.csv").read_bytes())
    writer = FailingLines(open_files_writer(settings))
    try:
        report = load_landing(settings, writer=writer)
    finally:
        writer.writer.close()
    failed = outcome(report, "a_sns.sta")
    assert failed.status == "quarantined" and failed.reason == "load_failed"
    assert "went away" in failed.message and failed.location
    assert outcome(report, "eurofxref.csv").status == "loaded"
    assert rows(settings, "SELECT COUNT(*) FROM raw.bank_statements")[0][0] == 0
    assert rows(settings, "SELECT COUNT(*) FROM raw.bank_statement_lines")[0][0] == 0
    # A load failure is not a verdict on the file: handed in again, it loads.
    drop(settings, "bank", "a_sns.sta", (shared_data / "mt940/jejik/sns.sta").read_bytes())
    again = outcome(load_landing(settings), "a_sns.sta")
    assert again.status == "loaded" and again.rows == 2
    assert rows(settings, "SELECT status FROM raw.landed_files WHERE original_name = 'a_sns.sta'"
                ) == [("loaded",)]


# --- truncated files -------------------------------------------------------------------------

def test_a_truncated_mt940_statement_is_quarantined_not_loaded(settings, shared_data):
    data = (shared_data / "mt940/jejik/ing.sta").read_bytes()
    drop(settings, "bank", "ing_cut.sta", data[: len(data) // 2])
    bad = outcome(load_landing(settings), "ing_cut.sta")
    assert bad.status == "quarantined" and bad.reason == "truncated"
    assert bad.location and bad.location.startswith("line ")
    assert rows(settings, "SELECT COUNT(*) FROM raw.bank_statement_lines")[0][0] == 0


# --- the same bill again, under another name -------------------------------------------------

def test_a_wechat_bill_resent_under_another_name_supersedes_instead_of_doubling(
        settings, shared_data):
    bill = (shared_data / "psp/wechatpay/wechatpay_v3_tradebill_ALL_2021-01-28.csv").read_bytes()
    drop(settings, "psp", "tradebill_2021-01-28.csv", bill)
    load_landing(settings)
    # The same bill saved again by another tool: CRLF line ends, another name.
    drop(settings, "psp", "tradebill_2021-01-28 (1).csv", bill.replace(b"\n", b"\r\n"))
    second = outcome(load_landing(settings), "(1).csv")
    assert second.status == "loaded" and len(second.superseded) == 1
    current = rows(settings, "SELECT COUNT(*), SUM(gross_minor) FROM raw.psp_lines "
                             "WHERE superseded_by IS NULL")
    assert (current[0][0], int(current[0][1])) == (3, 3)
    assert rows(settings, "SELECT COUNT(*) FROM raw.file_supersessions")[0][0] == 1


def test_two_merchants_wechat_bills_of_one_day_do_not_supersede_each_other(settings, shared_data):
    bill = (shared_data / "psp/wechatpay/wechatpay_v3_tradebill_ALL_2021-01-28.csv").read_bytes()
    drop(settings, "psp", "m1.csv", bill)
    drop(settings, "psp", "m2.csv", bill.replace(b"`1601959334,", b"`1601959335,"))
    report = load_landing(settings)
    assert [f.status for f in report.files] == ["loaded", "loaded"]
    assert rows(settings, "SELECT COUNT(*) FROM raw.psp_lines WHERE superseded_by IS NULL"
                )[0][0] == 6


def test_superseded_files_are_listed_once(settings, shared_data):
    data = (shared_data / "mt940/jejik/rabobank.sta").read_bytes()  # two statements
    drop(settings, "bank", "r1.sta", data)
    load_landing(settings)
    drop(settings, "bank", "r2.sta", data.replace(b"\r\n", b"\n") if b"\r\n" in data
         else data.replace(b"\n", b"\r\n"))
    second = outcome(load_landing(settings), "r2.sta")
    assert second.status == "loaded"
    assert len(second.superseded) == len(set(second.superseded)) == 1


# --- chain: node answers that carry no logs, or were cut, get reasons of their own ------------

def test_jsonrpc_error_empty_and_cut_responses_get_their_own_reasons(settings, shared_data):
    drop(settings, "chain", "eth_getLogs_poll_1.json",
         b'{"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"limit exceeded"}}')
    drop(settings, "chain", "eth_getLogs_poll_2.json", b'{"jsonrpc":"2.0","id":2,"result":[]}')
    full = (shared_data / "chain/ethereum-etl/"
            "DERIVED_usdc_mainnet_eth_getLogs_17173049-17173050.json").read_bytes()
    drop(settings, "chain", "poll_3.json", full[:full.index(b'"topics"')])  # cut early
    report = load_landing(settings)
    error, empty, cut = (outcome(report, f"poll_{i}.json") for i in (1, 2, 3))
    assert (error.status, error.reason) == ("quarantined", "jsonrpc_error")
    assert error.location
    assert (empty.status, empty.rows) == ("loaded", 0)
    assert (cut.status, cut.reason) == ("quarantined", "json_syntax")
    assert cut.location


# --- FX: a published rate that disagrees with the stored one is never silently dropped ---------

def test_a_conflicting_ecb_rate_is_flagged(settings, shared_data):
    daily = (shared_data / "fx/eurofxref.csv").read_bytes()
    drop(settings, "fx", "eurofxref.csv", daily)
    load_landing(settings)
    drop(settings, "fx", "eurofxref_again.csv", daily.replace(b"1.1172", b"1.1173"))
    second = outcome(load_landing(settings), "eurofxref_again.csv")
    assert second.status == "loaded"
    conflicts = [w for w in second.warnings if w["code"] == "rate_conflict"]
    assert len(conflicts) == 1 and "USD" in conflicts[0]["message"]
    assert "1.1172" in conflicts[0]["message"] and "1.1173" in conflicts[0]["message"]
    # The first published rate stays the one used.
    assert rows(settings, "SELECT rate_text FROM raw.fx_rates WHERE quote_currency = 'USD'"
                ) == [("1.1172",)]
    stored = rows(settings, "SELECT warnings FROM raw.landed_files "
                            "WHERE original_name = 'eurofxref_again.csv'")[0][0]
    assert "rate_conflict" in stored


def test_a_cut_history_zip_says_where(settings, shared_data):
    data = (shared_data / "fx/eurofxref-hist.zip").read_bytes()
    drop(settings, "fx", "hist.zip", data[: len(data) // 2])
    bad = outcome(load_landing(settings), "hist.zip")
    assert bad.status == "quarantined" and bad.reason == "zip_corrupt" and bad.location


# --- asset checks: duplicates by business key, freshness ---------------------------------------

def test_the_same_wechat_transactions_in_two_current_bills_fail_the_duplicates_check(
        settings, shared_data):
    bill = (shared_data / "psp/wechatpay/wechatpay_v3_tradebill_ALL_2021-01-28.csv").read_bytes()
    drop(settings, "psp", "tradebill_ALL_2021-01-28.csv", bill)
    load_landing(settings)
    assert with_writer(settings, checks.duplicate_current_psp_transactions).passed
    # The SUCCESS bill of the same day repeats the ALL bill's three payments.
    drop(settings, "psp", "tradebill_SUCCESS_2021-01-28.csv", bill.replace(b"\n", b"\r\n"))
    load_landing(settings)
    outcome_ = with_writer(settings, checks.duplicate_current_psp_transactions)
    assert not outcome_.passed and outcome_.count == 3
    assert outcome_.examples[0]["channel_reference"].startswith("42000009")


def test_an_account_whose_statement_is_late_fails_the_freshness_check(settings, shared_data):
    drop(settings, "bank", "sns.sta", (shared_data / "mt940/jejik/sns.sta").read_bytes())
    load_landing(settings)
    assert with_writer(settings, checks.late_bank_statements).passed
    drop(settings, "bank", "ing.sta", (shared_data / "mt940/jejik/ing.sta").read_bytes())  # 2010
    load_landing(settings)
    late = with_writer(settings, checks.late_bank_statements)
    assert not late.passed and late.examples[0]["last_statement_day"] == "2010-07-23"


def test_ecb_rates_older_than_the_data_fail_the_freshness_check(settings, shared_data):
    drop(settings, "fx", "eurofxref.csv", (shared_data / "fx/eurofxref.csv").read_bytes())
    drop(settings, "psp", "ch_card_sim_2026-11-02.csv", PSP_HEADER + PSP_ROWS)
    load_landing(settings)
    assert with_writer(settings, checks.stale_fx_rates).passed  # Friday's rates on Monday
    drop(settings, "psp", "ch_card_sim_2026-11-20.csv", PSP_HEADER + PSP_ROWS)
    load_landing(settings)
    stale = with_writer(settings, checks.stale_fx_rates)
    assert not stale.passed
    assert stale.examples == [{"newest_rate_day": "2026-10-30", "newest_data_day": "2026-11-20"}]


def test_fx_materialization_metadata_has_no_rate_counts_as_currency_totals(make_settings):
    import dagster as dg

    from orchestration.defs.files.assets import ASSET_BY_NAME

    settings = make_settings()
    drop(settings, "fx", "eurofxref.csv", b"Date, USD, JPY, \n30 October 2026, 1.1172, 175.68, \n")
    drop(settings, "fx", "bad.csv", b"Date, USD, \nnot a date, 1.1, \n")
    result = dg.materialize([ASSET_BY_NAME["fx_rates"]])
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["totals_minor_by_currency"].value == {}
    assert (meta["loaded"].value, meta["quarantined"].value, meta["rows"].value) == (1, 1, 2)


# --- fuzz: damaged real files through the loader itself, on both engines ---------------------

FUZZ_SAMPLES = [("bank", "mt940/jejik/rabobank.sta"),
                ("bank", "bai2/ministryofjustice/svb_us_example.bai2"),
                ("bank", "camt/genkgo/camt053.v8.xml"),
                ("psp", "psp/wechatpay/wechatpay_v3_tradebill_ALL_2021-01-28.csv"),
                ("psp", "psp/deb-sig/example-alipay-records.csv"),
                ("chain", "chain/ethereum-etl/"
                          "DERIVED_usdc_mainnet_eth_getLogs_17173049-17173050.json"),
                ("fx", "fx/eurofxref.csv")]


def test_damaged_files_never_crash_the_loader_and_end_in_one_state(settings, shared_data):
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from hypothesis import strategies as st

    from tests.ingest.files.mutations import damaged

    psp = PSP_HEADER + PSP_ROWS
    samples = [(s, (shared_data / p).read_bytes(), p.rsplit("/", 1)[-1]) for s, p in FUZZ_SAMPLES]
    samples.append(("psp", psp, "ch_card_sim_2026-11-20.csv"))
    counter = iter(range(10**6))

    @hypothesis_settings(max_examples=40, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        source, raw, name = data.draw(st.sampled_from(samples))
        mutated = data.draw(damaged(raw))
        folder = settings.landing_dir / source / f"n{next(counter)}"
        folder.mkdir(parents=True)
        (folder / name).write_bytes(mutated)
        (f,) = load_landing(settings, sources=[source]).files
        assert f.status in ("loaded", "quarantined", "duplicate")
        assert f.reason != "parser_error" and f.reason != "load_failed", f.message
        if f.status == "quarantined":
            assert f.reason and f.location
        assert rows(settings, "SELECT COUNT(*) FROM raw.landed_files WHERE file_id = $1",
                    (f.file_id,))[0][0] == 1

    run()
