"""Benchmark the file parsers and the loader: a large generated file per format, parse + load.

    .venv/bin/python bench/ingest.py                      # 1M lines per format
    .venv/bin/python bench/ingest.py --lines 200000 --formats camt,psp_csv

Each format runs in a child process of its own, so the peak RSS printed is that format's alone.
Files are rendered by the formats' own `render` (the same code the demo's channels use), written
to a temporary folder, parsed from the path, then loaded into a fresh DuckDB warehouse. Prints
figures; never a pass/fail test. Targets (issue 5): camt.053 and MT940 >= 100k lines/s,
PSP CSV >= 500k lines/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FORMATS = ("camt", "mt940", "bai2", "psp_csv")
FILE_NAMES = {"camt": "bank_{n}.xml", "mt940": "bank_{n}.sta", "bai2": "bank_{n}.bai2",
              "psp_csv": "card_sim_2026-11-20.csv"}
CURRENCY = {"camt": "EUR", "mt940": "EUR", "bai2": "USD", "psp_csv": "USD"}


def synthetic_statement(fmt: str, n: int, seed: int = 7):
    from ingest.files.records import ParsedFile, Statement, StatementLine

    rng = random.Random(seed)
    currency = CURRENCY[fmt]
    day = dt.date(2026, 11, 20)
    lines, total = [], 0
    for i in range(n):
        amount = rng.randint(1, 5_000_000) * (1 if rng.random() < 0.7 else -1)
        total += amount
        lines.append(StatementLine(
            statement_index=0, line_number=i, booking_date=day, value_date=day,
            amount_minor=amount, currency=currency, bank_reference=f"BR{i:010d}",
            customer_reference=f"CR{i:08d}", end_to_end_id=f"E2E-{i:010d}",
            remittance=f"PAYOUT po_{i:08d} batch {i % 97}", counterparty_name="Card Sim PSP",
            counterparty_account="DE89370400440532013000",
            transaction_code={"camt": "PMNT/RCDT/ESCT", "mt940": "NTRF", "bai2": "195"}[fmt]
            if amount > 0 else {"camt": "PMNT/ICDT/ESCT", "mt940": "NTRF", "bai2": "495"}[fmt]))
    opening = 1_000_000_00
    statement = Statement(
        index=0, message_type="camt.053" if fmt == "camt" else fmt, account_id=(
            "123456789" if fmt == "bai2" else "DE89370400440532013000"),
        statement_id="STMT-2026-11-20", sequence_number="1", currency=currency,
        from_date=day, to_date=day, opening_balance_minor=opening, opening_date=day,
        closing_balance_minor=opening + total, closing_date=day, balance_check="ok")
    return ParsedFile(format=fmt, kind="bank_statement", statements=[statement],
                      statement_lines=lines)


def synthetic_psp(n: int, seed: int = 7):
    from ingest.files.records import ParsedFile, PspLine

    rng = random.Random(seed)
    at = dt.datetime(2026, 11, 20)
    rows, payout_total = [], 0
    for i in range(n - 1):
        gross = rng.randint(100, 500_000) * (1 if rng.random() < 0.95 else -1)
        fee = (abs(gross) * 29 + 5_000) // 10_000 + 30 if gross > 0 else 0
        payout_total += gross - fee
        rows.append(PspLine(
            line_number=i + 2, record_type="payment" if gross > 0 else "refund",
            channel="card_sim", channel_reference=f"ch_{i:012d}",
            merchant_reference=f"pay_{i:012d}", transaction_at=at + dt.timedelta(seconds=i % 86400),
            currency="USD", gross_minor=gross, fee_minor=fee, net_minor=gross - fee,
            payout_id="po_card_sim_20261121", payout_date=dt.date(2026, 11, 21)))
    rows.append(PspLine(
        line_number=n + 1, record_type="payout", channel="card_sim", channel_reference=None,
        merchant_reference=None, transaction_at=dt.datetime(2026, 11, 21), currency="USD",
        gross_minor=payout_total, fee_minor=0, net_minor=payout_total,
        payout_id="po_card_sim_20261121", payout_date=dt.date(2026, 11, 21)))
    return ParsedFile(format="psp_csv", kind="psp_bill", psp_lines=rows)


def child(fmt: str, n: int, folder: Path) -> dict:
    import pyarrow as pa

    from ingest.files import formats
    from ingest.files.loader import FileLoader
    from warehouse.settings import Settings

    # pyarrow imports pandas on its first array() from a Python list (1-2 s, once per process:
    # a Dagster run or `clearhouse ingest` pays it once, whatever the number of files). Paid here,
    # before the clocks, like every other import, and printed apart.
    t0 = time.perf_counter()
    pa.array([0])
    import_s = time.perf_counter() - t0

    module = formats.module(fmt)
    parsed = synthetic_psp(n) if fmt == "psp_csv" else synthetic_statement(fmt, n)
    path = folder / FILE_NAMES[fmt].format(n=n)
    t0 = time.perf_counter()
    path.write_bytes(module.render(parsed))
    render_s = time.perf_counter() - t0
    file_mb = round(path.stat().st_size / 1e6, 1)
    del parsed
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    result = module.parse(path, path.name)
    parse_s = time.perf_counter() - t0
    rows = result.row_count
    del result
    home = folder / f"home_{fmt}"
    settings = Settings(home=str(home))
    settings.ensure_dirs()
    landing = settings.landing_dir / "bench"
    landing.mkdir(parents=True, exist_ok=True)
    target = landing / path.name
    path.rename(target)
    t0 = time.perf_counter()
    with FileLoader(settings) as loader:
        outcome = loader.load(target, "bank" if fmt != "psp_csv" else "psp")
    load_s = time.perf_counter() - t0
    return {"format": fmt, "lines": rows, "file_mb": file_mb, "render_s": round(render_s, 2),
            "import_s": round(import_s, 2), "parse_s": round(parse_s, 2),
        "parse_lines_per_s": int(rows / parse_s), "parse_plus_load_s": round(load_s, 2),
        "load_lines_per_s": int(rows / load_s), "status": outcome.status,
        "reason": outcome.reason, "peak_rss_mb": resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss // 1024, "rss_before_parse_mb": rss_before // 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.lines, Path(args.folder))))
        return
    print(f"{'format':8} {'lines':>9} {'MB':>6} {'parse s':>8} {'lines/s':>10} {'parse+load s':>13} "
          f"{'lines/s':>10} {'peak RSS MB':>12} {'import s':>9}  status")
    with tempfile.TemporaryDirectory(prefix="clearhouse-bench-ingest-") as folder:
        for fmt in args.formats.split(","):
            out = subprocess.run(
                [sys.executable, __file__, "--child", fmt, "--lines", str(args.lines),
                 "--folder", folder], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{fmt:8} failed: {out.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{r['format']:8} {r['lines']:>9} {r['file_mb']:>6} {r['parse_s']:>8} {r['parse_lines_per_s']:>10} "
                  f"{r['parse_plus_load_s']:>13} {r['load_lines_per_s']:>10} "
                  f"{r['peak_rss_mb']:>12} {r['import_s']:>9}  {r['status']} {r['reason'] or ''}")


if __name__ == "__main__":
    main()
