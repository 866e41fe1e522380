"""The landing-zone loader on DuckDB and Postgres: each file once, quarantine with a reason,
supersession of corrected re-sends, one bad file never blocks the rest."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest

from ingest.files import formats
from ingest.files.checks import (
    duplicate_current_statements,
    late_psp_channels,
    statement_balance_continuity,
)
from ingest.files.loader import load_landing
from ingest.files.records import ParsedFile, PspLine, Statement, StatementLine
from ingest.files.warehouse_io import open_files_writer
from tests.ingest.files.warehouse_reads import rows


def psp_file(channel="ch_card_sim", day=dt.date(2026, 11, 20), amounts=(1000, 2550)):
    at = dt.datetime(day.year, day.month, day.day, 12)
    pay_day = day + dt.timedelta(days=1)
    lines, net = [], 0
    for i, gross in enumerate(amounts):
        fee = gross * 29 // 1000
        net += gross - fee
        lines.append(PspLine(line_number=i + 2, record_type="payment", channel=channel,
                             channel_reference=f"crd_{i}", merchant_reference=f"pay_{i}",
                             transaction_at=at, currency="USD", gross_minor=gross, fee_minor=fee,
                             net_minor=gross - fee, payout_id="po_1", payout_date=pay_day))
    lines.append(PspLine(line_number=len(lines) + 2, record_type="payout", channel=channel,
                         channel_reference=None, merchant_reference=None, transaction_at=at,
                         currency="USD", gross_minor=net, fee_minor=0, net_minor=net,
                         payout_id="po_1", payout_date=pay_day))
    name = f"{channel}_{day.isoformat()}.csv"
    return name, formats.module("psp_csv").render(
        ParsedFile(format="psp_csv", kind="psp_bill", psp_lines=lines))


def mt940_statement(day: dt.date, opening: int, amounts: list[int], sequence: str) -> bytes:
    lines = [StatementLine(statement_index=0, line_number=i, booking_date=day, value_date=day,
                           amount_minor=a, currency="EUR", bank_reference=f"B{i}",
                           remittance=f"PAYOUT po_{i}") for i, a in enumerate(amounts)]
    statement = Statement(index=0, message_type="mt940", account_id="NL91ABNA0417164300",
                          statement_id=f"ST{day:%Y%m%d}", sequence_number=sequence,
                          currency="EUR", opening_balance_minor=opening, opening_date=day,
                          closing_balance_minor=opening + sum(amounts), closing_date=day,
                          from_date=day, to_date=day)
    return formats.module("mt940").render(ParsedFile(
        format="mt940", kind="bank_statement", statements=[statement], statement_lines=lines))


def drop(settings, source: str, name: str, data: bytes):
    folder = settings.landing_dir / source
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def test_each_file_loads_once_and_bad_files_are_quarantined(settings, shared_data):
    psp_name, psp_bytes = psp_file()
    drop(settings, "psp", psp_name, psp_bytes)
    drop(settings, "fx", "eurofxref.csv", (shared_data / "fx" / "eurofxref.csv").read_bytes())
    drop(settings, "psp", "ch_card_sim_2026-11-21.csv", b"this is not a settlement file\n")
    drop(settings, "bank", "stmt.sta", mt940_statement(dt.date(2026, 11, 20), 0, [500], "1"))

    first = load_landing(settings)
    assert first.summary()["loaded"] == 3 and first.summary()["quarantined"] == 1
    bad = next(f for f in first.files if f.status == "quarantined")
    assert bad.reason and bad.location
    # The bad file sits in quarantine next to a machine-readable reason; landing is empty.
    sidecars = list((settings.quarantine_dir / "psp").glob("*.reason.json"))
    assert len(sidecars) == 1 and json.loads(sidecars[0].read_text())["reason"] == bad.reason
    assert not [p for p in settings.landing_dir.rglob("*") if p.is_file()]

    counts = rows(settings, "SELECT status, count(*) FROM raw.landed_files GROUP BY status "
                            "ORDER BY status")
    assert counts == [("loaded", 3), ("quarantined", 1)]
    assert rows(settings, "SELECT count(*) FROM raw.psp_lines") == [(3,)]
    usd = rows(settings, "SELECT rate_text FROM raw.fx_rates WHERE quote_currency = 'USD'")
    assert usd == [("1.1172",)]
    loaded_psp = next(f for f in first.files if f.format == "psp_csv")
    assert loaded_psp.totals == {"USD": str(1000 + 2550 + sum(
        g - g * 29 // 1000 for g in (1000, 2550)))}

    # The same files dropped again (an operator retry, a channel re-sending): nothing doubles.
    drop(settings, "psp", psp_name, psp_bytes)
    drop(settings, "fx", "eurofxref.csv", (shared_data / "fx" / "eurofxref.csv").read_bytes())
    drop(settings, "psp", "ch_card_sim_2026-11-21.csv", b"this is not a settlement file\n")
    second = load_landing(settings)
    assert second.summary()["duplicates"] == 3 and second.summary()["loaded"] == 0
    assert rows(settings, "SELECT count(*) FROM raw.psp_lines") == [(3,)]
    assert rows(settings, "SELECT count(*) FROM raw.landed_files") == [(4,)]
    published = len(formats.module("ecb").parse(shared_data / "fx" / "eurofxref.csv").fx_rates)
    assert rows(settings, "SELECT count(*) FROM raw.fx_rates") == [(published,)]


def test_corrected_resend_supersedes(settings):
    name, original = psp_file(amounts=(1000, 2550))
    drop(settings, "psp", name, original)
    load_landing(settings)
    _, corrected = psp_file(amounts=(1000, 2550, 700))
    drop(settings, "psp", name, corrected)
    report = load_landing(settings)
    (outcome,) = report.files
    assert outcome.status == "loaded" and len(outcome.superseded) == 1
    current = rows(settings, "SELECT count(*) FROM raw.psp_lines WHERE superseded_by IS NULL")
    assert current == [(4,)]
    assert rows(settings, "SELECT count(*) FROM raw.psp_lines") == [(7,)]
    recorded = rows(settings, "SELECT superseded_file_id, superseding_file_id "
                              "FROM raw.file_supersessions")
    assert recorded == [(outcome.superseded[0], outcome.file_id)]

    # Bank statements: same account + sequence + day, corrected amounts.
    day = dt.date(2026, 11, 20)
    drop(settings, "bank", "a.sta", mt940_statement(day, 1000, [500, -200], "7"))
    load_landing(settings)
    drop(settings, "bank", "a-corrected.sta", mt940_statement(day, 1000, [500, -250], "7"))
    assert load_landing(settings).files[0].superseded
    current_lines = rows(settings, "SELECT count(*) FROM raw.bank_statement_lines "
                                   "WHERE superseded_by IS NULL")
    assert current_lines == [(2,)]
    writer = open_files_writer(settings)
    try:
        assert duplicate_current_statements(writer).passed
    finally:
        writer.close()


def test_checks_find_gaps_and_late_channels(settings):
    drop(settings, "bank", "d1.sta", mt940_statement(dt.date(2026, 11, 19), 0, [500], "1"))
    drop(settings, "bank", "d2.sta", mt940_statement(dt.date(2026, 11, 20), 500, [100], "2"))
    drop(settings, "bank", "d3.sta", mt940_statement(dt.date(2026, 11, 21), 650, [1], "3"))
    for channel, day in (("ch_a", dt.date(2026, 11, 18)), ("ch_b", dt.date(2026, 11, 21))):
        name, data = psp_file(channel=channel, day=day)
        drop(settings, "psp", name, data)
    load_landing(settings)
    writer = open_files_writer(settings)
    try:
        continuity = statement_balance_continuity(writer)
        late = late_psp_channels(writer)
    finally:
        writer.close()
    # d3 opens at 650 but d2 closed at 600.
    assert not continuity.passed and continuity.count == 1
    assert continuity.examples[0]["previous_closing_minor"] == "600"
    assert not late.passed and [e["channel"] for e in late.examples] == ["ch_a"]


def test_a_crashing_parser_quarantines_only_its_file(settings, monkeypatch):
    module = formats.module("psp_csv")
    real_parse = module.parse

    def flaky(source, name=None):
        if name and name.startswith("ch_boom"):
            raise RuntimeError("parser bug")
        return real_parse(source, name)

    monkeypatch.setattr(module, "parse", flaky)
    for channel in ("ch_boom", "ch_fine"):
        name, data = psp_file(channel=channel)
        drop(settings, "psp", name, data)
    report = load_landing(settings)
    assert sorted((f.status, f.reason) for f in report.files) == [
        ("loaded", None), ("quarantined", "parser_error")]
    assert rows(settings, "SELECT count(*) FROM raw.psp_lines") == [(3,)]


def test_cli_ingest_lands_and_loads(make_settings, shared_data, tmp_path, capsys):
    from clearhouse.cli import main

    make_settings()
    src = tmp_path / "eurofxref.csv"
    shutil.copyfile(shared_data / "fx" / "eurofxref.csv", src)
    main(["ingest", str(src)])
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out[0]["status"] == "loaded" and out[0]["source"] == "fx"
    assert out[-1]["loaded"] == 1
    bad = tmp_path / "junk.txt"
    bad.write_text("nothing here")
    with pytest.raises(SystemExit) as stop:
        main(["ingest", str(bad)])
    assert stop.value.code == 1
    assert json.loads(capsys.readouterr().out.splitlines()[0])["reason"] == "unknown_format"


def wechat_bill(amounts: list[int]) -> bytes:
    at = dt.datetime(2026, 11, 20, 4)
    lines = [PspLine(line_number=i + 2, record_type="payment", channel="wechat_pay",
                     channel_reference=f"42000{i:010d}", merchant_reference=f"pay_{i}",
                     transaction_at=at, currency="CNY", gross_minor=a, fee_minor=0,
                     net_minor=a, status="SUCCESS") for i, a in enumerate(amounts)]
    return formats.module("wechat").render(ParsedFile(format="wechat", kind="psp_bill",
                                                      psp_lines=lines))


def test_two_bills_of_one_day_do_not_supersede_each_other(settings):
    # Only the PSP settlement CSV is one file per channel and day; other bills go by name.
    drop(settings, "psp", "wechatpay_tradebill_ALL_2026-11-20.csv", wechat_bill([100, 200]))
    drop(settings, "psp", "wechatpay_tradebill_SUCCESS_2026-11-20.csv", wechat_bill([300]))
    report = load_landing(settings)
    assert [f.status for f in report.files] == ["loaded", "loaded"]
    assert not any(f.superseded for f in report.files)
    assert rows(settings, "SELECT count(*) FROM raw.psp_lines WHERE superseded_by IS NULL") == [
        (3,)]


def test_amounts_beyond_int64_load_exactly(settings):
    at = dt.datetime(2026, 11, 20, 12)
    gross, fee = 123456789012345678901, 370370367037037037
    lines = [PspLine(line_number=2, record_type="payment", channel="ch_crypto_sim",
                     channel_reference="0xabc", merchant_reference="pay_eth", transaction_at=at,
                     currency="ETH", gross_minor=gross, fee_minor=fee, net_minor=gross - fee,
                     payout_id="po_eth", payout_date=dt.date(2026, 11, 21)),
             PspLine(line_number=3, record_type="payout", channel="ch_crypto_sim",
                     channel_reference=None, merchant_reference=None, transaction_at=at,
                     currency="ETH", gross_minor=gross - fee, fee_minor=0,
                     net_minor=gross - fee, payout_id="po_eth",
                     payout_date=dt.date(2026, 11, 21))]
    data = formats.module("psp_csv").render(ParsedFile(format="psp_csv", kind="psp_bill",
                                                       psp_lines=lines))
    drop(settings, "psp", "ch_crypto_sim_2026-11-20.csv", data)
    (outcome,) = load_landing(settings).files
    assert outcome.status == "loaded" and outcome.totals == {"ETH": str(2 * gross - fee)}
    stored = rows(settings, "SELECT CAST(gross_minor AS VARCHAR(40)), CAST(net_minor AS "
                            "VARCHAR(40)) FROM raw.psp_lines ORDER BY line_number")
    assert stored == [(str(gross), str(gross - fee)), (str(gross - fee), str(gross - fee))]
