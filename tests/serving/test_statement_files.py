"""Statement files for a day are written from books closed through that day: when the close has
not been published (it stopped at a blocking check, say), nothing is written from stale books."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from serving.statements import BooksNotClosed, write_statement_files
from tests.serving.admin_helpers import publish_agent_statements, publish_statement_marts

DAY = date(2026, 11, 20)


def _daily_statement(merchant_id: str, status: str) -> tuple:
    return (f"{merchant_id}:USD:{DAY}", merchant_id, "daily", DAY, DAY, DAY + timedelta(days=1),
            status, "USD", 0, 1000, 0, 0, 29, 0, 971, 0, 971)


def test_files_are_written_from_closed_books(make_settings):
    settings = make_settings()
    publish_statement_marts(settings, [_daily_statement("mer_a", "closed")], [])
    publish_agent_statements(settings, [])
    written = write_statement_files(settings, DAY)
    assert set(written) == {"mer_a"}
    assert (settings.statements_dir / DAY.isoformat() / "mer_a.pdf").is_file()


def test_books_not_closed_through_the_day_write_nothing(make_settings):
    settings = make_settings()
    publish_statement_marts(settings, [_daily_statement("mer_a", "closed"),
                                       _daily_statement("mer_b", "open")], [])
    publish_agent_statements(settings, [])
    with pytest.raises(BooksNotClosed, match=r"1 statement\(s\).*--as-of 2026-11-21"):
        write_statement_files(settings, DAY)
    assert not (settings.statements_dir / DAY.isoformat()).exists()
