"""The suites as Dagster asset checks: wired into the pipeline job, blocking where critical, and
great_expectations kept out of the API's and the definitions' import path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg

from orchestration.defs.quality.checks import check_name, gx_check
from quality.suites import PAYMENTS, SUITES


def test_importing_the_api_and_the_definitions_does_not_import_great_expectations():
    code = ("import sys, json; import serving.app, orchestration.definitions, quality.run, "
            "quality.suites; print(json.dumps(sorted(m for m in sys.modules "
            "if m.split('.')[0] == 'great_expectations')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_every_suite_is_a_check_of_the_pipeline_job():
    from orchestration.definitions import defs

    job = defs.resolve_job_def("clearhouse_pipeline")
    checks = {k.to_user_string() for k in job.asset_layer.asset_graph.asset_check_keys}
    assert {"raw/payments:gx_raw_payments", "raw/refunds:gx_raw_refunds",
            "raw/ledger_entries:gx_raw_ledger_entries", "raw/psp_lines:gx_raw_psp_lines",
            "raw/bank_statements:gx_raw_bank_statements",
            "raw/bank_statement_lines:gx_raw_bank_statement_lines",
            "raw/chain_logs:gx_raw_chain_logs", "raw/fx_rates:gx_raw_fx_rates",
            "raw/fraud_reports:gx_raw_fraud_reports",
            "fct_settlement_statements:gx_analytics_fct_settlement_statements",
            "fct_settlement_statement_lines:gx_analytics_fct_settlement_statement_lines",
            "fct_platform_revenue:gx_analytics_fct_platform_revenue",
            "fct_commissions:gx_analytics_fct_commissions",
            "fct_agent_commission_statements:gx_analytics_fct_agent_commission_statements",
            "fct_reconciliation_matches:gx_analytics_fct_reconciliation_matches",
            "fct_reconciliation_breaks:gx_analytics_fct_reconciliation_breaks",
            "fct_fraud_scores:gx_analytics_fct_fraud_scores"} <= checks
    assert len([c for c in checks if ":gx_" in c]) == len(SUITES)
    blocking = {name for name, spec in SUITES.items() if spec.blocking}
    assert blocking == {"raw.payments", "raw.refunds", "raw.ledger_entries", "raw.fx_rates",
                        "analytics.fct_settlement_statements",
                        "analytics.fct_settlement_statement_lines",
                        "analytics.fct_agent_commission_statements"}
    graph = defs.resolve_asset_graph()
    for key in graph.asset_check_keys:
        if key.name.startswith("gx_"):
            spec = next(s for s in SUITES.values() if check_name(s) == key.name)
            assert graph.get_check_spec(key).blocking is spec.blocking
    # A blocking check stops what reads its asset directly: dbt for the raw tables, publishing
    # for the statement marts.
    from orchestration.defs.dbt.assets import clearhouse_dbt_assets

    fx_readers = graph.get(dg.AssetKey(["raw", "fx_rates"])).child_keys
    assert fx_readers and fx_readers <= clearhouse_dbt_assets.keys
    published = dg.AssetKey(["published_statements"])
    for mart in ("fct_settlement_statements", "fct_settlement_statement_lines",
                 "fct_agent_commission_statements"):
        assert published in graph.get(dg.AssetKey([mart])).child_keys


def _run(amount: int):
    """raw/payments written with `amount`, the real GX check on it, an asset downstream."""
    key = dg.AssetKey(["raw", "payments"])

    @dg.asset(key=key)
    def payments() -> None:
        import duckdb

        from ingest.raw_schema import create_statements
        from warehouse.settings import get_settings

        conn = duckdb.connect(str(get_settings().duckdb_path))
        try:
            for sql in create_statements("duckdb"):
                conn.execute(sql)
            conn.execute("INSERT INTO raw.payments (id, merchant_id, amount_minor, currency, "
                         f"status, refunded_minor) VALUES ('pay_1', 'mer_1', {amount}, 'USD', "
                         "'success', 0)")
        finally:
            conn.close()

    @dg.asset(deps=[key])
    def downstream() -> None:
        return None

    defs = dg.Definitions(assets=[payments, downstream], asset_checks=[gx_check(PAYMENTS, key)],
                          jobs=[dg.define_asset_job("j", selection=dg.AssetSelection.all())])
    return defs.resolve_job_def("j").execute_in_process(instance=dg.DagsterInstance.ephemeral(),
                                                        raise_on_error=False)


def test_a_failing_blocking_check_stops_the_assets_downstream(make_settings):
    settings = make_settings()
    result = _run(-500)
    assert not result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"raw/payments"}  # downstream never ran
    (evaluation,) = [e.asset_check_evaluation_data for e in result.all_events
                     if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert not evaluation.passed
    meta = evaluation.metadata
    assert "amount_minor=-500" in meta["failed_expectations"].value
    assert meta["unexpected_counts"].value == {
        "expect_column_values_to_match_regex(amount_minor)": 1,
        "expect_column_values_to_match_regex(unrefunded_minor)": 1}
    report = settings.home_dir / "quality" / "raw.payments" / "runs"
    assert meta["report"].value.startswith(str(report))  # this evaluation's own report
    assert "amount_minor" in Path(meta["report"].value).read_text()


def test_a_passing_check_lets_the_run_through(make_settings):
    make_settings()
    result = _run(1250)
    assert result.success
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} \
        == {"raw/payments", "downstream"}
