"""Benchmark the payments API on Postgres: sustained idempotent payment creates per second,
latency percentiles and errors, with pgbench's tpcb-like tps measured in the same run.

    .venv/bin/python bench/api.py [--seconds 15] [--connections 32] [--workers 2] [--ml]

--ml promotes a fraud model before the run, as production runs: every create is then scored
live (the model's summary of the payment's history is one more statement per create).

Needs wrk and pgbench (Debian: apt-get install wrk postgresql-client) and the Postgres server at
127.0.0.1:5432 (CLEARHOUSE_BENCH_PG to change). Creates and drops its own databases. Prints
figures; it is not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN_URL = os.environ.get("CLEARHOUSE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

LUA = r"""
local counter = 0
local keys = {KEYS}
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
local run = string.format("%08x", math.random(0, 0x7fffffff))
request = function()
  counter = counter + 1
  local key = keys[(counter % #keys) + 1]
  local body = '{"amount_minor": "' .. (100 + counter % 900) .. '", "currency": "USD", ' ..
    '"merchant_reference": "bench-' .. counter .. '", ' ..
    '"payment_method": {"type": "bank_transfer"}}'
  local headers = {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. key,
    ["Idempotency-Key"] = run .. "-" .. counter}
  return wrk.format("POST", "/api/v1/payments", headers, body)
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"errors_status\": %d, \"errors_connect\": %d, " ..
    "\"errors_timeout\": %d, \"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"mean_ms\": %.3f}\n",
    summary.requests, summary.errors.status, summary.errors.connect, summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.mean / 1000))
end
"""


def make_db(prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_db(url: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def pgbench_tps(seconds: int, clients: int) -> float:
    url = make_db("bench_pgbench")
    try:
        subprocess.run(["pgbench", "-i", "-q", "-s", "10", url], check=True, capture_output=True)
        out = subprocess.run(["pgbench", "-b", "tpcb-like", "-T", str(seconds), "-c",
                              str(clients), "-j", "2", url], check=True, capture_output=True,
                             text=True).stdout
        return float(re.search(r"tps = ([\d.]+)", out).group(1))
    finally:
        drop_db(url)


def cpu_seconds() -> dict[str, tuple[float, float]]:
    """(user, system) CPU seconds used so far by each running process (Linux /proc). Two readings
    around a load phase show where the machine's cores went: Postgres backends, the API's
    workers (`python`), the load generator."""
    tick = os.sysconf("SC_CLK_TCK")
    totals: dict[str, tuple[float, float]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the process ended meanwhile
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        totals[f"{stat.parent.name}:{name}"] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return totals


def cpu_split(before: dict, after: dict, calls: int) -> str:
    """'postgres 2.51 ms (user 1.60), python ...' of CPU per call between two readings, the three
    biggest; the rest of each is system time (the kernel's side of the loopback TCP, fsync)."""
    by_name: dict[str, list[float]] = {}
    for key, (user, system) in after.items():
        user0, system0 = before.get(key, (0.0, 0.0))
        total = by_name.setdefault(key.split(":", 1)[1], [0.0, 0.0])
        total[0] += user - user0
        total[1] += system - system0
    top = sorted(by_name.items(), key=lambda item: -sum(item[1]))[:3]
    per_call = 1000 / max(calls, 1)
    return ", ".join(f"{name} {sum(t) * per_call:.2f} ms (user {t[0] * per_call:.2f})"
                     for name, t in top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--merchants", type=int, default=50)
    parser.add_argument("--profile", default=None, metavar="FILE",
                        help="record one worker with py-spy during the run (collapsed stacks)")
    parser.add_argument("--ml", action="store_true",
                        help="promote a fraud model first (trained on 100,000 synthetic "
                             "payments by bench/ml.py), so every create is scored live")
    args = parser.parse_args()
    for tool in ("wrk", "pgbench"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (Debian: apt-get install wrk postgresql-client)")

    from sqlalchemy.orm import Session

    from serving.schemas import MerchantCreate, PriceIn
    from serving.services.admin import bootstrap_admin, create_merchant
    from warehouse.connections import make_oltp_engine
    from warehouse.migrate import upgrade

    url = make_db("bench_api")
    home = tempfile.mkdtemp(prefix="clearhouse-bench-api-")
    server = None
    try:
        upgrade(url)
        engine = make_oltp_engine(url)
        keys = []
        with Session(engine) as session:
            bootstrap_admin(session)
            for i in range(args.merchants):
                _, key = create_merchant(session, MerchantCreate(
                    name=f"Bench {i}", kyc_tier=3,
                    pricing=[PriceIn(currency="USD", rate_bps=250, fixed_minor=30)]))
                keys.append(key)
            session.commit()
        engine.dispose()
        if args.ml:
            from bench.ml import quick_model
            from ml.registry import Registry
            from warehouse.settings import Settings

            model, fields = quick_model(1)
            registry = Registry(Settings(home=home), family="payments")
            registry.promote(registry.register(model, fields), force=True)
        env = {**os.environ, "CLEARHOUSE_HOME": home, "CLEARHOUSE_DATABASE_URL": url,
               "CLEARHOUSE_LOG_LEVEL": "WARNING", "CLEARHOUSE_RATE_LIMIT_PER_KEY": "1000000",
               "CLEARHOUSE_RATE_LIMIT_PER_IP": "1000000"}
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "serving.app:create_app", "--factory", "--host",
             "127.0.0.1", "--port", "8765", "--workers", str(args.workers), "--log-level",
             "warning", "--no-access-log"], env=env, cwd=ROOT)
        for _ in range(100):
            try:
                if httpx.get("http://127.0.0.1:8765/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        script = Path(home) / "pay.lua"
        script.write_text(LUA.replace("{KEYS}", "{" + ", ".join(f'"{k}"' for k in keys) + "}"))
        wrk = ["wrk", "-t", "2", "-c", str(args.connections), "--latency", "-s", str(script),
               "http://127.0.0.1:8765"]
        subprocess.run([*wrk[:1], "-d", "3", *wrk[1:]], capture_output=True)  # warm-up
        spy = None
        if args.profile:
            worker = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True,
                                    text=True).stdout.split()
            spy = subprocess.Popen(["py-spy", "record", "--gil", "--format", "raw", "-o", args.profile,
                                    "-d", str(args.seconds), "--pid", worker[-1]],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu_before = cpu_seconds()
        out = subprocess.run([*wrk[:1], "-d", str(args.seconds), *wrk[1:]], capture_output=True,
                             text=True).stdout
        cpu_after = cpu_seconds()
        if spy is not None:
            spy.wait()
        stats = json.loads(out.split("JSON ", 1)[1].splitlines()[0])
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        with psycopg.connect(url) as conn:
            created = conn.execute("SELECT count(*) FROM payments").fetchone()[0]
            by_status = dict(conn.execute("SELECT status, count(*) FROM payments GROUP BY 1").fetchall())
            scored = conn.execute("SELECT count(*) FROM payments WHERE risk_score IS NOT NULL"
                                  ).fetchone()[0]
    finally:
        if server:
            server.terminate()
            server.wait(timeout=20)
        drop_db(url)
    tps = pgbench_tps(min(args.seconds, 10), args.connections)
    errors = stats["errors_status"] + stats["errors_connect"] + stats["errors_timeout"]
    print(f"payments API on Postgres, {args.workers} uvicorn workers, wrk {args.connections} connections, "
          f"{args.seconds} s" + (", a fraud model promoted (live scoring):" if args.ml else ":"))
    print(f"  {rps:,.0f} payment creates/s   p50 {stats['p50_ms']:.1f} ms   p90 {stats['p90_ms']:.1f} ms"
          f"   p99 {stats['p99_ms']:.1f} ms   errors {errors}")
    print(f"  payments in the database after warm-up + run: {created:,} {by_status}, "
          f"{scored:,} with an ML score")
    print(f"  CPU per create under load: "
          f"{cpu_split(cpu_before, cpu_after, stats['requests'])}")
    print(f"  pgbench tpcb-like, same machine, same clients: {tps:,.0f} tps -> "
          f"API/pgbench = {rps / tps:.2f}")


if __name__ == "__main__":
    main()
