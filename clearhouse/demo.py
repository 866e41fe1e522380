"""`make demo`: the whole spine on the embedded default, start to finish.

Trains the fraud model on a seeded history and promotes it (clearhouse/fraud_demo.py), starts
the API (uvicorn, SQLite; it scores every payment live), simulates a business day through HTTP
with planted fraud, plays the x402 act
(clearhouse/x402_demo.py: paid API calls on the simulated chain and an agent's token budget),
exports the chain's logs, runs the pipeline (extract -> dbt -> publish -> statement files) and
prints a summary. Running it twice replays the same day: nothing is doubled. The payments carry
deterministic Idempotency-Keys; the x402 act's calls are new payments at wall-clock time that no
key replays, so it is played once per demo day and a re-run for that day skips it (and says so).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import httpx
from sqlalchemy import Engine

from clearhouse import fraud_demo, sim_chain, x402_demo
from clearhouse.channel_files import write_day
from clearhouse.simulator import point_webhooks_at, run_day, set_up_merchants
from clearhouse.webhook_receiver import WebhookReceiver
from clearhouse.x402_demo import X402Result, run_x402
from ingest.files.warehouse_io import open_files_writer
from orchestration.run import run_pipeline
from serving import webhooks
from serving.channel_simulator import deliver_pending_callbacks
from warehouse.connections import oltp_engine
from warehouse.migrate import upgrade
from warehouse.money import Money
from warehouse.settings import Settings


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_api(settings: Settings, workers: int = 1):
    """The API in a child process (as in production), on a free local port."""
    port = _free_port()
    env = {**os.environ, "CLEARHOUSE_HOME": str(settings.home_dir), "CLEARHOUSE_LOG_LEVEL": "WARNING"}
    if settings.database_url:
        env["CLEARHOUSE_DATABASE_URL"] = settings.database_url
    if settings.warehouse_url:
        env["CLEARHOUSE_WAREHOUSE_URL"] = settings.warehouse_url
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "serving.app:create_app", "--factory", "--host",
         "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", "warning",
         "--no-access-log"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the API did not start; see its output above")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_demo(settings: Settings, *, payments: int = 3000, day: date | None = None,
             seed: int = 42) -> dict:
    started = time.monotonic()
    day = day or (datetime.now(UTC).date() - timedelta(days=1))
    settings.ensure_dirs()
    say(f"state folder: {settings.home_dir}")
    say("migrating the API database")
    upgrade(settings.oltp_url)
    merchants = set_up_merchants(oltp_engine(settings), settings.home_dir / "demo" / "credentials.json")
    say(f"{len(merchants)} merchants under a multi-level agent tree are ready")
    engine = oltp_engine(settings)
    say("fraud model: training on 30 simulated days with late labels (Dagster job "
        "fraud_training)")
    try:
        fraud = fraud_demo.train_before_the_day(settings, day, max(300, payments // 3), seed)
        say(f"fraud model {fraud.version}: {fraud.decision}")
    except (RuntimeError, ValueError) as exc:
        fraud = fraud_demo.FraudAct(decision=f"not trained: {exc}")
        say(f"fraud model {fraud.decision}; the rules decide alone")
    with running_api(settings) as base, WebhookReceiver(
            {m.id: m.webhook_secret for m in merchants}) as receiver:
        point_webhooks_at(engine, merchants, receiver.base_url)
        say(f"API up at {base}; simulating {payments} payments on {day} through HTTP")
        with httpx.Client(base_url=base, timeout=60) as client:
            day_result = run_day(client, merchants, day=day, payments=payments, seed=seed,
                                 progress=lambda d, n: say(f"  payments {d}/{n}"))
            end_of_day = datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC)
            callbacks = deliver_pending_callbacks(engine, client, datetime.now(UTC),
                                                  test_clock=end_of_day)
            say(f"channels confirmed {callbacks['delivered']} pending payments by signed callback")
        say("delivering merchant webhooks from the outbox")
        with httpx.Client(timeout=10) as hooks:
            for _ in range(200):
                tick = webhooks.run_once(engine, hooks, datetime.now(UTC), batch=1000)
                if not tick["enqueued"] and not tick.get("delivered") and not tick.get("retrying"):
                    break
        day_result.webhooks = (receiver.verified, receiver.duplicates, receiver.rejected)
        day_result.callbacks = callbacks["delivered"]
        x402, x402_earlier = x402_act(engine, base, settings, day)
    if day_result.errors:
        raise RuntimeError(f"{len(day_result.errors)} requests failed, first: {day_result.errors[0]}")
    fraud = fraud_demo.after_the_day(fraud, settings, engine, day, day_result.planted,
                                     datetime.now(UTC))
    written = write_day(engine, settings.landing_dir, day)
    say(f"channels, banks, chain and ECB sent their files for {day}: "
        + ", ".join(f"{n} {source}" for source, n in sorted(written.items())))
    # x402 calls run at wall-clock time (today's blocks), not on the simulated day.
    exports = sim_chain.export(engine, settings.landing_dir, now=datetime.now(UTC))
    say(f"the simulated chain exported {sum(e.logs for e in exports)} Transfer logs in "
        f"{len(exports)} file(s)")
    say("running the pipeline: extract + landing zone -> dbt build (+ tests) -> publish -> "
        "statements")
    pipeline = run_pipeline(settings, days=[day])
    revenue, reconciliation, settled = finance_summary(settings, day)
    summary = {"day": day, "day_result": day_result, "pipeline": pipeline, "x402": x402,
               "x402_earlier": x402_earlier,
               "revenue": revenue, "reconciliation": reconciliation, "settled": settled,
               "chain_exports": exports, "fraud": fraud,
               "seconds": time.monotonic() - started}
    print_summary(settings, summary)
    return summary


def x402_act(engine: Engine, base: str, settings: Settings,
             day: date) -> tuple[X402Result | None, dict | None]:
    """The x402 act against the API at `base`, once per demo day: (its result, None), or on a
    re-run for a day it was played for (None, what it did then), without a call."""
    earlier = x402_demo.played_for(engine, settings.home_dir, day)
    if earlier:
        say(f"x402: already played for {day} on an earlier run ({earlier['played_at']}: "
            f"{earlier['paid_calls']} paid calls, {earlier['token_calls']} agent-token calls); "
            "not repeated, so nothing is paid twice")
        return None, earlier
    say("x402: a merchant sells its API per call; wallets and an agent's token pay for it")
    x402 = run_x402(engine, base, settings.home_dir)
    x402_demo.record_played(settings.home_dir, day, x402, datetime.now(UTC))
    return x402, None


def print_summary(settings: Settings, summary: dict) -> None:
    result = summary["day_result"]
    day = summary["day"]
    print()
    print(f"Clearhouse demo: {day} simulated in {summary['seconds']:.0f} s")
    print(f"  payments     {result.payments} ({result.succeeded} captured at once, {result.declined} "
          f"declined or held, {result.pending} pending; {result.refunds} refunds; "
          f"{result.replayed} replayed from an earlier run)")
    print(f"  wallets      {result.wallet_topups} top-ups with bonus, {result.wallet_spends} payments "
          f"from wallets")
    print(f"  callbacks    {result.callbacks} pending payments confirmed by signed channel callbacks")
    verified, duplicates, rejected = result.webhooks
    print(f"  webhooks     {verified} events delivered to the merchants' endpoints, signatures "
          f"verified ({duplicates} duplicates, {rejected} rejected)")
    for code, minor in sorted(result.captured_by_currency.items()):
        print(f"  captured     {Money(minor, code)}")
    _print_fraud(summary)
    _print_x402(summary)
    for asset, counts in sorted(summary["pipeline"].get("landed_files", {}).items()):
        print(f"  ingested     {asset}: {counts['loaded']} files loaded ({counts['rows']} rows), "
              f"{counts['quarantined']} quarantined, {counts['duplicates']} already loaded")
    for currency, (fee, channel, agents, net, flagged) in summary.get("revenue", {}).items():
        print(f"  fees         {Money(fee, currency)} charged: channels {Money(channel, currency)}, "
              f"agents {Money(agents, currency)}, platform {Money(net, currency)}"
              + (f" ({flagged} with a negative margin)" if flagged else ""))
    matched, breaks = summary.get("reconciliation", (0, {}))
    total = matched + sum(breaks.values())
    print(f"  reconciled   {matched} matches"
          + (f" ({matched * 100 // total} % of items)" if total else "") + "; breaks: "
          + (", ".join(f"{n} {kind}" for kind, n in sorted(breaks.items())) or "none"))
    for currency, (count, net, converted) in summary.get("settled", {}).items():
        print(f"  settled      {count} statement(s) in {currency}: net activity "
              f"{Money(net, currency)}, {converted} line(s) converted at ECB rates")
    files = summary["pipeline"]["statement_files"].get(day, 0)
    print(f"  statements   {files} merchant and agent statements (CSV and PDF) in "
          f"{settings.statements_dir / day.isoformat()}")
    print(f"  warehouse    {settings.warehouse_target}")
    print("Next: `make dev` opens Dagster on this state; `make serve` starts the API "
          "(statements at GET /api/v1/settlements/{merchant_id}?period=" + day.isoformat() + ").")
    print(f"Merchant API keys for trying the API: {settings.home_dir / 'demo' / 'credentials.json'}")


def finance_summary(settings: Settings, day: date) -> tuple[dict, tuple[int, dict[str, int]],
                                                            dict[str, tuple[int, int, int]]]:
    """From the marts, in one warehouse connection: per currency for the day, merchant fees,
    channel costs, agent commissions, platform net and events with a negative margin
    (fct_platform_revenue, commission.md); the matches and open breaks by class
    (fct_reconciliation_*); and per statement currency the statements covering the day, their
    net activity and how many of their lines were converted (settlement.md)."""
    writer = open_files_writer(settings)
    try:
        rows = writer.fetchall(
            "SELECT currency, CAST(sum(merchant_fee_minor) AS VARCHAR(40)), "
            "CAST(sum(channel_cost_minor) AS VARCHAR(40)), "
            "CAST(sum(agent_commission_minor) AS VARCHAR(40)), "
            "CAST(sum(platform_net_minor) AS VARCHAR(40)), "
            "count(CASE WHEN negative_margin THEN 1 END) FROM analytics.fct_platform_revenue "
            "WHERE CAST(occurred_at AS DATE) = $1 GROUP BY currency ORDER BY currency", (day,))
        matched = writer.fetchall("SELECT count(*) FROM analytics.fct_reconciliation_matches")
        breaks = writer.fetchall("SELECT break_type, count(*) FROM analytics."
                                 "fct_reconciliation_breaks WHERE status = 'open' GROUP BY 1")
        statements = writer.fetchall(
            "SELECT s.currency, count(DISTINCT s.statement_id), "
            "CAST(sum(l.net_minor) AS VARCHAR(40)), count(l.fx_rate_id) "
            "FROM analytics.fct_settlement_statements s "
            "JOIN analytics.fct_settlement_statement_lines l ON l.statement_id = s.statement_id "
            "WHERE s.period_start <= $1 AND s.period_end >= $1 AND l.line_type <> 'payout' "
            "GROUP BY s.currency ORDER BY s.currency", (day,))
    finally:
        writer.close()
    revenue = {ccy: (int(f), int(c), int(a), int(n), int(k)) for ccy, f, c, a, n, k in rows}
    settled = {ccy: (int(n), int(net), int(converted)) for ccy, n, net, converted in statements}
    return revenue, (int(matched[0][0]), {kind: int(n) for kind, n in breaks}), settled


def _print_fraud(summary: dict) -> None:
    fraud = summary.get("fraud")
    if fraud is None:
        return
    if fraud.version:
        print(f"  fraud model  {fraud.version} (holdout PR-AUC {fraud.pr_auc:.3f}): "
              f"{fraud.decision}")
    else:
        print(f"  fraud model  {fraud.decision}")
    print(f"  fraud live   {fraud.scored} payments scored in the API: {fraud.reviewed} held for "
          f"review, {fraud.rejected} rejected ({fraud.over_limit} over a KYC limit); {fraud.planted} planted frauds, {fraud.flagged} "
          f"of them stopped; {fraud.reported} reported so far (the rest arrive later)")
    scores = summary["pipeline"].get("marts", {}).get("fct_fraud_scores")
    if scores:
        print(f"  fraud batch  {scores['summary'].splitlines()[0]} (analytics.fct_fraud_scores)")


def _print_x402(summary: dict) -> None:
    x402, earlier = summary.get("x402"), summary.get("x402_earlier")
    exports = summary.get("chain_exports", [])
    if earlier:
        print(f"  x402         played for {summary['day']} on an earlier run "
              f"({earlier['played_at']}): {earlier['paid_calls']} paid calls on chain + "
              f"{earlier['token_calls']} agent-token calls; not repeated")
    elif x402 is not None:
        versions = ", ".join(f"{n} v{v}" for v, n in sorted(x402.by_version.items()))
        revenue = Money(x402.exact_revenue_minor + x402.token_spent_minor, "USDC")
        reasons = ", ".join(sorted({r.split(": ", 1)[-1] for r in x402.refused}))
        print(f"  x402         {x402.paid_calls} paid calls on chain ({versions}) + "
              f"{x402.token_calls} agent-token calls ({Money(x402.token_spent_minor, 'USDC')}): "
              f"{revenue} revenue for {x402.seller_name} ({x402.seller_id}); "
              f"{len(x402.refused)} refused ({reasons})")
        print(f"  x402 agent   report {x402.research.report_path}"
              + (f" (stopped: {x402.research.stopped_by})" if x402.research.stopped_by else ""))
    else:
        return
    print(f"  x402 chain   {sum(e.logs for e in exports)} Transfer logs exported in "
          f"{len(exports)} file(s): " + ", ".join(e.path.name for e in exports))
