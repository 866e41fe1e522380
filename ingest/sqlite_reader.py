"""Read SQLite query results into Arrow IPC stream files, in a process of its own.

ADBC's SQLite driver links its own copy of SQLite. Two copies of SQLite in one process break each
other's POSIX locks on a WAL database (stale reads, 'disk I/O error'; see sqlite.org/howtocorrupt
section 2.2.1), and the API's code uses Python's sqlite3. So the ledger extract runs this module
as a child process: it reads with ADBC (fast, Arrow-native) and hands back, per query, an Arrow
stream file `<name>.arrows` in record batches of `batch_rows`, and `<name>.json` with its row
count and the largest value of its cursor column. The parent reads the stream a batch at a time
(never the whole table at once: at 10M payments the ledger alone is 4.4 GB of Arrow).

Usage: python -m ingest.sqlite_reader REQUEST.json
REQUEST: {"database": path, "out_dir": path, "queries": {name: sql}, "cursors": {name: column},
          "batch_rows": int}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(request_path: str) -> None:
    # The low-level ADBC API: adbc_driver_manager.dbapi would import pandas and polars (~2 s).
    import adbc_driver_manager
    import adbc_driver_sqlite
    import pyarrow as pa
    import pyarrow.compute as pc

    from ingest.arrow_types import retype_null_columns

    request = json.loads(Path(request_path).read_text())
    out_dir = Path(request["out_dir"])
    database = adbc_driver_sqlite.connect(request["database"])
    connection = adbc_driver_manager.AdbcConnection(database)
    try:
        for name, sql in request["queries"].items():
            statement = adbc_driver_manager.AdbcStatement(connection)
            try:
                # One batch: the driver infers column types per batch, and a first batch of
                # NULLs would otherwise fix a wrong type for the rows after it.
                statement.set_options(**{"adbc.sqlite.query.batch_rows": "1000000000"})
                statement.set_sql_query(sql)
                stream, _ = statement.execute_query()
                table = pa.RecordBatchReader._import_from_c(stream.address).read_all()
            finally:
                statement.close()
            table = retype_null_columns(table)
            with pa.OSFile(str(out_dir / f"{name}.arrows"), "wb") as sink:
                with pa.ipc.new_stream(sink, table.schema) as writer:
                    writer.write_table(table, max_chunksize=request["batch_rows"])
            cursor = pc.max(table.column(request["cursors"][name])).as_py() if len(table) else None
            (out_dir / f"{name}.json").write_text(json.dumps(
                {"rows": table.num_rows, "max_cursor": cursor}))
            del table
    finally:
        connection.close()
        database.close()


if __name__ == "__main__":
    main(sys.argv[1])
