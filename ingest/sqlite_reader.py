"""Read SQLite query results into Arrow IPC files, in a process of its own.

ADBC's SQLite driver links its own copy of SQLite. Two copies of SQLite in one process break each
other's POSIX locks on a WAL database (stale reads, 'disk I/O error'; see sqlite.org/howtocorrupt
section 2.2.1), and the API's code uses Python's sqlite3. So the ledger extract runs this module
as a child process: it reads with ADBC (fast, Arrow-native) and hands back Arrow files.

Usage: python -m ingest.sqlite_reader REQUEST.json
REQUEST: {"database": path, "out_dir": path, "queries": {name: sql}}
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
            with pa.OSFile(str(out_dir / f"{name}.arrow"), "wb") as sink:
                with pa.ipc.new_file(sink, table.schema) as writer:
                    writer.write_table(table)
    finally:
        connection.close()
        database.close()


if __name__ == "__main__":
    main(sys.argv[1])
