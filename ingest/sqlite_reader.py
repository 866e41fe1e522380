"""Read SQLite query results into Arrow IPC files, in a process of its own.

ADBC's SQLite driver links its own copy of SQLite. Two copies of SQLite in one process break each
other's POSIX locks on a WAL database (stale reads, 'disk I/O error'; see sqlite.org/howtocorrupt
section 2.2.1), and the API's code uses Python's sqlite3. So the ledger extract runs this module
as a child process: it reads with ADBC (fast, Arrow-native) and hands back Arrow files.

Usage: python -m ingest.sqlite_reader REQUEST.json
REQUEST: {"database": path, "out_dir": path, "queries": {name: [sql, [params...]]}}
"""

from __future__ import annotations

import json
import sys
from contextlib import closing
from pathlib import Path


def main(request_path: str) -> None:
    import adbc_driver_sqlite.dbapi as adbc
    import pyarrow as pa

    request = json.loads(Path(request_path).read_text())
    out_dir = Path(request["out_dir"])
    with closing(adbc.connect(request["database"])) as conn:
        for name, (sql, params) in request["queries"].items():
            with closing(conn.cursor()) as cur:
                # One batch: the driver infers column types per batch, and a first batch of
                # NULLs would otherwise fix a wrong type for the rows after it.
                cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": "1000000000"})
                cur.execute(sql, tuple(params))
                table = cur.fetch_arrow_table()
            with pa.OSFile(str(out_dir / f"{name}.arrow"), "wb") as sink:
                with pa.ipc.new_file(sink, table.schema) as writer:
                    writer.write_table(table)


if __name__ == "__main__":
    main(sys.argv[1])
