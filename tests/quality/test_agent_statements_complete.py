"""Issue 7 item 8: suites for each finance mart with "row-count bounds, money invariants";
"critical ones block downstream assets". The blocking suite on
analytics.fct_agent_commission_statements ties "an agent's latest closing = its fct_commissions
rows summed" (README, Data quality) - but only for agents that have a statement. An agent whose
commissions exist and whose statement is missing (or a statements mart that came out empty)
passes the blocking check, so publishing goes on and that agent gets no statement."""

from __future__ import annotations

import pytest

from quality.run import validate
from tests.quality.conftest import Warehouse, mart_statements
from tests.quality.test_mart_suites import (
    AGENT_STATEMENTS,
    COMMISSIONS,
    _agent_statement,
    _commission,
)
from warehouse.settings import Settings


@pytest.fixture
def warehouse(tmp_path):
    from ingest.files.schema import create_statements as file_statements
    from ingest.raw_schema import create_statements as raw_statements

    settings = Settings(home=tmp_path / "home", environment="test")
    settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    wh = Warehouse(settings)
    wh.execute(*raw_statements("duckdb"), *file_statements("duckdb"), *mart_statements("duckdb"))
    return wh


def test_an_agent_with_commissions_and_no_statement_fails_the_blocking_suite(warehouse):
    warehouse.execute(COMMISSIONS + ", ".join([
        _commission("pay_1", "payment", "ag_1", 1, "percentage", 100),
        _commission("pay_2", "payment", "ag_2", 1, "percentage", 700),  # ag_2 is owed 7.00
    ]))
    warehouse.execute(AGENT_STATEMENTS + _agent_statement("ag_1", 11, 0, 100, 0))
    result = validate(warehouse.settings, "analytics.fct_agent_commission_statements")
    # Expected: fails (ag_2's 700 in fct_commissions is on no statement); actual: passes.
    assert not result.success


def test_an_empty_statements_mart_fails_when_commissions_exist(warehouse):
    warehouse.execute(COMMISSIONS + _commission("pay_1", "payment", "ag_1", 1, "percentage", 100))
    result = validate(warehouse.settings, "analytics.fct_agent_commission_statements")
    # Expected: fails (a row-count bound: not empty once commissions exist); actual: passes.
    assert not result.success
