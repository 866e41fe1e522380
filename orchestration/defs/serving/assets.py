"""What the API and merchants read: published mart snapshots and statement files."""

from datetime import date

import dagster as dg
from dagster_dbt import get_asset_key_for_model

from orchestration.defs.dbt.assets import clearhouse_dbt_assets
from orchestration.partitions import STATEMENT_DAYS
from serving.statements import BooksNotClosed, write_statement_files
from warehouse.published import PUBLISHED_MARTS, publish_from_duckdb
from warehouse.settings import get_settings

MART_KEYS = [get_asset_key_for_model([clearhouse_dbt_assets], mart) for mart in PUBLISHED_MARTS]


@dg.asset(deps=MART_KEYS, group_name="serving", kinds={"duckdb", "parquet"})
def published_statements(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Parquet snapshots of the statement marts for the API (DuckDB warehouse only: the API
    must never open the live DuckDB file). On Postgres the API reads the marts directly."""
    settings = get_settings()
    if settings.warehouse_engine != "duckdb":
        return dg.MaterializeResult(metadata={"published": "not needed: Postgres warehouse"})
    import duckdb

    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        counts = publish_from_duckdb(settings, con)
    context.log.info(f"published {counts}")
    return dg.MaterializeResult(metadata={f"rows_{k}": v for k, v in counts.items()})


def _merchant_names() -> dict[str, str]:
    """Names for the PDF headers, from the API's database (the source of truth for names)."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from warehouse.connections import oltp_engine, read_only
    from warehouse.models import Agent, Merchant

    with Session(read_only(oltp_engine())) as session:
        return (dict(session.execute(select(Merchant.id, Merchant.name)).all())
                | dict(session.execute(select(Agent.id, Agent.name)).all()))


@dg.asset(deps=[published_statements], partitions_def=STATEMENT_DAYS, group_name="serving",
          kinds={"csv", "pdf"})
def merchant_statement_files(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Each merchant's statement for the day as CSV and PDF, under
    HOME/statements/<day>/<merchant>.csv|pdf, and each agent's commission statement under
    HOME/statements/<day>/agents/<agent>.csv|pdf."""
    settings = get_settings()
    day = date.fromisoformat(context.partition_key)
    try:
        written = write_statement_files(settings, day, names=_merchant_names())
    except BooksNotClosed as exc:
        raise dg.Failure(description=str(exc)) from None
    table = "\n".join(f"| {m} | {size} |" for m, size in sorted(written.items())[:20])
    return dg.MaterializeResult(metadata={
        "statements_written": len(written),
        "folder": dg.MetadataValue.path(str(settings.statements_dir / day.isoformat())),
        "files": dg.MetadataValue.md("| merchant or agent | bytes |\n|---|---|\n" + table) if written
        else "none",
    })
