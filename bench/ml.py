"""Benchmark the payments fraud model: features, training, batch scoring and live scoring.
Prints figures next to the targets; it asserts nothing (not a pass/fail test).

    .venv/bin/python bench/ml.py                      # 1,000,000 payments
    .venv/bin/python bench/ml.py --rows 10000000      # the 10M training target
    .venv/bin/python bench/ml.py --rows 200000 --live 500 --skip-train
    .venv/bin/python bench/ml.py --postgres           # live stage on a throwaway Postgres DB

Stages, each with its wall time, the process's CPU time (all threads) and peak RSS so far
(ru_maxrss):
- generate: N synthetic payments in the payment event layout (ml.payment_features) with an
  `is_fraud` label, vectorised and seeded (`generate`);
- features: `batch_features` on all N rows;
- train: `ml.train.train_candidate(events, feature_set=PAYMENTS)` - features, time split, the
  calibrated gradient-boosted model, the logistic baseline and the holdout metrics, with the
  time spent in each of ml.train's steps (--skip-train: train_candidate on a separate
  100,000-row sample instead, just to have a model);
- batch scoring: `ml.batch.score_payments` on all N rows, as ml.batch scores - the features a
  block of rows at a time (`batch_feature_blocks`), each block scored by the compiled model on
  the thread that wrote it, the scores, and reasons for those >= 65 (the review score) - then
  the whole matrix of rows (`batch_feature_rows`) and predict_proba on it alone, for comparison;
- live scoring: the model registered and promoted in a temporary HOME, a migrated API database
  (SQLite by default) holding --history payments, and serving.fraud.LiveScorer called directly
  for --live payments, as the API's risk check calls it (SQL aggregates of the payment's
  windows, features_from, the champion compiled to arrays (ml.compiled) scoring the row, and for a score >= 65 one more
  call on the reasons' probe rows); then the same work part by part ("predict_proba 1 row" is
  the compiled model's). Wall time and the calling thread's CPU time (which leaves out waiting for a
  core on a busy machine), percentiles in ms. The stage runs in a fresh interpreter holding
  only the model and the API's modules, as an API worker does, not in the process that just
  built features and scored N rows in batch. Two passes: threads as configured, and
  scikit-learn's OpenMP (and BLAS) limited to one thread, since OpenMP's parallel regions cost
  a lot for one row when the cores are busy.

--threads N limits OpenMP/BLAS threads for the whole run (threadpoolctl); polars keeps its own
pool. Other processes on the machine change every figure: the header prints the load average.

Targets (the issue): train on 10M rows <= 120 s; batch scoring >= 1M rows/s; live scoring p99
<= 2 ms.

The generator: customers ~N/20 with exponential activity rates, cards ~ customers (15 % of
payments on a second card), devices ~ customers, home IPs shared by ~3 customers plus a pool of
mobile IPs, geo a country code (US, DE, FR, TW, JP, CN, SG; 3 % abroad), currency from the
country (USD, EUR, JPY, CNY; 5 % USDC by crypto), methods by currency, 3 % declined, created_at
uniform over 30 days. Fraud, about 0.5 %: card-testing bursts (a fresh card, IP and device, 8-20
small payments in ten minutes, throwaway customers, many declines), account takeovers (a known
customer from a new device and IP in another country at night, 5-15x the amount) and a few
labels without any signal (friendly fraud).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

# The repository first: this file is bench/ml.py, and `ml` must be the repository's package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.feature_sets import PAYMENTS  # noqa: E402
from ml.payment_features import (  # noqa: E402
    EVENT_COLUMNS,
    FEATURES,
    batch_feature_rows,
    batch_features,
)

START = datetime(2026, 10, 1, tzinfo=UTC)
REVIEW_SCORE = 65  # the API's default (CLEARHOUSE_ML_REVIEW_SCORE): reasons from here on
DAYS = 30
COUNTRIES = ("US", "DE", "FR", "TW", "JP", "CN", "SG")
COUNTRY_WEIGHTS = (0.35, 0.14, 0.06, 0.08, 0.12, 0.18, 0.07)
HOME_CURRENCY = ("USD", "EUR", "EUR", "USD", "JPY", "CNY", "USD")
CURRENCIES = ("USD", "EUR", "JPY", "CNY", "USDC")
# Median ticket in minor units (USDC has 6 decimals).
MEDIAN_MINOR = {"USD": 4_000, "EUR": 3_500, "JPY": 5_000, "CNY": 25_000, "USDC": 60_000_000}
METHOD_NAMES = ("card", "apple_pay", "bank_transfer", "wallet", "wechat_pay", "alipay", "e_cny",
                "crypto")
METHOD_MIX = {  # by currency: probability of each of METHOD_NAMES
    "USD": (0.65, 0.15, 0.10, 0.10, 0, 0, 0, 0),
    "EUR": (0.65, 0.15, 0.10, 0.10, 0, 0, 0, 0),
    "JPY": (0.65, 0.15, 0.10, 0.10, 0, 0, 0, 0),
    "CNY": (0.10, 0, 0, 0, 0.40, 0.40, 0.10, 0),
    "USDC": (0, 0, 0, 0, 0, 0, 0, 1.0),
}
USDC_SHARE, ABROAD_SHARE, DECLINED_SHARE = 0.05, 0.03, 0.03
BURST_SHARE, TAKEOVER_SHARE, NOISE_SHARE = 0.0025, 0.002, 0.0005
TARGETS = {"train_10m_s": 120.0, "batch_rows_s": 1_000_000.0, "live_p99_ms": 2.0}


# --- the data --------------------------------------------------------------------------------


def generate(n: int, seed: int = 1, start: datetime = START, days: int = DAYS) -> pl.DataFrame:
    """n payments in the event layout (EVENT_COLUMNS) plus is_fraud (Int8), sorted by
    (created_at, payment_id); payment ids `pay_b<seed>_<rank>` follow that order."""
    rng = np.random.default_rng(seed)
    span_us = days * 86_400 * 10**6
    customers = max(n // 20, 10)

    # Ordinary payments: who pays, with what, from where, when.
    activity = rng.exponential(1.0, customers).cumsum()
    cust = np.minimum(np.searchsorted(activity, rng.random(n) * activity[-1]), customers - 1)
    home = rng.choice(len(COUNTRIES), customers, p=COUNTRY_WEIGHTS)
    home_ip = rng.integers(0, max(customers // 3, 1), customers)
    card = np.where(rng.random(n) < 0.15, customers + cust, cust)
    device = np.where(rng.random(n) < 0.10, customers + cust, cust)
    mobile_ips = max(n // 10, 10)
    ip = np.where(rng.random(n) < 0.20, customers + rng.integers(0, mobile_ips, n),
                  home_ip[cust])
    country = np.where(rng.random(n) < ABROAD_SHARE,
                       rng.integers(0, len(COUNTRIES), n), home[cust])
    currency = np.array([CURRENCIES.index(c) for c in HOME_CURRENCY])[home[cust]]
    currency[rng.random(n) < USDC_SHARE] = CURRENCIES.index("USDC")
    at = np.sort(rng.integers(0, span_us, n))
    amount = _amounts(rng, currency)
    method = _methods(rng, currency)
    failed = rng.random(n) < DECLINED_SHARE
    fraud = np.zeros(n, dtype=np.int8)

    # Card testing: rows at random positions become bursts of a fresh card/IP/device.
    fresh = 3 * customers + mobile_ips  # ids above every ordinary card, device, IP, customer
    sizes = rng.integers(8, 21, max(int(n * BURST_SHARE / 14), 1))
    sizes = sizes[: np.searchsorted(sizes.cumsum(), n // 4, side="right")]  # tiny n: fewer
    rows = rng.choice(n, int(sizes.sum()), replace=False)
    burst = np.repeat(np.arange(len(sizes)), sizes)
    at[rows] = (rng.integers(0, span_us - 600 * 10**6, len(sizes))[burst]
                + rng.integers(0, 600 * 10**6, len(rows)))
    card[rows] = device[rows] = ip[rows] = fresh + burst
    cust[rows] = fresh + np.arange(len(rows))  # a throwaway customer each time
    currency[rows] = np.where(rng.random(len(sizes)) < 0.5, CURRENCIES.index("USD"),
                              CURRENCIES.index("EUR"))[burst]
    amount[rows] = rng.integers(100, 501, len(rows))
    method[rows] = METHOD_NAMES.index("card")
    country[rows] = rng.integers(0, len(COUNTRIES), len(sizes))[burst]
    failed[rows] = rng.random(len(rows)) < 0.4
    fraud[rows] = 1

    # Account takeover: a known customer's payment from a new device and IP in another country,
    # at night (00-05 UTC), for 5-15x the amount.
    taken = rng.choice(np.flatnonzero(fraud == 0), int(n * TAKEOVER_SHARE), replace=False)
    fresh += len(sizes)
    device[taken] = fresh + np.arange(len(taken))
    ip[taken] = fresh + np.arange(len(taken))
    country[taken] = (home[cust[taken]] + rng.integers(1, len(COUNTRIES), len(taken))) % len(
        COUNTRIES)
    day_us = 86_400 * 10**6
    at[taken] = at[taken] // day_us * day_us + rng.integers(0, 5 * 3600 * 10**6, len(taken))
    amount[taken] = (amount[taken] * rng.uniform(5, 15, len(taken))).astype(np.int64)
    fraud[taken] = 1
    # Friendly fraud: ordinary payments disputed later; nothing to see in the features.
    fraud[rng.choice(np.flatnonzero(fraud == 0), int(n * NOISE_SHARE), replace=False)] = 1

    frame = pl.DataFrame({
        "_at": at, "_merchant": rng.integers(0, 50, n), "_method": method.astype(np.int8),
        "amount_minor": np.maximum(amount, 1), "_currency": currency.astype(np.int8),
        "_cust": cust, "_card": card, "_ip": ip, "_device": device,
        "_country": country.astype(np.int8), "_failed": failed, "is_fraud": fraud})

    def named(prefix: str, column: str) -> pl.Expr:
        return pl.concat_str(pl.lit(prefix), pl.col(column).cast(pl.Utf8))

    ip_parts = [10 + pl.col("_ip") // 2**24, pl.col("_ip") // 2**16 % 256,
                pl.col("_ip") // 256 % 256, pl.col("_ip") % 256]
    return (frame.sort("_at").with_row_index("_rank").select(
        payment_id=pl.concat_str(pl.lit(f"pay_b{seed}_"), pl.col("_rank").cast(pl.Utf8).str.zfill(10)),
        created_at=(pl.lit(int(start.timestamp() * 10**6)) + pl.col("_at"))
        .cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        merchant_id=named("mer_bench_", "_merchant"),
        method=pl.col("_method").replace_strict(range(len(METHOD_NAMES)), METHOD_NAMES,
                                                 return_dtype=pl.Utf8),
        amount_minor=pl.col("amount_minor").cast(pl.Int64),
        currency=pl.col("_currency").replace_strict(range(len(CURRENCIES)), CURRENCIES,
                                                     return_dtype=pl.Utf8),
        customer_id=named("cus_", "_cust"),
        card_fingerprint=named("fp_", "_card"),
        customer_ip=pl.concat_str(*[p.cast(pl.Utf8) for p in ip_parts], separator="."),
        device_id=named("dev_", "_device"),
        geo=pl.col("_country").replace_strict(range(len(COUNTRIES)), COUNTRIES,
                                               return_dtype=pl.Utf8),
        status=pl.when(pl.col("_failed")).then(pl.lit("failed")).otherwise(pl.lit("success")),
        failed_at=pl.when(pl.col("_failed")).then(
            (pl.lit(int(start.timestamp() * 10**6)) + pl.col("_at"))
            .cast(pl.Datetime("us")).dt.replace_time_zone("UTC")),  # declined when created
        is_fraud=pl.col("is_fraud"),
    ))


def _amounts(rng: np.random.Generator, currency: np.ndarray) -> np.ndarray:
    median = np.array([MEDIAN_MINOR[c] for c in CURRENCIES], dtype=np.float64)[currency]
    return np.maximum(median * rng.lognormal(0.0, 1.0, len(currency)), 1).astype(np.int64)


def _methods(rng: np.random.Generator, currency: np.ndarray) -> np.ndarray:
    u = rng.random(len(currency))
    out = np.empty(len(currency), dtype=np.int64)
    for index, code in enumerate(CURRENCIES):
        mask = currency == index
        cumulative = np.cumsum(METHOD_MIX[code])
        out[mask] = np.minimum(np.searchsorted(cumulative, u[mask], side="right"),
                               len(METHOD_NAMES) - 1)
    return out


# --- measuring -------------------------------------------------------------------------------


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Clock:
    """Wall and CPU time (all threads) of a stage; prints one line per stage. CPU/wall above 1
    is parallel work; well below 1 on a busy machine is time spent waiting for a core."""

    def start(self) -> None:
        self._t, self._cpu = time.perf_counter(), time.process_time()

    def stop(self, name: str, rows: int | None = None) -> float:
        wall, cpu = time.perf_counter() - self._t, time.process_time() - self._cpu
        self.show(name, wall, cpu, rows)
        return wall

    @staticmethod
    def show(name: str, wall: float, cpu: float, rows: int | None = None) -> None:
        rate = f"{rows / wall:>14,.0f} rows/s" if rows else " " * 21
        print(f"  {name:<36} {wall:8.2f} s {rate}   CPU {cpu:7.1f} s   peak RSS "
              f"{peak_mb():7,.0f} MB   RSS now {rss_mb():7,.0f} MB", flush=True)


class StageTimes:
    """Wall time of the named functions of a module while inside the block (the module looks
    its functions up at call time, so wrapping the attribute times every call)."""

    def __init__(self, module, names: tuple[str, ...]):
        self.module, self.names, self.seconds = module, names, {}

    def __enter__(self):
        self.saved = {name: getattr(self.module, name) for name in self.names}
        for name, original in self.saved.items():
            setattr(self.module, name, self._timed(name, original))
        return self

    def __exit__(self, *exc):
        for name, original in self.saved.items():
            setattr(self.module, name, original)

    def _timed(self, name, function):
        def timed(*args, **kwargs):
            label = f"{name}({args[0]})" if name == "fit" else name
            t = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - t
        return timed


def percentiles(values_s: list[float]) -> dict[str, float]:
    ms = np.array(values_s) * 1000
    return {f"p{q}": float(np.percentile(ms, q)) for q in (50, 95, 99)} | {
        "max": float(ms.max())}


# --- stages ----------------------------------------------------------------------------------


def quick_model(seed: int):
    """--skip-train: train_candidate on a separate 100,000-row sample (model + card fields)."""
    from ml.train import train_candidate

    return train_candidate(generate(100_000, seed + 1000), feature_set=PAYMENTS)


def batch_scoring(model, card: dict, events: pl.DataFrame, clock: Clock) -> tuple[float, float]:
    """(rows/s of ml.batch.score_payments, rows/s of predict_proba alone on the whole matrix).
    score_payments is what ml.batch runs: the features a block at a time, each block scored by
    the compiled model (ml.compiled; trees walked by ml.forest_kernel) on the thread that wrote
    it, scores, and reasons for those >= the review score. Then, for comparison and as checks:
    the whole matrix of rows, the polars path, predict_proba on the matrix, scikit-learn's."""
    from ml.batch import score_payments
    from ml.compiled import KERNEL_ROWS, compiled_or_model
    from ml.scoring import to_score
    from ml.train import matrix
    from serving.fraud import Champion

    n = events.height
    clock.start()
    compiled = compiled_or_model(model, card)
    champion = Champion("bench", compiled, card["features"], card["reference"])
    compiled.predict_proba(np.zeros((KERNEL_ROWS, len(card["features"]))))
    score_payments(events.head(1_000), champion, REVIEW_SCORE)  # the kernels' code loaded
    clock.stop("  batch: compile + first kernel calls (import numba, load its cached code; the forest "
               "compiled by LLVM)")
    clock.start()
    scored = score_payments(events, champion, REVIEW_SCORE)
    total = clock.stop(f"  batch: score_payments (features in blocks, scores, reasons >= "
                       f"{REVIEW_SCORE})", n)
    clock.start()
    _, rows = batch_feature_rows(events)
    clock.stop("  batch: batch_feature_rows (the whole matrix, for comparison)", n)
    assert tuple(PAYMENTS.features) == FEATURES  # the rows are the model's input as they are
    clock.start()
    same_rows = np.array_equal(matrix(batch_features(events), PAYMENTS), rows, equal_nan=True)
    clock.stop("  batch: batch_features + matrix, the polars path, for comparison", n)
    print(f"  rows equal to the polars path's: {same_rows}")
    clock.start()
    probability = compiled.predict_proba(rows)[:, 1]
    predict_s = clock.stop("  batch: predict_proba on the matrix (compiled)", n)
    print(f"  block scores equal to the matrix's: "
          f"{np.array_equal(to_score(probability), scored.score)}")
    clock.start()
    same = np.array_equal(model.predict_proba(rows)[:, 1], probability)
    clock.stop("  batch: scikit-learn's own predict_proba, for comparison", n)
    print(f"  compiled and scikit-learn probabilities identical: {same}")
    score = scored.score
    print(f"  batch scoring (score_payments)       {total:8.2f} s {n / total:>14,.0f} rows/s")
    print(f"  scores >= {REVIEW_SCORE} (review, explained): {int((score >= REVIEW_SCORE).sum()):,} "
          f"of {n:,}; mean score {score.mean():.2f}")
    return n / total, n / predict_s


def risk_input(merchant, e: dict):
    """The serving.risk.RiskInput the API's risk check builds for payment `e`."""
    from serving.risk import RiskInput

    return RiskInput(merchant=merchant, amount_minor=e["amount_minor"], currency=e["currency"],
                     customer_id=e["customer_id"], customer_ip=e["customer_ip"],
                     device_id=e["device_id"], card_fingerprint=e["card_fingerprint"],
                     geo=e["geo"], payment_id=e["payment_id"], method=e["method"])


def time_live(session, scorer, merchant, scored: list[dict]):
    """Each payment: the scorer call as the API makes it, then the same work part by part (as
    serving/fraud.py does it). Returns ({part: [(wall s, CPU s of this thread)]}, history rows
    per payment). The thread's CPU time leaves out time spent waiting for a core, so on a busy
    machine it is closer to what a quiet one would show (OpenMP workers' time is not in it)."""
    from ml.payment_features import features_from
    from ml.scoring import score_one
    from serving import fraud

    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in (
        "scorer", "summary (SQL aggregates)", "features_from", "predict_proba 1 row",
        "score_one (reasons when >= 65)")}
    history_rows: list[int] = []
    champion = scorer.champion
    clock = time.perf_counter, time.thread_time

    def since(start: tuple[float, float]) -> tuple[float, float]:
        return clock[0]() - start[0], clock[1]() - start[1]

    for e in scored:
        checked = risk_input(merchant, e)
        t = clock[0](), clock[1]()
        scorer(session, checked, e["created_at"])
        timings["scorer"].append(since(t))
        t = clock[0](), clock[1]()
        summary = fraud.summary(session, e)
        timings["summary (SQL aggregates)"].append(since(t))
        history_rows.append(len(fraud.history(session, e)))
        t = clock[0](), clock[1]()
        values = features_from(e, summary)
        timings["features_from"].append(since(t))
        row = np.array([[values[name] for name in champion.features]])
        t = clock[0](), clock[1]()
        champion.model.predict_proba(row)
        timings["predict_proba 1 row"].append(since(t))
        t = clock[0](), clock[1]()
        score_one(champion.model, row, champion.features, champion.reference, reasons_from=65)
        timings["score_one (reasons when >= 65)"].append(since(t))
    return timings, history_rows


def live_scoring(model, card: dict, args, clock: Clock) -> dict:
    """Register + promote into a temporary HOME, fill a migrated API database, call the
    LiveScorer for --live payments and time it, whole and in parts."""
    from sqlalchemy import insert, text
    from sqlalchemy.orm import Session

    from ml.registry import Registry
    from serving import fraud
    from warehouse.connections import make_oltp_engine
    from warehouse.migrate import upgrade
    from warehouse.models import Merchant, Payment
    from warehouse.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="clearhouse-bench-ml-"))
    admin_url = dropped = None
    if args.postgres:
        import uuid

        import psycopg

        admin_url = args.postgres
        name = f"bench_ml_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = admin_url.rsplit("/", 1)[0] + f"/{name}"
        dropped = name
    else:
        url = f"sqlite:///{home / 'clearhouse.sqlite'}"
    engine = None
    try:
        settings = Settings(home=home, environment="test", database_url=url)
        settings.ensure_dirs()
        clock.start()
        registry = Registry(settings, family="payments")
        version = registry.register(model, card)
        registry.promote(version)
        clock.stop("live: register + promote")

        upgrade(url)
        engine = make_oltp_engine(url)
        events = generate(args.history + args.live, args.seed + 2000)
        merchants = sorted(set(events["merchant_id"]))
        now = datetime.now(UTC)
        clock.start()
        with engine.begin() as conn:
            conn.execute(insert(Merchant), [{"id": m, "name": m, "kyc_tier": 3,
                                             "created_at": now, "updated_at": now}
                                            for m in merchants])
            conn.execute(insert(Payment), [
                {"id": e["payment_id"], "merchant_id": e["merchant_id"],
                 "merchant_reference": e["payment_id"], "amount_minor": e["amount_minor"],
                 "currency": e["currency"], "status": e["status"],
                 "payment_method_type": e["method"], "customer_id": e["customer_id"],
                 "customer": {"id": e["customer_id"], "geo": e["geo"]},
                 "customer_ip": e["customer_ip"], "device_id": e["device_id"],
                 "card_fingerprint": e["card_fingerprint"], "risk_decision": "approve",
                 "refunded_minor": 0, "created_at": e["created_at"],
                 "failed_at": e["failed_at"], "updated_at": now}
                for e in events.iter_rows(named=True)])
        clock.stop(f"live: insert {events.height:,} payments", events.height)
        # Every payment is in the table; the scorer reads only those created strictly before
        # the one it scores, so this equals inserting them one by one as the API would.
        scorer = fraud.LiveScorer(settings)
        scored = list(events.tail(args.live).iter_rows(named=True))
        k = len(card["features"])
        with Session(engine) as session:
            merchant = session.get(Merchant, merchants[0])
            if url.startswith("sqlite"):
                plan = session.execute(text(
                    "EXPLAIN QUERY PLAN SELECT id FROM payments WHERE created_at >= :a AND "
                    "created_at < :b AND (customer_id = :c OR (created_at >= :d AND "
                    "(card_fingerprint = :e OR customer_ip = :f OR device_id = :g))) "
                    "ORDER BY created_at DESC LIMIT 5000"),
                    dict(a="x", b="y", c="c", d="d", e="e", f="f", g="g")).all()
                print("  history query plan (SQLite): "
                      + "; ".join(str(row[-1]) for row in plan))
            t = time.perf_counter()
            first = scorer(session, risk_input(merchant, scored[0]), scored[0]["created_at"])
            print(f"  first call (loads the champion): {(time.perf_counter() - t) * 1000:.1f} ms"
                  f" -> {first}")
            passes = {}
            for name, limits in (("threads as configured", contextlib.nullcontext()),
                                 ("OpenMP/BLAS limited to 1 thread", threadpool_limits(1))):
                with limits:
                    passes[name] = time_live(session, scorer, merchant, scored[1:])
        for name, (timings, history_rows) in passes.items():
            print(f"  live scoring of {len(timings['scorer']):,} payments, {name}, on "
                  f"{url.split(':')[0]} ({events.height:,} payments in the table; history rows "
                  f"per payment: median {int(np.median(history_rows))}, max "
                  f"{max(history_rows)}; {k} features):")
            print(f"    {'wall (CPU of the thread)':<26} {'p50':>17} {'p95':>17} {'p99':>17} "
                  f"{'max':>17}")
            for part, values in timings.items():
                wall, cpu = (percentiles([v[i] for v in values]) for i in (0, 1))
                print(f"    {part:<26} " + " ".join(
                    f"{wall[q]:7.3f} ({cpu[q]:6.3f})" for q in ("p50", "p95", "p99", "max"))
                    + " ms")
        return {name: {clock: percentiles([v[i] for v in timings["scorer"]])
                       for i, clock in enumerate(("wall", "cpu"))}
                for name, (timings, _) in passes.items()}
    finally:
        if engine is not None:
            engine.dispose()
        shutil.rmtree(home, ignore_errors=True)
        if dropped:
            import psycopg

            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dropped}" WITH (FORCE)')


def live_scoring_in_fresh_process(model, card: dict, args) -> dict:
    """live_scoring in a new interpreter (multiprocessing 'spawn'): the state of an API worker,
    not of this process after the batch stages."""
    import multiprocessing

    sys.stdout.flush()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_live_scoring_child, (model, card, vars(args)))


def _live_scoring_child(model, card: dict, args: dict) -> dict:
    import ml.train  # noqa: F401  (scikit-learn's OpenMP runtime, so a thread limit reaches it)

    if args["threads"]:
        threadpool_limits(args["threads"])
    try:
        return live_scoring(model, card, argparse.Namespace(**args), Clock())
    finally:
        sys.stdout.flush()


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="payments (default 1M)")
    parser.add_argument("--live", type=int, default=2_000,
                        help="payments scored live (0: skip the live stage)")
    parser.add_argument("--history", type=int, default=20_000,
                        help="payments already in the API database for the live stage")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None,
                        help="limit OpenMP/BLAS threads (scikit-learn, numpy) for the whole run "
                             "(default: the libraries' own, one per core)")
    parser.add_argument("--skip-train", action="store_true",
                        help="fit a quick model on a 100,000-row sample instead of --rows")
    parser.add_argument("--postgres", nargs="?", metavar="ADMIN_URL",
                        const=os.environ.get("CLEARHOUSE_BENCH_PG",
                                             "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="run the live stage on a throwaway Postgres database")
    args = parser.parse_args()
    import ml.train  # loads scikit-learn's OpenMP runtime, so a thread limit reaches it

    if args.threads:
        threadpool_limits(args.threads)
    clock = Clock()
    print(f"bench/ml.py: {args.rows:,} payments, seed {args.seed}, {os.cpu_count()} cores, "
          f"polars {pl.__version__}, numpy {np.__version__}, OpenMP/BLAS threads "
          f"{args.threads or 'library default'}; load average "
          + "/".join(f"{x:.1f}" for x in os.getloadavg()), flush=True)

    clock.start()
    events = generate(args.rows, args.seed)
    clock.stop("generate", args.rows)
    frauds = int(events["is_fraud"].sum())
    print(f"  {events.height:,} payments, {frauds:,} fraud ({frauds / events.height:.2%}), "
          f"{events['customer_id'].n_unique():,} customers, "
          f"{events['card_fingerprint'].n_unique():,} cards, "
          f"{events['customer_ip'].n_unique():,} IPs, {events['device_id'].n_unique():,} "
          f"devices, {events['created_at'].min():%Y-%m-%d} .. "
          f"{events['created_at'].max():%Y-%m-%d}")

    clock.start()
    batch_features(events.select(EVENT_COLUMNS))
    features_s = clock.stop("features (batch_features)", args.rows)

    train_s = None
    parts = ("time_split", "fit", "scores", "holdout_metrics", "holdout_fingerprint", "pr_curve",
             "reference_values")
    with StageTimes(ml.train, parts) as inside:
        clock.start()
        if args.skip_train:
            model, card = quick_model(args.seed)
            clock.stop("quick model (100,000-row sample)", 100_000)
        else:
            model, card = ml.train.train_candidate(events, feature_set=PAYMENTS)
            train_s = clock.stop("train_candidate", args.rows)
    print("  inside: " + ", ".join(f"{name} {seconds:.1f} s"
                                   for name, seconds in inside.seconds.items()))
    fitted = [c.estimator for c in getattr(model, "calibrated_classifiers_", [])]
    if fitted and all(hasattr(e, "n_iter_") for e in fitted):
        print(f"  gbm: {len(fitted)} calibrated gradient-boosted models (one per time fold), "
              f"{sum(e.n_iter_ for e in fitted)} trees in all (n_iter_ "
              f"{[e.n_iter_ for e in fitted]}): each predict_proba walks them all")
    m, window = card["metrics"], card["window"]
    print(f"  holdout: {window['holdout_rows']:,} rows, {window['holdout_frauds']:,} fraud; "
          f"gbm PR-AUC {m['pr_auc']:.3f}, recall@1%FPR {m['recall_at_1pct_fpr']:.3f}, "
          f"precision@100 {m['precision_at_100']:.2f}; logistic PR-AUC "
          f"{card['baseline_metrics']['logistic']['pr_auc']:.3f}")

    batch_rate, predict_rate = batch_scoring(model, card, events, clock)
    del events
    live = live_scoring_in_fresh_process(model, card, args) if args.live > 0 else {}

    print()
    print(f"summary ({args.rows:,} payments, {os.cpu_count()} cores, peak RSS "
          f"{peak_mb():,.0f} MB):")
    print(f"  {'figure':<46} {'measured':>22} {'target':>14}")
    train_target = (f"<= {TARGETS['train_10m_s']:.0f} s @10M" if args.rows != 10_000_000
                    else f"<= {TARGETS['train_10m_s']:.0f} s")
    rows = [
        ("features rows/s", f"{args.rows / features_s:,.0f}", ""),
        (f"training wall time ({args.rows:,} rows)",
         "skipped" if train_s is None else f"{train_s:.1f} s", train_target),
        ("batch scoring rows/s (score_payments)", f"{batch_rate:,.0f}",
         f">= {TARGETS['batch_rows_s']:,.0f}"),
        ("batch predict_proba only rows/s", f"{predict_rate:,.0f}", ""),
    ]
    for name, p in live.items():
        short = "1 thread" if name.startswith("OpenMP") else "as configured"
        for q in ("p50", "p95", "p99"):
            rows.append((f"live scorer {q} ({short}), wall (CPU)",
                         f"{p['wall'][q]:.3f} ({p['cpu'][q]:.3f}) ms",
                         f"<= {TARGETS['live_p99_ms']:.0f} ms" if q == "p99" else ""))
    for name, measured, target in rows:
        print(f"  {name:<46} {measured:>22} {target:>14}")


if __name__ == "__main__":
    main()
