"""Fraud features of Clearhouse payments: one definition, computed in batch and live.

The payment event layout (what the API's `payments` table holds, what the warehouse extracts
and what ml.simulate generates): payment_id, created_at (UTC), merchant_id, method (payment
method type), amount_minor, currency, customer_id, card_fingerprint, customer_ip, device_id,
geo ("lat,lon" or a country code), status.

Point in time. A payment's features read only payments created strictly before it
(`created_at < t`) inside a look-back window ending at t: [t - 1 h, t), [t - 24 h, t) or
[t - 30 d, t). Payments at the same instant do not see each other. The live scorer asks the
API's database for exactly these rows (serving/fraud.py), so the numbers a model was trained on
are the numbers it is served.

The features (FEATURES, in model column order):
- log_amount_usd: log1p of the amount in indicative US dollars (serving.risk.INDICATIVE_USD; a
  risk signal, not money movement, so floats and indicative rates are fine here).
- amount_vs_customer_30d: log_amount_usd - log1p(mean indicative USD of the customer's
  payments in the last 30 days); 0 without such payments.
- <key>_count_1h, <key>_count_24h for key in customer, card, ip, device: earlier payments with
  the same customer id / card fingerprint / IP / device id in the window; 0 without the key.
- hours_since_customer_prev: hours since the customer's latest payment in the last 30 days;
  NO_HISTORY_HOURS (720, the window) without one.
- km_from_customer_prev: great-circle distance between this payment's geo and the geo of the
  customer's latest payment in the last 30 days (ties at one instant: the larger payment_id);
  0 when either geo is unknown.
- new_device: 1 when the payment has a device, the customer paid in the last 30 days, and
  never from this device in that window.
- customer_declines_24h: the customer's failed payments in the last 24 hours - failed by t: a
  payment still pending at t that fails later (a channel's callback) is no decline at t
  (`failed_at`, see ml.payment_layout; the same for the merchant's declines below).
- merchant_payments_1h, merchant_decline_rate_1h: the merchant's payments in the last hour and
  the share of them that failed (0 without any): merchant risk as it shows at payment time - a
  merchant under a card-testing attack sees bursts of declines. (Channel risk: the payment
  method below; the channel itself is chosen by routing after the risk check.)
- hour_of_day: UTC hour.
- method_<type>: one-hot of the payment method type (METHODS).

`batch_features(events)` computes them with polars for any number of payments
(`batch_feature_rows(events)`: the same, written straight into the model's rows in machine code;
`batch_feature_blocks`: those rows a block at a time, batch scoring's path);
`event_features(event, history)` computes one payment's in plain Python from the rows the
window holds, through a `Summary` (counts, the customer's amounts per currency, the latest
payment) that the live API computes with SQL aggregates instead (serving/fraud.py).
tests/ml/test_payment_features.py checks batch and single-payment agree on the same payments;
tests/serving/api/test_fraud_scoring.py checks the SQL summary against both.
"""

from __future__ import annotations

import functools
import math
import queue
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import numpy as np
import polars as pl

from ml.cores import usable_cores
from ml.payment_layout import COUNT_NAMES, EVENT_COLUMNS, KEYS, WINDOWS
from serving.risk import INDICATIVE_USD, distance_km, parse_geo
from warehouse.money import exponent

METHODS = ("card", "apple_pay", "bank_transfer", "wechat_pay", "alipay", "e_cny", "crypto",
           "wallet")
HISTORY = timedelta(days=30)
NO_HISTORY_HOURS = 720.0
EARTH_KM = 6371.0

FEATURES: tuple[str, ...] = (
    "log_amount_usd",
    "amount_vs_customer_30d",
    *COUNT_NAMES,
    "hours_since_customer_prev",
    "km_from_customer_prev",
    "new_device",
    "customer_declines_24h",
    "merchant_payments_1h",
    "merchant_decline_rate_1h",
    "hour_of_day",
    *[f"method_{name}" for name in METHODS],
)

# The payment event layout with its types (the API's payments, the warehouse extract and
# ml.simulate all produce it) and the layout of fraud labels (one row per reported payment).
_TYPES: dict[str, pl.DataType] = {"created_at": pl.Datetime("us", "UTC"),
                                   "amount_minor": pl.Int64(),
                                   "failed_at": pl.Datetime("us", "UTC")}
EVENT_SCHEMA = pl.Schema({name: _TYPES.get(name, pl.Utf8()) for name in EVENT_COLUMNS})
LABEL_SCHEMA = pl.Schema({"payment_id": pl.Utf8(), "kind": pl.Utf8(),
                          "reported_at": pl.Datetime("us", "UTC")})


def usd_major(amount_minor: float, currency: str) -> float:
    """Indicative US dollars (0 for a currency without an indicative rate)."""
    rate = INDICATIVE_USD.get(currency)
    return amount_minor / 10 ** exponent(currency) * float(rate) if rate else 0.0


def _dollars(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(usd, valid): each payment's indicative dollars (usd_major; 0 where not `valid`, a null
    amount or currency) - the amount times its currency's dollars per minor unit, looked up by
    the currency's code (a join, or polars' replace by value, hashes every row's text)."""
    codes, currencies = _distinct(frame["currency"])
    per_minor = np.array([usd_major(1, c) for c in currencies] + [0.0])  # code -1: last
    amount = frame["amount_minor"]
    valid = (codes >= 0) & amount.is_not_null().to_numpy()
    usd = amount.cast(pl.Float64).fill_null(0.0).to_numpy() * per_minor[codes]
    return usd, valid


def _distinct(values: pl.Series) -> tuple[np.ndarray, list]:
    """(codes, distinct values): each row's code (_column_codes; -1 for null) and the value of
    each code - for columns of few values, whatever depends on the value computed once each."""
    codes, distinct = _column_codes(values)
    return codes, values.gather(kernels().first_rows(codes, distinct)).to_list()


def _geo_points(values: pl.Series) -> pl.DataFrame:
    geos = [g for g in values.drop_nulls().unique().sort().to_list() if g]
    points = [parse_geo(g) for g in geos]
    return pl.DataFrame({"geo": geos,
                         "lat": [p[0] if p else None for p in points],
                         "lon": [p[1] if p else None for p in points]},
                        schema={"geo": pl.Utf8, "lat": pl.Float64, "lon": pl.Float64})


class _Instants:
    """Dense ranks of the frame's instants (it is sorted by created_at)."""

    def __init__(self, created_us: np.ndarray):
        self.us = created_us
        self._ranks: dict[timedelta, np.ndarray] = {}
        new = _changes(created_us)
        self.rank = np.cumsum(new) - 1
        self.distinct = created_us[new]
        self.width = len(self.distinct) + 1

    def rank_of(self, period: timedelta) -> np.ndarray:
        """Each row's rank of t - period: the number of distinct instants before it."""
        if period not in self._ranks:
            self._ranks[period] = kernels().search_left(
                self.distinct, self.us - period // timedelta(microseconds=1))
        return self._ranks[period]


class _Windows:
    """Earlier rows with the same key in [t - period, t), by positions in one sorted order.

    The frame is in (created_at, payment_id) order. Sorting rows by (key, row number) keeps that
    order within each key, so every key's rows form one run sorted by instant. Per sorted row:
    `start`, where its key's run starts, `end`, where the key's rows at its own instant start
    (the rows before are earlier), and for a period the first of the key's rows at or after
    t - period (`since`; one pointer walk per run, ml.feature_kernels.window_first): a window
    is the range [since, end) of the sorted order. Results are put back in frame order at the
    end. Rows whose key is null have no window (0).

    Grouping the rows by key: each key gets an exact dense code (`_column_codes`: a hash table
    that compares the keys' bytes, so equal hashes of different keys cannot merge them), and a
    counting sort by code keeps each key's rows in frame order."""

    def __init__(self, key: tuple[np.ndarray, int], instants: _Instants):
        codes, distinct = key  # _column_codes
        # rows with a null key column: one more group (`distinct`), masked below
        self.order, self.key, self.rank = kernels().group_order(codes, distinct, instants.rank)
        self.instants, self.null = instants, self.key == distinct
        # the key's first row; the key's first row at this row's instant (rows before t)
        self.start, self.end = kernels().key_runs(self.key, self.rank)
        self._since: dict[timedelta, np.ndarray] = {}

    def since(self, period: timedelta) -> np.ndarray:
        """Sorted position of the key's first row at or after t - period."""
        if period not in self._since:
            self._since[period] = kernels().window_first(self.order, self.start, self.rank,
                                                         self.instants.rank_of(period))
        return self._since[period]

    def _frame_order(self, values: np.ndarray) -> np.ndarray:
        out = np.empty_like(values)
        out[self.order] = values
        return out

    def count(self, first: np.ndarray) -> np.ndarray:
        return kernels().window_counts(self.order, self.null, self.end, first)

    def total(self, values: np.ndarray, first: np.ndarray) -> np.ndarray:
        """Sum of `values` over the window: differences of running sums restarted per key, so
        a float sum carries the error of that key's rows only (integers: exact)."""
        running = kernels().running_sums(self.key, values, self.order)
        return kernels().window_sums(self.order, self.null, self.start, self.end, first, running)

    def failed_later(self, late_us: np.ndarray, period: timedelta) -> np.ndarray:
        """Of the key's rows in [t - period, t), how many failed only at or after t: `late_us`
        is each row's failure time (epoch us) where it failed after it was created, else -1.
        `total` counts them as failed; a row i does not see row j's failure when
        created_j < t_i <= failed_j, and j is in i's window when t_i <= created_j + period:
        each such j takes one off the sorted range of its key's rows at instants
        (created_j, min(failed_j, created_j + period)] (a difference array)."""
        late = late_us[self.order]
        n = len(late)
        rows = np.flatnonzero((late >= 0) & ~self.null)
        if not len(rows):
            return np.zeros(n, dtype=np.int64)
        created = self.instants.us[self.order][rows]
        until = np.minimum(late[rows], created + period // timedelta(microseconds=1))
        last_rank = np.searchsorted(self.instants.distinct, until, "right") - 1
        base = self.key * self.instants.width
        place = base + self.rank  # non-decreasing: (key, instant) in one number
        lo = np.searchsorted(place, place[rows], "right")
        hi = np.searchsorted(place, base[rows] + last_rank, "right")
        diff = np.zeros(n + 1, dtype=np.int64)
        np.add.at(diff, lo, 1)
        np.add.at(diff, hi, -1)
        return self._frame_order(np.where(self.null, 0, np.cumsum(diff)[:n]))

    def previous(self) -> np.ndarray:
        """Frame row of the key's latest earlier row (-1 without one)."""
        has = (~self.null) & (self.end > self.start)
        return self._frame_order(np.where(has, self.order[np.maximum(self.end - 1, 0)], -1))


def _trailing(key: tuple[np.ndarray, int], instants: _Instants,
              periods: list[timedelta]) -> np.ndarray:
    """Per period, each row's earlier rows with the same key in [t - period, t) (0 for a null
    key), as _Windows.count gives them, in one pass in frame order
    (ml.feature_kernels.trailing_counts)."""
    codes, distinct = key
    return kernels().trailing_counts(
        codes, distinct, instants.us,
        np.array([period // timedelta(microseconds=1) for period in periods], dtype=np.int64))


def _changes(values: np.ndarray) -> np.ndarray:
    """True where a sorted array's value differs from the one before (and at the first)."""
    new = np.ones(len(values), dtype=bool)
    new[1:] = values[1:] != values[:-1]
    return new


def _column_codes(values: pl.Series) -> tuple[np.ndarray, int]:
    """One column's values as dense codes (-1 for null), exact (ml.feature_kernels.text_codes
    compares the values' bytes), read from the string views polars holds (Arrow's layout,
    handed over chunk by chunk without a copy)."""
    import pyarrow as pa

    chunks: list[tuple[np.ndarray, np.ndarray, int]] = []
    parts: list[np.ndarray] = []
    for chunk in values.cast(pl.Utf8).get_chunks():
        arrow = chunk.to_arrow(compat_level=pl.CompatLevel.newest())
        if arrow.type != pa.string_view():  # not polars' own layout: make it so
            arrow = arrow.cast(pa.string_view())
        _, views, *buffers = arrow.buffers()
        rows = len(arrow)
        chunks.append((np.frombuffer(views, dtype="<u8").reshape(-1, 2)[
            arrow.offset:arrow.offset + rows] if rows else np.zeros((0, 2), np.uint64),
            chunk.is_not_null().to_numpy(), len(parts)))
        parts += [np.frombuffer(buffer, dtype=np.uint8) if buffer is not None
                  else np.zeros(0, np.uint8) for buffer in buffers]  # indexed by the views
    starts = np.cumsum([0] + [len(part) for part in parts], dtype=np.int64)[:-1]
    data = parts[0] if len(parts) == 1 else np.concatenate(parts or [np.zeros(0, np.uint8)])
    return kernels().text_codes(chunks, data, starts, _HASH_MASK)


_HASH_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)  # the keys' hash bits text_codes uses (tests: none)


def kernels():
    """ml.feature_kernels, imported on first use: numba stays out of the API's live scorer,
    which imports this module for `features_from`."""
    from ml import feature_kernels

    return feature_kernels


def _haversine_km(lat1: pl.Expr, lon1: pl.Expr, lat2: pl.Expr, lon2: pl.Expr) -> pl.Expr:
    """The same formula as serving.risk.distance_km, on columns of degrees."""
    rad = math.pi / 180
    h = (((lat2 - lat1) * rad / 2).sin() ** 2
         + (lat1 * rad).cos() * (lat2 * rad).cos() * (((lon2 - lon1) * rad / 2).sin() ** 2))
    return 2 * EARTH_KM * h.sqrt().arcsin()


@dataclass(frozen=True)
class _Counted:
    """The payments (event order, `_row` = the input's row) and their window counts, before the
    features are put together from them (as a polars frame by batch_features, as the model's
    rows by batch_feature_rows)."""

    frame: pl.DataFrame
    in_order: bool  # the input was in event order: `_row` is 0, 1, 2, ...
    instants: _Instants
    usd: np.ndarray  # indicative dollars (_dollars), 0 where not usd_valid
    usd_valid: np.ndarray
    columns: dict[str, np.ndarray]  # COUNT_NAMES, in FEATURES' order
    computed: dict[str, np.ndarray]  # the other counts and sums, by their names below
    previous: np.ndarray  # frame row of the customer's latest payment in 30 days, else -1
    extra: Any = None  # what _counted's `alongside` returned


def _counted(events: pl.DataFrame,
             alongside: Callable[[pl.DataFrame], Any] | None = None) -> _Counted:
    """The payments in event order with every window count: what FEATURES are made of.
    `alongside(frame)` (the payments in event order), when given, runs in this thread while the
    pool's threads count; its result is `_Counted.extra`."""
    if "failed_at" not in events.columns:  # a layout without it: failures when created
        events = events.with_columns(failed_at=pl.lit(None, pl.Datetime("us", "UTC")))
    elif events.schema["failed_at"] == pl.Null:  # rows that all lack it
        events = events.with_columns(pl.col("failed_at").cast(pl.Datetime("us", "UTC")))
    frame = (events.select(EVENT_COLUMNS).with_row_index("_row")
             .with_columns(pl.col("created_at").dt.cast_time_unit("us"),
                           pl.col("failed_at").dt.cast_time_unit("us")))
    in_order = _in_event_order(frame)  # the warehouse's extract is: no sort, no sort back
    if not in_order:
        frame = frame.sort("created_at", "payment_id")

    # numpy, polars and the kernels work outside the GIL: one thread per core computes the keys'
    # codes, then the windows, while this one prepares what they read, then runs `alongside`.
    # A window task waits for the codes it needs only (no barrier: a thread done with codes
    # starts on windows); every code is queued before any window task, so a waiting task always
    # waits for a code another thread is computing - and they are queued in the order the
    # tasks need them, the longest task (the customer's) first, so that they rarely wait. The
    # window tasks are queued once the instants are ranked, before the amounts and failures
    # are prepared (`sums`: the customer's and the merchant's tasks need them late).
    with ThreadPoolExecutor(max_workers=usable_cores()) as pool:
        coded = {column: pool.submit(_column_codes, frame[column])
                 for column in ["customer_id", "device_id", "card_fingerprint", "customer_ip",
                                "merchant_id"]}

        def code(column: str) -> tuple[np.ndarray, int]:
            return coded[column].result()

        # writable: polars hands over a read-only view or a copy depending on the column's
        # chunks, and numba compiles (or loads) machine code per kind - one kind, one load
        instants = _Instants(frame["created_at"].dt.epoch("us").to_numpy(writable=True))
        for period in {*WINDOWS.values(), HISTORY}:  # filled now: the tasks only read it
            instants.rank_of(period)
        sums: Future[tuple[np.ndarray, np.ndarray, np.ndarray]] = Future()  # usd + _failures

        def customer_counts() -> dict[str, np.ndarray]:
            windows = _Windows(code(KEYS["customer"]), instants)
            out = {f"customer_count_{name}": windows.count(windows.since(period))
                   for name, period in WINDOWS.items()}
            usd, failed, late_us = sums.result()
            month = windows.since(HISTORY)
            out["_cust_30d"] = windows.count(month)
            out["_cust_usd_30d"] = windows.total(usd, month)
            out["customer_declines_24h"] = (
                windows.total(failed, windows.since(WINDOWS["24h"]))
                - windows.failed_later(late_us, WINDOWS["24h"]))
            out["_previous"] = np.where(out["_cust_30d"] > 0, windows.previous(), -1)
            return out

        def key_counts(key: str, column: str) -> dict[str, np.ndarray]:
            """Card, IP, device: counts only - no need to sort the rows by key."""
            counts = _trailing(code(column), instants, list(WINDOWS.values()))
            return {f"{key}_count_{name}": counts[j] for j, name in enumerate(WINDOWS)}

        def customer_device_seen() -> dict[str, np.ndarray]:
            """Whether the customer used the device in the 30 days before (new_device)."""
            customer, _ = code(KEYS["customer"])
            return {"_cust_device_seen_30d": kernels().pair_seen_within(
                customer, *code(KEYS["device"]), instants.us,
                HISTORY // timedelta(microseconds=1))}

        def merchant_counts() -> dict[str, np.ndarray]:
            merchant = _Windows(code("merchant_id"), instants)
            hour = merchant.since(WINDOWS["1h"])
            _, failed, late_us = sums.result()
            return {"_merchant_1h": merchant.count(hour),
                    "_merchant_declines_1h": (merchant.total(failed, hour)
                                              - merchant.failed_later(late_us, WINDOWS["1h"]))}

        tasks: list[Callable[[], dict[str, np.ndarray]]] = [customer_counts,
                                                            customer_device_seen]
        tasks += [functools.partial(key_counts, key, column) for key, column in KEYS.items()
                  if key != "customer"]
        tasks += [merchant_counts]
        parts = pool.map(lambda task: task(), tasks)
        try:
            usd, usd_valid = _dollars(frame)
            sums.set_result((usd, *_failures(frame, instants)))
        except BaseException as error:  # the tasks waiting for them fail too, none hangs
            sums.set_exception(error)
            raise
        extra = alongside(frame) if alongside is not None else None
        computed = {name: values for part in parts for name, values in part.items()}
    return _Counted(frame, in_order, instants, usd, usd_valid,
                    {name: computed.pop(name) for name in COUNT_NAMES},  # in FEATURES' order
                    computed, computed.pop("_previous"), extra)


def _failures(frame: pl.DataFrame, instants: _Instants) -> tuple[np.ndarray, np.ndarray]:
    """(failed, late_us) of the payments in event order, as the windows' sums read them: 1 for
    a failed payment, and the time it failed where that came after it was created (a pending
    payment's callback), else -1."""
    failed = (frame["status"] == "failed").to_numpy().astype(np.int64)
    failed_us = frame["failed_at"].dt.epoch("us").fill_null(-1).to_numpy()
    return failed, np.where((failed == 1) & (failed_us > instants.us), failed_us, -1)


def batch_features(events: pl.DataFrame) -> pl.DataFrame:
    """payment_id plus FEATURES for every payment, in the input's row order."""
    counted = _counted(events)
    frame, in_order, instants = counted.frame, counted.in_order, counted.instants
    columns, computed, previous = counted.columns, counted.computed, counted.previous

    has_prev = previous >= 0
    prev_row = np.maximum(previous, 0)
    frame = frame.with_columns(
        **{name: pl.Series(values) for name, values in (columns | computed).items()},
        usd=pl.Series(counted.usd).scatter(np.flatnonzero(~counted.usd_valid), None),
        _prev_at=pl.Series(np.where(has_prev, instants.us[prev_row], 0)).cast(
            pl.Datetime("us")).dt.replace_time_zone(
                cast(pl.Datetime, frame["created_at"].dtype).time_zone),
        _has_prev=pl.Series(has_prev),
        _prev_geo=frame["geo"].gather(prev_row),
    ).with_columns(pl.when(pl.col("_has_prev")).then(pl.col("_prev_at")).alias("_prev_at"))
    points = _geo_points(frame["geo"])
    frame = (frame.join(points, on="geo", how="left", maintain_order="left")
             .join(points.rename({"geo": "_prev_geo", "lat": "_prev_lat", "lon": "_prev_lon"}),
                   on="_prev_geo", how="left", maintain_order="left")
             .with_columns(pl.when(pl.col("_has_prev")).then(pl.col(c)).alias(c)
                           for c in ("_prev_lat", "_prev_lon")))
    log_usd = pl.col("usd").log1p()
    has_history = (pl.col("_cust_30d") > 0) & pl.col("customer_id").is_not_null()
    prev_geo = pl.col("_prev_lat").is_not_null() & pl.col("lat").is_not_null()
    features = frame.select(
        "_row", "payment_id",
        log_usd.alias("log_amount_usd"),
        pl.when(has_history).then(log_usd - (pl.col("_cust_usd_30d") / pl.col("_cust_30d"))
                                  .log1p()).otherwise(0.0).alias("amount_vs_customer_30d"),
        *[pl.col(name).cast(pl.Float64) for name in columns],
        pl.when(pl.col("_prev_at").is_not_null())
        .then((pl.col("created_at") - pl.col("_prev_at")).dt.total_microseconds() / 3.6e9)
        .otherwise(NO_HISTORY_HOURS).alias("hours_since_customer_prev"),
        pl.when(prev_geo).then(_haversine_km(pl.col("_prev_lat"), pl.col("_prev_lon"),
                                             pl.col("lat"), pl.col("lon")))
        .otherwise(0.0).alias("km_from_customer_prev"),
        (has_history & pl.col("device_id").is_not_null() & ~pl.col("_cust_device_seen_30d"))
        .cast(pl.Float64).alias("new_device"),
        pl.col("customer_declines_24h").cast(pl.Float64),
        pl.col("_merchant_1h").cast(pl.Float64).alias("merchant_payments_1h"),
        pl.when(pl.col("_merchant_1h") > 0)
        .then(pl.col("_merchant_declines_1h") / pl.col("_merchant_1h"))
        .otherwise(0.0).alias("merchant_decline_rate_1h"),
        pl.col("created_at").dt.hour().cast(pl.Float64).alias("hour_of_day"),
        *[(pl.col("method") == name).cast(pl.Float64).alias(f"method_{name}")
          for name in METHODS],
    )
    return (features if in_order else features.sort("_row")).drop("_row")


def batch_feature_rows(events: pl.DataFrame) -> tuple[pl.Series, np.ndarray]:
    """(payment_id, rows): FEATURES for every payment as the model reads them - float64, one row
    per payment in the input's order, FEATURES' columns in order (row-major) - equal bit for bit
    to batch_features' columns, written in machine code (ml.feature_kernels.assemble_rows)
    instead of a polars frame that is then copied into a matrix: batch_feature_blocks' rows,
    gathered into one matrix."""
    rows = np.empty((events.height, len(FEATURES)))

    def gather(block: np.ndarray, positions: np.ndarray) -> None:
        rows[positions] = block

    return batch_feature_blocks(events, gather), rows


BLOCK_ROWS = 4_096  # rows per block: 4,096 x 25 float64 (800 KB) stay in a core's L2 cache (1 MB)


def batch_feature_blocks(events: pl.DataFrame,
                         consume: Callable[[np.ndarray, np.ndarray], None],
                         block_rows: int = BLOCK_ROWS) -> pl.Series:
    """FEATURES for every payment a block of rows at a time, never the whole matrix: batch
    scoring's path (ml.batch). `consume(rows, positions)` gets up to block_rows rows (FEATURES,
    row-major, as batch_feature_rows describes them) and their positions in the input's order,
    on one of a thread per core, each block once; the rows are a buffer the thread reuses for
    its next block (copy what is kept). The blocks follow event order, so a block reads
    neighbouring parts of the per-row arrays, and its rows, written and read back while in
    cache, never reach memory - a matrix of a million rows is 200 MB of fresh pages for the
    kernel to zero and the cores to write and read back. Returns the payment ids in the input's
    order. An exception in `consume` cancels the blocks not yet started and is raised."""
    counted = _counted(events, alongside=_row_inputs)
    frame, inputs, computed = counted.frame, counted.extra, counted.computed
    position = inputs["position"]  # each event-order row's position in the input's order
    per_row = (  # assemble_rows' arguments after `stop`
        tuple(counted.columns.values()), counted.usd, counted.usd_valid, inputs["customer_valid"],
        computed["_cust_30d"], computed["_cust_usd_30d"], counted.previous, counted.instants.us,
        inputs["place"], inputs["place_lat"], inputs["place_lon"], inputs["device_valid"],
        computed["_cust_device_seen_30d"], computed["customer_declines_24h"],
        computed["_merchant_1h"], computed["_merchant_declines_1h"], inputs["method"],
        len(METHODS), NO_HISTORY_HOURS, 2 * EARTH_KM)
    n = frame.height
    buffers: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
    for _ in range(usable_cores()):
        buffers.put(np.empty((block_rows, len(FEATURES))))
    assemble = kernels().assemble_rows

    def block(start: int) -> None:
        stop = min(start + block_rows, n)
        rows = buffers.get()
        try:
            assemble(rows, start, stop, *per_row)
            consume(rows[:stop - start], position[start:stop])
        finally:
            buffers.put(rows)

    with ThreadPoolExecutor(max_workers=usable_cores()) as pool:
        started = [pool.submit(block, start) for start in range(0, n, block_rows)]
        try:
            for future in started:
                future.result()
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return frame["payment_id"] if counted.in_order else frame.sort("_row")["payment_id"]


def _row_inputs(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    """What assemble_rows reads besides the counts and dollars, from the payments in event
    order: prepared while the counts are computed (_counted's `alongside`). Places and methods
    by their codes: a geo is parsed, a method looked up, once per distinct value."""
    geo_codes, geos = _distinct(frame["geo"])
    points = [parse_geo(geo) for geo in geos]  # None for an empty or unknown geo
    located = np.array([point is not None for point in points] + [False])  # code -1: last
    method_codes, methods = _distinct(frame["method"])
    method_index = [METHODS.index(m) if m in METHODS else len(METHODS) for m in methods]
    return {
        "position": frame["_row"].cast(pl.Int64).to_numpy(),  # the row in the input's order
        "customer_valid": frame["customer_id"].is_not_null().to_numpy(),
        "place": np.where(located[geo_codes], geo_codes, -1),
        "place_lat": np.array([point[0] if point else 0.0 for point in points]),
        "place_lon": np.array([point[1] if point else 0.0 for point in points]),
        "device_valid": frame["device_id"].is_not_null().to_numpy(),
        # no method: NaN, as polars' null; a method not in METHODS: all 0
        "method": np.array(method_index + [-1], dtype=np.int64)[method_codes],
    }


def _in_event_order(frame: pl.DataFrame) -> bool:
    """Whether the rows are already sorted by (created_at, payment_id), each pair distinct."""
    at, payment = pl.col("created_at"), pl.col("payment_id")
    later = (at > at.shift(1)) | ((at == at.shift(1)) & (payment > payment.shift(1)))
    return bool(frame.select(later.slice(1).fill_null(False).all()).item())


# --- one payment, live ----------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """What one payment's features need from the payments before it: `summarize` computes it
    from rows, the live API from SQL aggregates (serving/fraud.py); `features_from` turns it into
    FEATURES. Both sources are tested against each other and against batch_features."""

    counts: dict[str, int]  # "<key>_count_<window>": earlier payments with the same key
    customer_payments: int  # the customer's payments in the last 30 days
    customer_minor: dict[str, float]  # their amounts per currency, in minor units
    customer_declines_24h: int
    customer_used_device: bool  # any of them from this payment's device
    latest_at: datetime | None  # the customer's latest payment (ties: the larger payment_id)
    latest_geo: str | None
    merchant_payments_1h: int = 0  # the merchant's payments in the last hour
    merchant_declines_1h: int = 0  # of which failed


def summarize(event: Mapping, history: Iterable[Mapping]) -> Summary:
    """The Summary of `event` from rows in the event layout (rows at or after the event's
    instant, outside the 30-day window, or the event itself are ignored), in one pass."""
    t: datetime = event["created_at"]
    month_ago, day_ago = t - HISTORY, t - WINDOWS["24h"]
    since = [(name, t - period) for name, period in WINDOWS.items()]
    keyed = [(key, column, event.get(column)) for key, column in KEYS.items()
             if event.get(column) is not None]
    counts = {f"{key}_count_{name}": 0 for key in KEYS for name in WINDOWS}
    customer, device = event.get("customer_id"), event.get("device_id")
    merchant, hour_ago = event.get("merchant_id"), t - WINDOWS["1h"]
    minor: dict[str, float] = {}
    payments, declines, used_device, latest = 0, 0, False, None
    merchant_payments = merchant_declines = 0
    for row in history:
        at = row["created_at"]
        if not month_ago <= at < t or row["payment_id"] == event["payment_id"]:
            continue
        failed = row["status"] == "failed" and (row.get("failed_at") or at) < t  # by t
        if merchant is not None and at >= hour_ago and row.get("merchant_id") == merchant:
            merchant_payments += 1
            merchant_declines += failed
        for name, start in since:
            if at >= start:
                for key, column, value in keyed:
                    if row.get(column) == value:
                        counts[f"{key}_count_{name}"] += 1
        if customer is None or row.get("customer_id") != customer:
            continue
        payments += 1
        minor[row["currency"]] = minor.get(row["currency"], 0) + int(row["amount_minor"])
        declines += failed and at >= day_ago
        used_device = used_device or (device is not None and row.get("device_id") == device)
        if latest is None or (at, row["payment_id"]) > (latest["created_at"],
                                                         latest["payment_id"]):
            latest = row
    return Summary(counts, payments, minor, declines, used_device,
                   latest["created_at"] if latest else None,
                   latest.get("geo") if latest else None, merchant_payments, merchant_declines)


def features_from(event: Mapping, summary: Summary) -> dict[str, float]:
    """FEATURES of one payment from its Summary."""
    t: datetime = event["created_at"]
    usd = usd_major(int(event["amount_minor"]), event["currency"])
    out: dict[str, float] = {"log_amount_usd": math.log1p(usd)}
    n = summary.customer_payments
    mean = sum(usd_major(total, code) for code, total in sorted(summary.customer_minor.items()))
    out["amount_vs_customer_30d"] = math.log1p(usd) - math.log1p(mean / n) if n else 0.0
    out.update({name: float(count) for name, count in summary.counts.items()})
    latest = summary.latest_at
    out["hours_since_customer_prev"] = (
        (t - latest) / timedelta(hours=1) if latest else NO_HISTORY_HOURS)
    here = parse_geo(event.get("geo"))
    there = parse_geo(summary.latest_geo) if latest else None
    out["km_from_customer_prev"] = distance_km(there, here) if here and there else 0.0
    out["new_device"] = float(n > 0 and event.get("device_id") is not None
                              and not summary.customer_used_device)
    out["customer_declines_24h"] = float(summary.customer_declines_24h)
    m = summary.merchant_payments_1h
    out["merchant_payments_1h"] = float(m)
    out["merchant_decline_rate_1h"] = summary.merchant_declines_1h / m if m else 0.0
    out["hour_of_day"] = float(t.hour)
    for name in METHODS:
        out[f"method_{name}"] = float(event.get("method") == name)
    return {name: out[name] for name in FEATURES}


def event_features(event: Mapping, history: Iterable[Mapping]) -> dict[str, float]:
    """FEATURES of one payment from the payments before it (rows in the event layout)."""
    return features_from(event, summarize(event, history))
