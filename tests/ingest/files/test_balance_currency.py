"""A statement balance counts minor units of its own currency: camt states one per balance
(genkgo's minimal samples close in SEK on a EUR account), and the raw table keeps it, so a
reader never takes -27.00 SEK for -27.00 EUR; the continuity check compares currencies too."""

from __future__ import annotations

import datetime as dt

from ingest.files.checks import statement_balance_continuity
from ingest.files.formats import camt
from ingest.files.loader import load_landing
from ingest.files.records import ParsedFile, Statement
from tests.ingest.files.warehouse_reads import with_writer


def _statement(statement_id: str, day: int, opening: int, closing: int,
               opening_currency: str = "EUR") -> Statement:
    return Statement(
        index=0, message_type="camt.053", account_id="NL26VAYB8060476890",
        statement_id=statement_id, sequence_number=str(day), currency="EUR",
        from_date=dt.date(2026, 11, day), to_date=dt.date(2026, 11, day),
        opening_balance_minor=opening, opening_date=dt.date(2026, 11, day - 1),
        closing_balance_minor=closing, closing_date=dt.date(2026, 11, day),
        opening_currency=opening_currency, closing_currency="EUR")


def test_the_raw_statement_keeps_each_balance_currency(settings, shared_data):
    bank = settings.landing_dir / "bank"
    bank.mkdir(parents=True, exist_ok=True)
    (bank / "minimal.xml").write_bytes(
        (shared_data / "camt/genkgo/camt053.v2.minimal.xml").read_bytes())
    (report,) = load_landing(settings).files
    assert report.status == "loaded"
    rows = with_writer(settings, lambda w: w.fetchall(
        "SELECT currency, opening_balance_minor, opening_currency, closing_balance_minor, "
        "closing_currency, balance_check FROM raw.bank_statements"))
    assert [(c, int(o), oc, int(cl), cc, check) for c, o, oc, cl, cc, check in rows] == [
        ("EUR", 1815, "EUR", -2700, "SEK", "mismatch")]


def test_an_opening_in_another_currency_than_the_last_closing_is_a_gap(settings):
    bank = settings.landing_dir / "bank"
    bank.mkdir(parents=True, exist_ok=True)
    # the same figure, 500, but the second statement says its opening is 5.00 SEK
    for name, statement in (("d1.xml", _statement("S-1", 2, 0, 500)),
                            ("d2.xml", _statement("S-2", 3, 500, 500, opening_currency="SEK"))):
        (bank / name).write_bytes(camt.render(ParsedFile("camt", "bank_statement", [statement])))
    assert {f.status for f in load_landing(settings).files} == {"loaded"}
    outcome = with_writer(settings, statement_balance_continuity)
    assert not outcome.passed and outcome.count == 1
    assert outcome.examples[0]["statement"].endswith(":0")
