"""Benchmark the spine: N payments straight into the API's database, then time the ledger extract
and the dbt build (all models, then the foundation's models alone: fct_payments, the settlement
statements, rpt_merchant_daily and what they stand on). Prints rows/s and peak memory; never a
pass/fail test.
On DuckDB it then times the floor (bench/floor.sql: the DAG's core queries hand-written over the
same raw.* inputs) and prints end-to-end (extract + dbt build) / floor as a ratio.

    .venv/bin/python bench/pipeline.py --payments 1000000
    .venv/bin/python bench/pipeline.py --payments 1000000 \
        --database-url postgresql://postgres@127.0.0.1:5432/bench_api --warehouse-url ...
    .venv/bin/python bench/pipeline.py --home /path/to/kept/home --reuse   # again, same data

--reuse skips the generation and times the extract (a first load: the warehouse file is
deleted first, on DuckDB) and the build on the API database already in --home.

Without URLs it uses a fresh SQLite + DuckDB under a temporary HOME (the embedded default).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clearhouse.simulator import CURRENCIES, METHODS, _amount_minor, set_up_merchants  # noqa: E402
from warehouse.connections import dbt_env, oltp_engine, to_libpq_url  # noqa: E402
from warehouse.ids import new_id  # noqa: E402
from warehouse.migrate import upgrade  # noqa: E402
from warehouse.settings import get_settings  # noqa: E402

DBT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"
FLOOR_SQL = Path(__file__).resolve().with_name("floor.sql")
TS = "%Y-%m-%d %H:%M:%S.%f"


def generate(n: int, merchant_ids: list[str], seed: int = 1):
    """Payments (95% captured), their ledger legs, and refunds for 5% of captures."""
    rng = random.Random(seed)
    day = datetime(2026, 11, 20, tzinfo=UTC)
    now = datetime.now(UTC)
    codes = list(CURRENCIES)
    weights = [CURRENCIES[c][0] for c in codes]
    channel = {"card": "ch_card_sim", "apple_pay": "ch_applepay_sim", "bank_transfer": "ch_bank_sim",
               "wechat_pay": "ch_wechat_sim", "alipay": "ch_alipay_sim", "e_cny": "ch_ecny_sim",
               "crypto": "ch_crypto_sim"}
    payments, ledger, refunds = [], [], []
    base_ms = int(now.timestamp() * 1000)
    for i in range(n):
        at = day + timedelta(seconds=rng.randrange(86400), microseconds=rng.randrange(10**6))
        code = rng.choices(codes, weights=weights)[0]
        amount = _amount_minor(rng, code)
        method = rng.choice(METHODS[code])
        merchant = rng.choice(merchant_ids)
        pid = new_id("payment", at_ms=base_ms + i)
        ok = rng.random() >= 0.05
        refunded = amount if ok and rng.random() < 0.05 else 0
        status = ("refunded" if refunded else "success") if ok else "failed"
        payments.append((pid, merchant, f"o{i}", amount, code, status, method, channel[method],
                         f"ref_{i}", None if ok else "card_declined", "approve", f"cus_{i % 50000}",
                         refunded, at if ok else None, at, now))
        if ok:
            txn = f"ltx_b{i}"
            ledger.append((txn, "capture", pid, None, merchant, f"channel_receivable:{channel[method]}",
                           code, amount, at, now))
            ledger.append((txn, "capture", pid, None, merchant, f"merchant_payable:{merchant}",
                           code, -amount, at, now))
        if refunded:
            rid = new_id("refund", at_ms=base_ms + i)
            r_at = at + timedelta(minutes=30)
            refunds.append((rid, pid, merchant, amount, code, "succeeded", None, r_at, r_at, now))
            txn = f"ltx_r{i}"
            ledger.append((txn, "refund", pid, rid, merchant, f"merchant_payable:{merchant}", code,
                           amount, r_at, now))
            ledger.append((txn, "refund", pid, rid, merchant,
                           f"channel_receivable:{channel[method]}", code, -amount, r_at, now))
    return payments, ledger, refunds


PAYMENT_COLS = ("id, merchant_id, merchant_reference, amount_minor, currency, status, "
                "payment_method_type, channel_id, channel_reference, failure_code, risk_decision, "
                "customer_id, refunded_minor, captured_at, created_at, updated_at")
LEDGER_COLS = ("transaction_id, kind, payment_id, refund_id, merchant_id, account, currency, "
               "amount_minor, effective_at, created_at")
REFUND_COLS = "id, payment_id, merchant_id, amount_minor, currency, status, reason, succeeded_at, created_at, updated_at"


def load_sqlite(path: str, payments, ledger, refunds) -> None:
    import sqlite3

    def text(row):
        return tuple(v.astimezone(UTC).strftime(TS) if isinstance(v, datetime)
                     else str(v) if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**62
                     else v for v in row)

    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    with con:
        for table, cols, rows in (("payments", PAYMENT_COLS, payments),
                                  ("ledger_entries", LEDGER_COLS, ledger),
                                  ("refunds", REFUND_COLS, refunds)):
            marks = ", ".join("?" * len(cols.split(",")))
            # amounts as decimal strings, as the MinorUnits type stores them on SQLite
            money_at = [i for i, c in enumerate(cols.split(", ")) if c.endswith("_minor")]
            con.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})",
                            (tuple(str(v) if j in money_at else v for j, v in enumerate(text(r)))
                             for r in rows))
    con.close()


def load_postgres(url: str, payments, ledger, refunds) -> None:
    """COPY the rows, committing payments every PAYMENT_CHUNK rows: the trigger that keeps
    merchant_daily_volume (migration 0006) upserts a few hundred rows once per payment, and inside
    one transaction every upsert leaves a dead row version that the next one has to walk past
    (one transaction for a million payments ran for minutes). Committed chunks let Postgres
    prune them, and the trigger stays the one writer of that table."""
    import psycopg

    with psycopg.connect(to_libpq_url(url)) as con:
        for start in range(0, len(payments), PAYMENT_CHUNK):
            with con.cursor().copy(f"COPY payments ({PAYMENT_COLS}) FROM STDIN") as copy:
                for row in payments[start:start + PAYMENT_CHUNK]:
                    copy.write_row(row)
            con.commit()
        for table, cols, rows in (("ledger_entries", LEDGER_COLS, ledger),
                                  ("refunds", REFUND_COLS, refunds)):
            with con.cursor().copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)


PAYMENT_CHUNK = 20_000


def peak_mb(who) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


# dbt nodes by the stage of the finance DAG they belong to (first matching prefix wins).
STAGES = (("seed", ("seed.",)), ("staging", ("model.clearhouse.stg_",)),
          ("reconciliation", ("model.clearhouse.int_recon", "model.clearhouse.fct_reconciliation",
                              "model.clearhouse.rpt_reconciliation")),
          ("commission", ("model.clearhouse.int_commission", "model.clearhouse.fct_commissions",
                          "model.clearhouse.fct_platform", "model.clearhouse.fct_agent",
                          "model.clearhouse.int_payment_fees", "model.clearhouse.int_refund")),
          ("settlement", ("model.clearhouse.int_settlement", "model.clearhouse.fct_settlement",
                          "model.clearhouse.int_fx")),
          ("analytics", ("model.clearhouse.",)), ("tests", ("test.", "unit_test.")))


def stage_times(target: Path) -> dict[str, tuple[float, int]]:
    """Seconds dbt spent per stage (from run_results.json: node execution times, summed; with 2
    threads the stages overlap, so they add up to more than the wall clock)."""
    import json

    totals: dict[str, list] = {name: [0.0, 0] for name, _ in STAGES}
    for result in json.loads((target / "run_results.json").read_text())["results"]:
        uid = result["unique_id"]
        stage = next(name for name, prefixes in STAGES if uid.startswith(prefixes))
        totals[stage][0] += result["execution_time"]
        totals[stage][1] += 1
    return {name: (seconds, count) for name, (seconds, count) in totals.items() if count}


def run_floor(duckdb_path: str) -> dict:
    """Run bench/floor.sql against the warehouse file, in this process (pipeline.py starts it as a
    child, so its peak RSS is the floor's own). The clock runs from the first statement to the
    first DROP; then, untimed, the temp tables are counted and checked against the dbt models the
    build left in the same file, and dropped."""
    import duckdb

    t = time.perf_counter()
    con = duckdb.connect(duckdb_path, read_only=True)
    statements = [s.query for s in con.extract_statements(FLOOR_SQL.read_text())]
    first_drop = next(i for i, q in enumerate(statements) if q.lstrip().upper().startswith("DROP"))
    for query in statements[:first_drop]:
        con.execute(query)
    seconds = time.perf_counter() - t

    def one(query: str):
        return con.execute(query).fetchall()

    counts = {name: one(f"SELECT count(*) FROM {name}")[0][0]
              for name in ("floor_fees", "floor_commissions", "floor_statements", "floor_recon")}
    classes = dict(one("SELECT classification, count(*) FROM floor_recon GROUP BY 1 ORDER BY 1"))
    found = one("SELECT table_schema FROM information_schema.tables "
                "WHERE table_name = 'int_commission_levels' LIMIT 1")
    mismatches: list[str] | None = None
    if found:
        dbt = found[0][0]
        checks = {
            # same fee on the same payments
            "fees": f"""SELECT count(*) FROM (
                (SELECT payment_id, fee_minor FROM floor_fees
                 EXCEPT ALL SELECT payment_id, CAST(fee_minor AS HUGEINT) FROM {dbt}.int_payment_fees)
                UNION ALL
                (SELECT payment_id, CAST(fee_minor AS HUGEINT) FROM {dbt}.int_payment_fees
                 EXCEPT ALL SELECT payment_id, fee_minor FROM floor_fees))""",
            # same (payment, level, agent, amount) rows
            "commissions": f"""SELECT count(*) FROM (
                (SELECT payment_id, level, agent_id, commission_minor FROM floor_commissions
                 EXCEPT ALL SELECT payment_id, level, agent_id, CAST(commission_minor AS HUGEINT)
                 FROM {dbt}.int_commission_levels)
                UNION ALL
                (SELECT payment_id, level, agent_id, CAST(commission_minor AS HUGEINT)
                 FROM {dbt}.int_commission_levels
                 EXCEPT ALL SELECT payment_id, level, agent_id, commission_minor
                 FROM floor_commissions))""",
            # statement totals per currency = the settlement items' payment and refund totals
            # before FX (txn_* columns)
            "statements": f"""SELECT count(*) FROM (
                (SELECT currency, sum(gross_minor), sum(refunds_minor), sum(fees_minor),
                        sum(payment_count), sum(refund_count)
                 FROM floor_statements GROUP BY currency
                 EXCEPT ALL
                 SELECT txn_currency,
                        sum(CASE WHEN item_type = 'payment' THEN txn_gross_minor ELSE 0 END),
                        0 - sum(CASE WHEN item_type = 'refund' THEN txn_gross_minor ELSE 0 END),
                        sum(txn_fee_minor),
                        count(*) FILTER (WHERE item_type = 'payment'),
                        count(*) FILTER (WHERE item_type = 'refund')
                 FROM {dbt}.int_settlement_items WHERE item_type IN ('payment', 'refund')
                 GROUP BY txn_currency))""",
            # exact-reference payment matches
            "recon": f"""SELECT abs((SELECT count(*) FROM floor_recon
                                     WHERE classification = 'matched')
                                  - (SELECT count(*) FROM {dbt}.fct_reconciliation_matches
                                     WHERE match_type = 'exact_reference' AND refund_id IS NULL))""",
        }
        mismatches = [name for name, query in checks.items() if one(query)[0][0]]
    for query in statements[first_drop:]:
        con.execute(query)
    con.close()
    return {"seconds": seconds, "peak_mb": peak_mb(resource.RUSAGE_SELF), "counts": counts,
            "classes": classes, "mismatches": mismatches}


def _child(*args: str) -> dict:
    """Run this file with `args` in a child process and return the JSON it prints last: each
    measured step in a process of its own, so its peak RSS is its own (this process holds the
    generated rows' high-water mark)."""
    import json

    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_extract() -> dict:
    """--extract-only: the ledger extract, twice (the first load, then a re-run that reads the
    overlap window only), with this process's peak RSS after the first. (Its SQLite readers'
    is not reported: a child's ru_maxrss starts from its parent's RSS at the fork.)"""
    from ingest.ledger import extract_ledger

    settings = get_settings()
    first = extract_ledger(settings)
    peak = peak_mb(resource.RUSAGE_SELF)
    again = extract_ledger(settings)
    return {"rows": first.rows, "seconds": first.seconds, "peak_mb": peak,
            "again_rows": again.rows, "again_seconds": again.seconds}


def run_extract_floor() -> dict:
    """--extract-floor: what the extract cannot do without, measured apart. First every table is
    read as the extract reads it (SQLite: its reader processes, ADBC; Postgres: ADBC in this
    process) and kept in memory; then the same rows are inserted from memory into a scratch DuckDB file
    with the extract's casts (nothing read). CPU seconds of each, all threads and processes:
    on C cores no extract can take less than (read + insert) / C seconds of wall time."""
    from ingest.ledger import _DuckDBWriter, _Source
    from ingest.raw_schema import RAW_TABLES

    def cpu(who) -> tuple[float, float]:  # (user + system, user)
        r = resource.getrusage(who)
        return r.ru_utime + r.ru_stime, r.ru_utime

    settings = get_settings()
    source = _Source(settings.oltp_url)
    # SQLite is read by child processes (this one then only takes their Arrow files in: not
    # reading, and left out); Postgres by ADBC in this process.
    who = resource.RUSAGE_CHILDREN if source.is_sqlite else resource.RUSAGE_SELF
    before = cpu(who)
    tables = {read.name: read.open().read_all()
              for read in source.read_all([(t, None) for t in RAW_TABLES])}
    after = cpu(who)
    read_cpu = [after[k] - before[k] for k in (0, 1)]
    by_name = {t.name: t for t in RAW_TABLES}
    with tempfile.TemporaryDirectory(prefix="clearhouse-floor-") as scratch:
        writer = _DuckDBWriter(Path(scratch) / "insert-only.duckdb")
        start = cpu(resource.RUSAGE_SELF)
        for name, table in tables.items():
            writer.load(by_name[name], _FromMemory(table))
        writer.commit()
        end = cpu(resource.RUSAGE_SELF)
        writer.close()
    return {"rows": sum(t.num_rows for t in tables.values()), "read_cpu": read_cpu[0],
            "read_user": read_cpu[1], "insert_cpu": end[0] - start[0],
            "insert_user": end[1] - start[1], "cores": os.cpu_count()}


class _FromMemory:
    """A table held in memory, in the shape the extract's writers load (ingest.ledger._Read)."""

    def __init__(self, table):
        self.table = table

    def open(self):
        return self.table.to_reader()


# The foundation issue's models: staging, fct_payments, fct_settlement_statements and
# rpt_merchant_daily, with everything they are built from and their tests (its target: <= 15 s
# at 1M payments). The statements now stand on fees, FX and the settlement cycle models.
FOUNDATION = ("+fct_payments", "+fct_settlement_statements", "+rpt_merchant_daily")


def run_dbt(home: str, select: list[str] | None = None) -> dict:
    """--dbt-only: `dbt build` (models + tests; `select` limits it) as a child of this process,
    whose peak RSS is then dbt's and DuckDB's alone. The wall clock includes dbt's start-up
    (imports, reading the parsed project), as a run from Dagster or the command line does."""
    env = {**os.environ, **dbt_env(get_settings())}
    dbt = Path(sys.executable).parent / "dbt"
    t = time.perf_counter()
    subprocess.run([str(dbt), "build", "--project-dir", str(DBT_DIR), "--profiles-dir",
                    str(DBT_DIR), "--target-path", str(Path(home) / "dbt-target"), "--log-path",
                    str(Path(home) / "dbt-logs"), "--quiet",
                    *(["--select", *select] if select else [])], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return {"seconds": time.perf_counter() - t, "peak_mb": peak_mb(resource.RUSAGE_CHILDREN)}


def generate_into(settings, home: str, n: int) -> None:
    upgrade(settings.oltp_url)
    merchants = set_up_merchants(oltp_engine(settings), Path(home) / "bench-merchants.json")
    t = time.perf_counter()
    payments, ledger, refunds = generate(n, [m.id for m in merchants])
    if settings.oltp_url.startswith("sqlite"):
        load_sqlite(settings.oltp_url.removeprefix("sqlite:///"), payments, ledger, refunds)
    else:
        load_postgres(settings.oltp_url, payments, ledger, refunds)
    generated = len(payments) + len(ledger) + len(refunds)
    del payments, ledger, refunds
    print(f"generated {generated:,} rows ({n:,} payments) in "
          f"{time.perf_counter() - t:.1f} s into {settings.oltp_url.split(':')[0]}")


def time_floor(duckdb_path: str) -> dict:
    """run_floor in a fresh child process (a clean peak RSS)."""
    return _child("--floor-only", duckdb_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payments", type=int, default=100_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--warehouse-url", default=None)
    parser.add_argument("--home", default=None)
    parser.add_argument("--reuse", action="store_true",
                        help="keep the API database in --home (no generation); start the "
                             "DuckDB warehouse afresh")
    parser.add_argument("--floor", action=argparse.BooleanOptionalAction, default=None,
                        help="time bench/floor.sql after the build (default: on for DuckDB)")
    parser.add_argument("--floor-only", metavar="DUCKDB_FILE", help=argparse.SUPPRESS)
    parser.add_argument("--extract-floor", action=argparse.BooleanOptionalAction, default=None,
                        help="measure the extract's floor: reading alone, then DuckDB's insert "
                             "of the same rows from memory (default: on for DuckDB)")
    parser.add_argument("--extract-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--extract-floor-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dbt-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--select", nargs="+", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_only or args.extract_only or args.extract_floor_only or args.dbt_only:
        import json  # a child of the run below

        print(json.dumps(run_floor(args.floor_only) if args.floor_only
                         else run_extract() if args.extract_only
                         else run_extract_floor() if args.extract_floor_only
                         else run_dbt(args.home, args.select)))
        return

    home = args.home or tempfile.mkdtemp(prefix="clearhouse-bench-")
    os.environ["CLEARHOUSE_HOME"] = home
    for name, value in (("DATABASE_URL", args.database_url), ("WAREHOUSE_URL", args.warehouse_url)):
        if value:
            os.environ[f"CLEARHOUSE_{name}"] = value
    get_settings.cache_clear()
    settings = get_settings()
    settings.ensure_dirs()
    if args.reuse:
        if not args.home:
            parser.error("--reuse needs --home (the kept state)")
        with oltp_engine(settings).connect() as conn:
            from sqlalchemy import text

            args.payments = conn.execute(text("SELECT count(*) FROM payments")).scalar_one()
        if settings.warehouse_engine == "duckdb":
            for path in (settings.duckdb_path, Path(f"{settings.duckdb_path}.wal")):
                path.unlink(missing_ok=True)
        print(f"reusing {args.payments:,} payments in {settings.oltp_url.split(':')[0]}")
    else:
        generate_into(settings, home, args.payments)

    # The children inherit HOME and the URLs through the environment.
    extract = _child("--home", home, "--extract-only")
    print(f"ingest   {extract['rows']:,} rows in {extract['seconds']:.2f} s = "
          f"{extract['rows'] / extract['seconds']:,.0f} rows/s "
          f"(peak RSS {extract['peak_mb']:,.0f} MB in the extract's process)")
    print(f"re-run   {extract['again_rows']:,} rows in {extract['again_seconds']:.2f} s "
          "(overlap window only)")

    if settings.warehouse_engine == "duckdb" if args.extract_floor is None else args.extract_floor:
        f = _child("--home", home, "--extract-floor-only")
        floor_s = (f["read_cpu"] + f["insert_cpu"]) / f["cores"]
        print(f"  the extract's floor: reading alone {f['read_cpu']:.2f} CPU-s (user "
              f"{f['read_user']:.2f}), DuckDB's insert of the same rows from memory "
              f"{f['insert_cpu']:.2f} CPU-s (user {f['insert_user']:.2f}); on {f['cores']} cores "
              f">= {floor_s:.2f} s = at most {f['rows'] / floor_s:,.0f} rows/s (user time "
              f"alone: {f['rows'] * f['cores'] / (f['read_user'] + f['insert_user']):,.0f})")

    build = _child("--home", home, "--dbt-only")
    seconds = build["seconds"]
    print(f"dbt build (models + tests) on {args.payments:,} payments: {seconds:.1f} s "
          f"(peak RSS {build['peak_mb']:,.0f} MB) on {settings.warehouse_engine}")
    for stage, (node_seconds, nodes) in stage_times(Path(home) / "dbt-target").items():
        print(f"  {stage:<14} {node_seconds:7.1f} s in {nodes} nodes "
              f"= {args.payments / node_seconds if node_seconds else 0:,.0f} payments/s")
    # The foundation's models again, on the warehouse the full build left (as a daily re-run
    # finds it) and with the project parsed by it (dbt's partial parse, as Dagster runs it).
    foundation = _child("--home", home, "--dbt-only", "--select", *FOUNDATION)
    nodes = sum(n for _s, n in stage_times(Path(home) / "dbt-target").values())
    print(f"dbt build of the foundation's models ({' '.join(FOUNDATION)}; {nodes} nodes with "
          f"their tests): {foundation['seconds']:.1f} s (target <= 15 s at 1M payments)")
    floor = settings.warehouse_engine == "duckdb" if args.floor is None else args.floor
    if floor and settings.warehouse_engine != "duckdb":
        print("floor skipped: bench/floor.sql is DuckDB SQL and the warehouse is "
              f"{settings.warehouse_engine}")
    elif floor:
        f = time_floor(str(settings.duckdb_path))
        end_to_end = extract["seconds"] + seconds
        print(f"floor (hand-written DuckDB SQL): {f['seconds']:.2f} s; end-to-end (extract + dbt "
              f"build): {end_to_end:.1f} s; ratio {end_to_end:.1f}/{f['seconds']:.2f} = "
              f"{end_to_end / f['seconds']:.1f} (floor peak RSS {f['peak_mb']:,.0f} MB)")
        c = f["counts"]
        check = ("not checked (no dbt models in the file)" if f["mismatches"] is None
                 else "same as the dbt models" if not f["mismatches"]
                 else "DIFFERS from the dbt models in: " + ", ".join(f["mismatches"]))
        print(f"  floor = fees {c['floor_fees']:,}, commission rows {c['floor_commissions']:,} "
              f"(all three models, markup chain in full), statements {c['floor_statements']:,} "
              f"(per merchant, day, txn currency; no FX), recon "
              + ", ".join(f"{k} {v:,}" for k, v in f["classes"].items())
              + f" (exact reference only); {check}")
    print(f"state kept in {home}")


if __name__ == "__main__":
    main()
