"""raw.* tables: the incremental extract of the API's database."""

import dagster as dg

from ingest.ledger import extract_ledger
from ingest.raw_schema import RAW_TABLES
from warehouse.settings import get_settings

RAW_KEYS = {table.name: dg.AssetKey(["raw", table.name]) for table in RAW_TABLES}


@dg.multi_asset(
    specs=[dg.AssetSpec(key, group_name="ingest", kinds={"python", "sql"},
                        description=f"raw.{name}: incremental copy of the API database's {name}")
           for name, key in RAW_KEYS.items()],
    can_subset=False,
)
def raw_ledger(context: dg.AssetExecutionContext):
    """Extract every table changed since its high-water mark, in one warehouse transaction."""
    result = extract_ledger(get_settings())
    context.log.info(f"extracted {result.rows} rows in {result.seconds:.2f} s")
    for table in result.tables:
        yield dg.MaterializeResult(
            asset_key=RAW_KEYS[table.table],
            metadata={"rows_extracted": table.rows,
                      "high_water": str(table.high_water) if table.high_water else "",
                      "seconds": round(result.seconds, 3)})
