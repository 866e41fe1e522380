"""Arrow fix-ups shared by the ledger extract and its SQLite reader process (pyarrow only: the
reader process imports nothing else)."""

from __future__ import annotations

import pyarrow as pa

# Rows per record batch handed to the warehouse: DuckDB converts batches on all its threads,
# and a reader process streams them from its file one at a time.
BATCH_ROWS = 122_880


def retype_null_columns(table: pa.Table) -> pa.Table:
    """A column that is NULL in every row comes back typed int64 from SQLite; make it text, which
    casts to any warehouse type."""
    for i, field in enumerate(table.schema):
        column = table.column(i)
        if column.null_count == len(column) and not pa.types.is_string(field.type):
            table = table.set_column(i, field.name, pa.nulls(len(column), pa.string()))
    return table
