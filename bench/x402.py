"""Benchmark the x402 gateway on Postgres: paid calls per second, and the latency a paid call
adds (verify + claim + settle + books) over the same call unpriced, p50/p99, in one run.

    .venv/bin/python bench/x402.py [--seconds 10] [--connections 32] [--workers 2]

Each paid request carries its own EIP-3009 authorization (signed beforehand with eth-account:
an authorization is usable once, so wrk cycles through distinct headers, one list per thread).
The upstream is the in-process simulated company-information API, the same for both calls, so
the difference is the payment. Needs wrk and Postgres at 127.0.0.1:5432 (CLEARHOUSE_BENCH_PG).
Prints figures; it is not a pass/fail test.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
# This file is named like the `x402` package: take bench/ off the path so imports find the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.api import cpu_seconds, cpu_split, drop_db, make_db, pgbench_tps  # noqa: E402

PORT = 8766
PRICE = 1_000  # 0.001 USDC
PAY_TO = "0x" + "5a" * 20
THREADS = 2

LUA = r"""
local payments = {PAYMENTS}
local threads = 0
setup = function(thread)
  thread:set("slot", threads)
  threads = threads + 1
end
init = function(args)
  counter = slot
end
request = function()
  local headers = {}
  if #payments > 0 then
    counter = counter + {THREADS}
    headers["PAYMENT-SIGNATURE"] = payments[(counter % #payments) + 1]
  end
  return wrk.format("GET", "{PATH}", headers)
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"non2xx\": %d, \"errors\": %d, " ..
    "\"p50_ms\": %.3f, \"p99_ms\": %.3f}\n", summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.timeout + summary.errors.read,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def _sign_batch(args: tuple[list[str], dict, int]) -> list[str]:
    """Signed PAYMENT-SIGNATURE headers, one per (payer key, nonce)."""
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    from serving.x402.verify import EIP712_DOMAIN, TRANSFER_WITH_AUTHORIZATION

    keys, accepted, valid_before = args
    headers = []
    for key in keys:
        account = Account.from_key(key)
        nonce = "0x" + secrets.token_hex(32)
        message = {"from": account.address, "to": accepted["payTo"], "value": PRICE,
                   "validAfter": 0, "validBefore": valid_before, "nonce": nonce}
        typed = {"types": {"EIP712Domain": EIP712_DOMAIN,
                           "TransferWithAuthorization": TRANSFER_WITH_AUTHORIZATION},
                 "primaryType": "TransferWithAuthorization",
                 "domain": {"name": "USDC", "version": "2", "chainId": 84532,
                            "verifyingContract": accepted["asset"]},
                 "message": message}
        signature = account.sign_message(encode_typed_data(full_message=typed)).signature
        payload = {"x402Version": 2, "accepted": accepted, "payload": {
            "signature": "0x" + signature.hex().removeprefix("0x"),
            "authorization": {**{k: str(v) for k, v in message.items()},
                              "from": account.address}}}
        headers.append(base64.b64encode(json.dumps(payload).encode()).decode())
    return headers


def _wrk(script: Path, path: str, payments: list[str], *, seconds: int, connections: int,
         threads: int) -> dict:
    script.write_text(LUA.replace("{PAYMENTS}", "{" + ",".join(f'"{p}"' for p in payments) + "}")
                      .replace("{PATH}", path).replace("{THREADS}", str(threads)))
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d",
                          str(seconds), "--latency", "-s", str(script),
                          f"http://127.0.0.1:{PORT}"], capture_output=True, text=True).stdout
    stats = json.loads(out.split("JSON ", 1)[1].splitlines()[0])
    stats["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--payers", type=int, default=200)
    parser.add_argument("--max-rate", type=int, default=1500,
                        help="paid calls/s to sign for (headers are signed before the run)")
    parser.add_argument("--profile", default=None, metavar="FILE",
                        help="record one worker with py-spy during the paid load phase")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")

    from eth_account import Account
    from sqlalchemy.orm import Session

    from serving.schemas import MerchantCreate
    from serving.services.admin import bootstrap_admin, create_merchant
    from serving.x402 import chain, rules
    from serving.x402.networks import NETWORKS
    from serving.x402.protocol import offer_for
    from serving.x402.schemas import GatewayIn, PricingRuleIn
    from warehouse.connections import make_oltp_engine
    from warehouse.migrate import upgrade

    url = make_db("bench_x402")
    home = tempfile.mkdtemp(prefix="clearhouse-bench-x402-")
    server = None
    try:
        upgrade(url)
        engine = make_oltp_engine(url)
        now = datetime.now(UTC)
        net = NETWORKS["eip155:84532"]
        payers = [Account.create() for _ in range(args.payers)]
        with Session(engine) as session:
            bootstrap_admin(session)
            merchant, _ = create_merchant(session, MerchantCreate(name="Bench Company Info"))
            rules.put_gateway(session, merchant.id, GatewayIn(
                upstream_url="http://company-info.sim", requests_per_second=100_000,
                payer_requests_per_minute=1_000_000), now)
            session.flush()
            rule = rules.create_rule(session, merchant.id, PricingRuleIn(
                path_pattern="/company/detail", amount_minor=PRICE, pay_to=PAY_TO), now)
            for payer in payers:
                chain.mint(session, net, net.assets[0].address, payer.address, 10**12, now)
            session.commit()
            accepted = offer_for(rule).v2().model_dump(by_alias=True, exclude_none=True)
            merchant_id = merchant.id
        engine.dispose()

        latency_runs = 2 * 5 * 300  # the serial latency phase: at most ~300 calls/s for 5 s
        count = args.max_rate * (args.seconds + 3) + latency_runs
        keys = [payers[i % len(payers)].key.hex() for i in range(count)]
        valid_before = int(time.time()) + 3600
        started = time.perf_counter()
        chunks = [keys[i:i + 2000] for i in range(0, len(keys), 2000)]
        with ProcessPoolExecutor(max_workers=2) as pool:
            signed = [h for batch in pool.map(_sign_batch, [(c, accepted, valid_before)
                                                            for c in chunks]) for h in batch]
        sign_seconds = time.perf_counter() - started

        env = {**os.environ, "CLEARHOUSE_HOME": home, "CLEARHOUSE_DATABASE_URL": url,
               "CLEARHOUSE_LOG_LEVEL": "WARNING", "CLEARHOUSE_RATE_LIMIT_PER_KEY": "1000000",
               "CLEARHOUSE_RATE_LIMIT_PER_IP": "1000000"}
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "serving.app:create_app", "--factory", "--host",
             "127.0.0.1", "--port", str(PORT), "--workers", str(args.workers), "--log-level",
             "warning", "--no-access-log"], env=env, cwd=ROOT)
        base = f"http://127.0.0.1:{PORT}"
        for _ in range(150):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        free_path = f"/x402/{merchant_id}/company/basic?name=Acme"
        paid_path = f"/x402/{merchant_id}/company/detail?name=Acme"
        probe = httpx.get(base + paid_path, timeout=10)
        assert probe.status_code == 402, probe.text
        script = Path(home) / "x402.lua"
        # Warm both paths (imports, pools, caches), then measure.
        _wrk(script, free_path, [], seconds=2, connections=4, threads=1)
        used = 0

        def take(n: int) -> list[str]:
            nonlocal used
            batch, used = signed[used:used + n], used + n
            return batch

        _wrk(script, paid_path, take(1000), seconds=1, connections=4, threads=1)
        free_serial = _wrk(script, free_path, [], seconds=5, connections=1, threads=1)
        paid_serial = _wrk(script, paid_path, take(latency_runs // 2), seconds=5,
                           connections=1, threads=1)
        free_load = _wrk(script, free_path, [], seconds=args.seconds,
                         connections=args.connections, threads=THREADS)
        spy = None
        if args.profile:
            worker = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True,
                                    text=True).stdout.split()
            spy = subprocess.Popen(["py-spy", "record", "--gil", "--format", "raw", "-o",
                                    args.profile, "-d", str(args.seconds), "--pid", worker[-1]],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu_before = cpu_seconds()
        paid_load = _wrk(script, paid_path, take(len(signed) - used), seconds=args.seconds,
                         connections=args.connections, threads=THREADS)
        cpu_after = cpu_seconds()
        if spy is not None:
            spy.wait()
        with psycopg.connect(url) as conn:
            usage = dict(conn.execute("SELECT status, count(*) FROM x402_usage GROUP BY 1")
                         .fetchall())
            payments = conn.execute("SELECT count(*) FROM payments").fetchone()[0]
            logs = conn.execute("SELECT count(*) FROM sim_chain_logs WHERE nonce IS NOT NULL"
                                ).fetchone()[0]
    finally:
        if server:
            server.terminate()
            server.wait(timeout=20)
        drop_db(url)
    print(f"x402 gateway on Postgres, {args.workers} uvicorn workers, upstream in-process; "
          f"{len(signed):,} authorizations signed in {sign_seconds:.1f} s beforehand")
    print(f"  serial (1 connection):  unpriced p50 {free_serial['p50_ms']:.2f} ms  p99 "
          f"{free_serial['p99_ms']:.2f} ms | paid p50 {paid_serial['p50_ms']:.2f} ms  p99 "
          f"{paid_serial['p99_ms']:.2f} ms | added by payment: p50 "
          f"{paid_serial['p50_ms'] - free_serial['p50_ms']:.2f} ms  p99 "
          f"{paid_serial['p99_ms'] - free_serial['p99_ms']:.2f} ms")
    print(f"  under load ({args.connections} connections, {args.seconds} s): unpriced "
          f"{free_load['rps']:,.0f} calls/s | paid {paid_load['rps']:,.0f} calls/s  p50 "
          f"{paid_load['p50_ms']:.1f} ms  p99 {paid_load['p99_ms']:.1f} ms  non-2xx "
          f"{paid_load['non2xx']}  errors {paid_load['errors']}")
    print(f"  CPU per paid call under load: "
          f"{cpu_split(cpu_before, cpu_after, paid_load['requests'])}")
    tps = pgbench_tps(min(args.seconds, 10), args.connections)
    print(f"  pgbench tpcb-like, same machine, same clients: {tps:,.0f} tps "
          f"(5,208 on the calibration day) -> paid calls/pgbench = {paid_load['rps'] / tps:.3f}")
    print(f"  books after the run: usage {usage}, payments {payments:,}, chain transfers {logs:,}")


if __name__ == "__main__":
    main()
