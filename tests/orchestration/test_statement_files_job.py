"""The CLI's statement-files step (orchestration.run.write_statement_files): files from closed
books, and a refusal as one clear error - not Dagster's traceback on the console."""

from __future__ import annotations

import pytest

from orchestration.run import SILENT, dagster_instance, write_statement_files
from tests.serving.admin_helpers import publish_agent_statements, publish_statement_marts
from tests.serving.helpers import sqlite_api
from tests.serving.test_statement_files import DAY, _daily_statement


def test_closed_books_give_files(tmp_path, make_settings):
    settings, _ = sqlite_api(tmp_path, make_settings)
    publish_statement_marts(settings, [_daily_statement("mer_a", "closed")], [])
    publish_agent_statements(settings, [])
    assert write_statement_files(dagster_instance(settings, ephemeral=True), DAY, SILENT) == 1
    assert (settings.statements_dir / DAY.isoformat() / "mer_a.csv").is_file()


def test_books_left_open_are_one_clear_error(tmp_path, make_settings, capfd):
    settings, _ = sqlite_api(tmp_path, make_settings)
    publish_statement_marts(settings, [_daily_statement("mer_a", "closed"),
                                       _daily_statement("mer_b", "open")], [])
    publish_agent_statements(settings, [])
    with pytest.raises(RuntimeError, match=rf"no statement files for {DAY}: .*1 statement\(s\).*"
                                           r"--as-of 2026-11-21"):
        write_statement_files(dagster_instance(settings, ephemeral=True), DAY, SILENT)
    printed = capfd.readouterr()
    assert "Traceback" not in printed.out + printed.err
    assert not (settings.statements_dir / DAY.isoformat()).exists()
