"""raw file sources: bank statements, PSP bills, chain logs, FX rates and fraud reports from the
landing zone.

One asset per source family; each materialization loads whatever waits in its landing folders
(idempotent: files are known by content hash) and reports files, rows, totals and quarantines.
"""


import json
from dataclasses import dataclass

import dagster as dg

from ingest.files import checks
from ingest.files.loader import LoadReport, load_landing
from ingest.files.warehouse_io import open_files_writer
from warehouse.settings import get_settings


@dataclass(frozen=True)
class FileSource:
    asset_name: str
    sources: tuple[str, ...]  # landing folders
    tables: tuple[str, ...]  # the raw tables it fills: one asset key each (dbt sources map to them)
    description: str


FILE_SOURCES = (
    FileSource("bank_statements", ("bank", "camt", "mt940", "bai2"),
               ("bank_statements", "bank_statement_lines"),
               "Bank statements (camt.052/053/054, MT940/MT942, BAI2) from landing/bank etc."),
    FileSource("psp_bills", ("psp", "wechat", "alipay"), ("psp_lines",),
               "PSP settlement CSVs, WeChat Pay and Alipay bills from landing/psp etc."),
    FileSource("chain_logs", ("chain",), ("chain_logs", "chain_heads"),
               "ERC-20 Transfer logs (eth_getLogs) from landing/chain"),
    FileSource("fx_rates", ("fx",), ("fx_rates",), "ECB euro reference rates from landing/fx"),
    FileSource("fraud_reports", ("fraud_reports",), ("fraud_reports",),
               "Late fraud labels: chargebacks and fraud reports from landing/fraud_reports"),
)


def _metadata(report: LoadReport) -> dict:
    totals: dict[str, int] = {}
    for f in report.files:
        if f.format == "ecb_fx":  # its totals are counts of rates and dates, not money
            continue
        for currency, amount in f.totals.items():
            if amount.lstrip("-").isdigit():
                totals[currency] = totals.get(currency, 0) + int(amount)
    rows = "\n".join(f"| {f.path.rsplit('/', 1)[-1]} | {f.status} | {f.format or ''} | {f.rows} | "
                     f"{f.reason or ''} {f.location or ''} |" for f in report.files[:50])
    return {
        **report.summary(),
        "totals_minor_by_currency": dg.MetadataValue.json({k: str(v) for k, v in totals.items()}),
        "files": dg.MetadataValue.md(
            "| file | status | format | rows | reason |\n|---|---|---|---|---|\n" + rows)
        if report.files else "no new files",
        "warnings": dg.MetadataValue.json(
            [w | {"file": f.path.rsplit("/", 1)[-1]} for f in report.files for w in f.warnings][:50]),
    }


def _build_asset(source: FileSource) -> dg.AssetsDefinition:
    specs = [dg.AssetSpec(["raw", table], group_name="ingest", kinds={"python", "sql"},
                          description=f"raw.{table}: {source.description}")
             for table in source.tables]

    @dg.multi_asset(name=f"load_{source.asset_name}", specs=specs, can_subset=False)
    def _asset(context: dg.AssetExecutionContext):
        report = load_landing(get_settings(), sources=list(source.sources))
        for f in report.files:
            if f.status == "quarantined":
                context.log.warning(f"quarantined {f.path}: {f.reason} at {f.location}: "
                                    f"{f.message}")
        context.log.info(json.dumps(report.summary()))
        metadata = _metadata(report)
        for spec in specs:
            yield dg.MaterializeResult(asset_key=spec.key, metadata=metadata)

    return _asset


FILE_ASSETS = [_build_asset(s) for s in FILE_SOURCES]
ASSET_BY_NAME = {s.asset_name: a for s, a in zip(FILE_SOURCES, FILE_ASSETS, strict=True)}


def _check(table: str, name: str, fn, *, blocking: bool, description: str):
    @dg.asset_check(asset=dg.AssetKey(["raw", table]), name=name, blocking=blocking,
                    description=description)
    def _run() -> dg.AssetCheckResult:
        writer = open_files_writer(get_settings())
        try:
            outcome = fn(writer)
        finally:
            writer.close()
        return dg.AssetCheckResult(
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
            description=outcome.description,
            metadata={"count": outcome.count,
                      "examples": dg.MetadataValue.json(
                          json.loads(json.dumps(outcome.examples, default=str)))})

    return _run


FILE_CHECKS = [
    _check("fraud_reports", "one_current_row_per_report", checks.duplicate_current_fraud_reports,
           blocking=True, description="A later file's report supersedes the earlier row."),
    _check("bank_statements", "balance_continuity", checks.statement_balance_continuity,
           blocking=False, description="Each statement opens at the previous one's closing."),
    _check("bank_statements", "statement_arithmetic", checks.statement_arithmetic,
           blocking=False, description="Opening + lines = closing on every statement."),
    _check("bank_statement_lines", "no_duplicate_lines",
           lambda w: checks.duplicate_rows(w, "bank_statement_lines", "statement_line_id"),
           blocking=True, description="Every statement line is loaded once."),
    _check("bank_statements", "one_current_file_per_statement",
           checks.duplicate_current_statements, blocking=True,
           description="A re-sent statement supersedes the earlier file."),
    _check("psp_lines", "channel_files_on_time", checks.late_psp_channels, blocking=False,
           description="Every channel's settlement file has arrived for the newest day."),
    _check("psp_lines", "no_duplicate_lines",
           lambda w: checks.duplicate_rows(w, "psp_lines", "psp_line_id"), blocking=True,
           description="Every PSP line is loaded once."),
    _check("psp_lines", "no_transaction_in_two_current_files",
           checks.duplicate_current_psp_transactions, blocking=False,
           description="A PSP transaction is current in one file only (else it counts twice)."),
    _check("bank_statements", "statements_on_time", checks.late_bank_statements,
           blocking=False, description="Freshness: every account's statement has arrived for "
           "the newest day."),
    _check("fx_rates", "fx_rates_fresh", checks.stale_fx_rates, blocking=False,
           description="Freshness: the newest ECB rates are at most 4 days older than the "
           "newest settlement or statement day."),
    _check("chain_logs", "no_duplicate_logs",
           lambda w: checks.duplicate_rows(w, "chain_logs", "chain_log_id"), blocking=True,
           description="Every log (and its removal) is loaded once."),
    _check("fx_rates", "one_rate_per_day_and_currency",
           lambda w: checks.duplicate_rows(w, "fx_rates", "fx_rate_id"), blocking=True,
           description="One published rate per source, day and currency pair."),
]
