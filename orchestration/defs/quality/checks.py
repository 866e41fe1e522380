"""Great Expectations suites (quality/suites.py) as Dagster asset checks.

Each check runs after the asset that writes its table, in its own step: the raw ledger checks
after `raw_ledger`, the file tables' checks after their loader (`load_psp_bills`,
`load_bank_statements`, `load_chain_logs`, `load_fx_rates`, `load_fraud_reports`), the marts'
checks after the whole `clearhouse_dbt_assets` step, i.e. after dbt has exited and released the
DuckDB file, and the fraud scores' check after `fct_fraud_scores`. Checks open the warehouse
read-only and close it (quality/run.py waits while a parallel step holds the DuckDB file
read-write). A blocking check that fails stops the assets that read its asset directly: a bad
raw payments, refunds, ledger or FX rates table stops dbt; bad merchant or agent statements
(or their lines) stop publishing.
great_expectations is imported when a check runs, never when the definitions load.
"""

from __future__ import annotations

import dagster as dg
from dagster_dbt import get_asset_key_for_model

from orchestration.defs.dbt.assets import clearhouse_dbt_assets
from quality.suites import SUITES, SuiteSpec
from warehouse.settings import get_settings


def check_name(spec: SuiteSpec) -> str:
    return "gx_" + spec.name.replace(".", "_")


def gx_check(spec: SuiteSpec, asset_key: dg.AssetKey) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset_key, name=check_name(spec), blocking=spec.blocking,
                    description=f"Great Expectations suite {spec.name}: {spec.description}")
    def _check() -> dg.AssetCheckResult:
        from quality.run import validate

        result = validate(get_settings(), spec.name)
        return dg.AssetCheckResult(
            passed=result.success,
            severity=dg.AssetCheckSeverity.ERROR if spec.blocking else dg.AssetCheckSeverity.WARN,
            description=("passed" if result.success else "failed: " + "; ".join(
                f.line() for f in result.failures))[:1000],
            metadata={
                "failed_expectations": dg.MetadataValue.md(result.markdown()),
                "unexpected_counts": dg.MetadataValue.json(
                    {f"{f.expectation}({f.column or ''})": f.unexpected_count
                     for f in result.failures}),
                "rows": result.rows,
                "expectations": result.evaluated,
                "seconds": result.seconds,
                "report": dg.MetadataValue.path(str(result.report_path)),
            })

    return _check


# Tables a Python asset (not dbt) writes under analytics: the asset's key.
# fct_fraud_scores: orchestration/defs/fraud/assets.py (ml/batch.py writes the table).
PYTHON_ASSETS = {"analytics.fct_fraud_scores": dg.AssetKey(["fct_fraud_scores"])}


def _asset_key(table: str) -> dg.AssetKey:
    schema, name = table.split(".", 1)
    if table in PYTHON_ASSETS:
        return PYTHON_ASSETS[table]
    if schema == "raw":
        return dg.AssetKey(["raw", name])  # raw_ledger and the file loaders: raw/<table>
    return get_asset_key_for_model([clearhouse_dbt_assets], name)


QUALITY_CHECKS = [gx_check(spec, _asset_key(name)) for name, spec in SUITES.items()]
