"""Live fraud scoring: the payments champion (ml.registry) inside the API's risk check.

`install(settings)` puts a LiveScorer behind serving.risk's score hook at start-up. The scorer
looks at HOME/models/payments/champion.json at most once a second (a stat call); when the
pointer changes - a promotion or a rollback by `clearhouse ml promote|rollback` or the Dagster
asset - it loads the new champion and scores with it from then on, without a restart. With no
champion it scores nothing and the rules decide alone.

Per payment: one SQL statement summarises the payments the features may look at
(ml.payment_features: the customer's last 30 days, the card's, IP's and device's last 24 hours,
all strictly before now) into counts, the customer's amounts per currency and their latest
payment (`summary`; `history` reads the same rows, for tests and the bench; the Postgres fast
path of payment creates reads it ahead on its own connection, `LiveScorer.prefetch_async`); `features_from`
turns the summary into the feature row; a predict call gives the score, and a payment held for
review or blocked gets its reasons from a second call on probe rows (ml.scoring.score_one, as
batch scoring does it), both on the champion compiled to numpy arrays (ml.compiled;
scikit-learn's own predict_proba costs about 2 ms a call in overhead). bench/ml.py measures it
(figures in docs/architecture.md).

scikit-learn loads with the first champion (at start-up when one exists), never on import.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import (
    Float,
    Integer,
    String,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    null,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.orm import Session

from ml.payment_layout import COUNT_NAMES, EVENT_COLUMNS, KEYS, WINDOWS
from serving import risk
from warehouse.models import Payment, UTCDateTime
from warehouse.settings import Settings

if TYPE_CHECKING:  # polars comes with it: imported when a model is first used, not at start-up
    from ml.payment_features import Summary

log = logging.getLogger(__name__)
RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Champion:
    version: str
    model: object
    features: list[str]
    reference: dict[str, float]


class LiveScorer:
    def __init__(self, settings: Settings, recheck_seconds: float = RECHECK_SECONDS):
        self.settings = settings
        self.pointer = settings.home_dir / "models" / "payments" / "champion.json"
        self.recheck_seconds = recheck_seconds
        self.champion: Champion | None = None
        self._seen: tuple | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    def active(self) -> bool:
        self.refresh()
        return self.champion is not None

    def refresh(self) -> None:
        if time.monotonic() - self._checked_at < self.recheck_seconds:
            return
        with self._lock:
            self._checked_at = time.monotonic()
            try:
                stat = self.pointer.stat()
                seen = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
            except FileNotFoundError:
                seen = None
            if seen != self._seen:
                self.champion = self._load() if seen else None
                self._seen = seen

    def _load(self) -> Champion | None:
        from ml.compiled import compiled_or_model
        from ml.registry import Registry, RegistryError

        registry = Registry(self.settings, family="payments")
        try:
            version = registry.champion()
            if version is None:
                return None
            card = registry.card(version)
            champion = Champion(version, compiled_or_model(registry.load(version), card),
                                card["features"], card["reference"])
        except (RegistryError, KeyError, OSError) as exc:
            # Keep serving with the model we have rather than none; the operator sees why.
            log.error("fraud model: cannot load the champion: %s", exc)
            return self.champion
        log.info("fraud model: scoring with %s", version)
        return champion

    @staticmethod
    async def prefetch_async(conn, event: dict) -> Prefetched:
        """`summary` over a psycopg AsyncConnection (the fast path's, in its transaction): the
        same statement compiled once for Postgres, one round trip, no SQLAlchemy on the way."""
        from psycopg.rows import dict_row

        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(*_summary_query(event))
        return Prefetched(_prefetch_key(event), _summarize(await cursor.fetchall()))

    @staticmethod
    def prefetch(conn, event: dict) -> Prefetched:
        """`prefetch_async` over a SQLAlchemy Connection to Postgres (psycopg; the fast path in
        the thread pool)."""
        return Prefetched(_prefetch_key(event),
                          _summary_psycopg(conn.connection.driver_connection, event))

    def __call__(self, session: Session, checked: risk.RiskInput, now: datetime,
                 prefetched: Prefetched | None = None) -> tuple[int, list[str]] | None:
        """Score a payment. `prefetched`: its summary, read ahead by the Postgres fast path
        (`prefetch_async`); used only when it was read for this very payment's keys and time."""
        self.refresh()
        champion = self.champion
        if champion is None:
            return None
        import numpy as np

        from ml.payment_features import features_from
        from ml.scoring import score_one

        event = {"payment_id": checked.payment_id or "", "created_at": now,
                 "merchant_id": checked.merchant.id, "method": checked.method, "amount_minor": checked.amount_minor,
                 "currency": checked.currency, "customer_id": checked.customer_id,
                 "card_fingerprint": checked.card_fingerprint,
                 "customer_ip": checked.customer_ip, "device_id": checked.device_id,
                 "geo": checked.geo}
        if prefetched is not None and prefetched.key == _prefetch_key(event):
            found = prefetched.summary
        else:
            found = summary(session, event)
        values = features_from(event, found)
        row = np.array([[values[name] for name in champion.features]])
        score, why = score_one(champion.model, row, champion.features, champion.reference,
                               reasons_from=self.settings.ml_review_score)
        return score, [*why, f"ml_model:{champion.version}"]


def history(session: Session, event: dict) -> list[dict]:
    """The payments the features of `event` may read, in the event layout, in one query (what
    `summary` aggregates: tests compare ml.payment_features.summarize over these rows with it)."""
    now = event["created_at"]
    rows = session.connection().execute(_HISTORY, {  # Core: no ORM row loading
        **{name: event[column] for name, column in KEYS.items()},
        "merchant": event.get("merchant_id"), "now": now, "hour_ago": now - timedelta(hours=1),
        "day_ago": now - timedelta(hours=24), "month_ago": now - timedelta(days=30)}).all()
    return [dict(zip(EVENT_COLUMNS, row, strict=True)) for row in rows]


def select_events():
    """SELECT of payments in the event layout's columns (EVENT_COLUMNS), geo out of the
    customer JSON in SQL."""
    return select(Payment.id, Payment.created_at, Payment.merchant_id,
                  Payment.payment_method_type, Payment.amount_minor, Payment.currency,
                  Payment.customer_id, Payment.card_fingerprint, Payment.customer_ip,
                  Payment.device_id, Payment.customer["geo"].as_string(), Payment.status,
                  Payment.failed_at)




# One constant statement (compiled once, cached): a key that is None matches nothing, since
# `column = NULL` is never true in SQL.
_HISTORY = (select_events()
            .where(Payment.created_at >= bindparam("month_ago", type_=UTCDateTime),
                   Payment.created_at < bindparam("now", type_=UTCDateTime),
                   or_(Payment.customer_id == bindparam("customer"),
                       (Payment.created_at >= bindparam("day_ago", type_=UTCDateTime))
                       & or_(Payment.card_fingerprint == bindparam("card"),
                             Payment.customer_ip == bindparam("ip"),
                             Payment.device_id == bindparam("device")),
                       (Payment.created_at >= bindparam("hour_ago", type_=UTCDateTime))
                       & (Payment.merchant_id == bindparam("merchant"))))
            .order_by(Payment.created_at.desc()))


def as_event(row) -> dict:
    """A row of `select_events()` in the event layout."""
    return dict(zip(EVENT_COLUMNS, row, strict=True))


def summary(session: Session, event: dict):
    """ml.payment_features.Summary of `event` from SQL aggregates over the same rows `history`
    reads, in one statement: a first row with the merchant's last hour and the customer's latest
    payment, then the key windows grouped per currency (so amounts are summed per currency as
    the features define). The aggregates leave the rows in the database, so a customer with a
    long history costs no more than a new one. On Postgres (psycopg) the statement, compiled
    once, goes straight to the driver's cursor in the session's transaction: SQLAlchemy's
    execution and row processing cost more client CPU than the statement itself."""
    connection = session.connection()
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        return _summary_psycopg(connection.connection.driver_connection, event)
    rows = connection.execute(_SUMMARY, _summary_params(event))
    return _summarize(row._mapping for row in rows)


def _summary_psycopg(conn, event: dict):
    from psycopg.rows import dict_row

    cursor = conn.cursor(row_factory=dict_row)
    cursor.execute(*_summary_query(event))
    return _summarize(cursor.fetchall())


@dataclass(frozen=True)
class Prefetched:
    """A payment's summary read ahead of the risk check (the Postgres fast path's connection
    reads it after its claim), with what it was read for (`_prefetch_key`)."""

    key: tuple
    summary: Summary


def _prefetch_key(event: dict) -> tuple:
    """What the summary depends on; the payment's own id is left out (it is not in the
    database yet when the risk check runs)."""
    return tuple(v for k, v in _summary_params(event).items() if k != "payment_id")


def _summary_query(event: dict) -> tuple[str, dict]:
    """The summary statement for psycopg: its Postgres SQL and parameters for `event`."""
    sql, defaults = _summary_pg()
    return sql, {**defaults, **_summary_params(event)}


@functools.cache
def _summary_pg() -> tuple[str, dict]:
    """The summary statement as Postgres driver SQL (%(name)s parameters), and the values of the
    parameters SQLAlchemy named itself (the JSON key 'geo')."""
    from sqlalchemy.dialects import postgresql

    compiled = _SUMMARY.compile(dialect=postgresql.dialect())
    defaults = {name: value for name, value in compiled.params.items() if value is not None}
    return compiled.string, defaults


def _summary_params(event: dict) -> dict:
    now = event["created_at"]
    return {**{name: event[column] for name, column in KEYS.items()},
            "merchant": event.get("merchant_id"), "payment_id": event.get("payment_id") or "",
            "now": now, "hour_ago": now - timedelta(hours=1),
            "day_ago": now - timedelta(hours=24), "month_ago": now - timedelta(days=30)}


def _summarize(rows):
    """The Summary from the summary statement's rows (mappings of its columns)."""
    from ml.payment_features import Summary

    counts = dict.fromkeys(COUNT_NAMES, 0)
    payments, declines, used_device, minor = 0, 0, False, {}
    merchant, latest = (0, 0), (None, None)
    for row in rows:
        if row["currency"] is None:  # the first row: the merchant's hour and the latest payment
            merchant = (int(row["merchant_payments"]), int(row["merchant_declines"]))
            latest = (row["latest_at"], row["latest_geo"])
            continue
        for name in COUNT_NAMES:
            counts[name] += row[name]
        payments += row["customer_payments"]
        declines += row["declines"]
        used_device = used_device or bool(row["used_device"])
        if row["customer_payments"]:
            minor[row["currency"]] = float(row["customer_minor"])
    return Summary(counts, payments, minor, declines, used_device, *latest, *merchant)


# Constants are written into the SQL, not bound: each bound value costs the driver time on every
# call (64 parameters became 13).
_ZERO, _ONE = literal_column("0", Integer), literal_column("1", Integer)
_FAILED = literal_column("'failed'", String)
# Failed by the payment's time: a payment still pending then, which failed later, was no decline
# (the live check reads before it fails; this keeps a summary computed afterwards the same).
_FAILED_BY_NOW = ((Payment.status == _FAILED)
                  & (func.coalesce(Payment.failed_at, Payment.created_at)
                     < bindparam("now", type_=UTCDateTime)))


def _flag(condition):
    return case((condition, _ONE), else_=_ZERO)


_CUSTOMER = Payment.customer_id == bindparam("customer")
_MERCHANT = Payment.merchant_id == bindparam("merchant")
_SINCE = {"1h": Payment.created_at >= bindparam("hour_ago", type_=UTCDateTime),
          "24h": Payment.created_at >= bindparam("day_ago", type_=UTCDateTime)}
_MATCH = {"customer": _CUSTOMER, "card": Payment.card_fingerprint == bindparam("card"),
          "ip": Payment.customer_ip == bindparam("ip"),
          "device": Payment.device_id == bindparam("device")}
_IN_MONTH = (Payment.created_at >= bindparam("month_ago", type_=UTCDateTime),
             Payment.created_at < bindparam("now", type_=UTCDateTime),
             Payment.id != bindparam("payment_id"))


def _latest(column):
    """The customer's latest payment in the window (ties: the larger id), as a scalar
    subquery: evaluated once per statement, so the summary stays one round trip."""
    return (select(column).where(*_IN_MONTH, _CUSTOMER)
            .order_by(Payment.created_at.desc(), Payment.id.desc()).limit(1).scalar_subquery())


def _merchant_hour(value):
    """The merchant's payments in the last hour (`value` = 1) or its declines among them."""
    return (select(func.coalesce(func.sum(value), _ZERO))
            .where(_MERCHANT, _SINCE["1h"], *_IN_MONTH[1:])  # the hour is inside the month
            .scalar_subquery())


_KEY_COLUMNS = ("currency", *COUNT_NAMES, "customer_payments", "customer_minor", "declines",
                "used_device")
# Two branches, no join: first always exactly one row (no currency) with the merchant's hour and
# the customer's latest payment as scalar subqueries, evaluated once; then the key windows
# grouped per currency (none when no window holds a payment).
_SUMMARY = union_all(
    select(type_coerce(null(), String).label("currency"),
           *[_ZERO.label(name) for name in _KEY_COLUMNS[1:-3]],
           type_coerce(null(), Float).label("customer_minor"),
           _ZERO.label("declines"), _ZERO.label("used_device"),
           _merchant_hour(_ONE).label("merchant_payments"),
           _merchant_hour(_flag(_FAILED_BY_NOW)).label("merchant_declines"),
           _latest(Payment.created_at).label("latest_at"),
           _latest(Payment.customer["geo"].as_string()).label("latest_geo")),
    select(Payment.currency,
           *[func.coalesce(func.sum(_flag(_MATCH[key] & _SINCE[window])), _ZERO)
             .label(f"{key}_count_{window}") for key in KEYS for window in WINDOWS],
           func.coalesce(func.sum(_flag(_CUSTOMER)), _ZERO).label("customer_payments"),
           # a float sum: a risk signal, exact below 2^53 minor units
           func.sum(case((_CUSTOMER, cast(Payment.amount_minor, Float)))).label("customer_minor"),
           func.coalesce(func.sum(_flag(_CUSTOMER & _SINCE["24h"]
                                        & _FAILED_BY_NOW)), _ZERO).label("declines"),
           func.coalesce(func.max(_flag(_CUSTOMER & (Payment.device_id == bindparam("device")))),
                         _ZERO).label("used_device"),
           null(), null(), null(), null())
    .where(*_IN_MONTH, or_(_CUSTOMER, _SINCE["24h"] & or_(_MATCH["card"], _MATCH["ip"],
                                                          _MATCH["device"])))
    .group_by(Payment.currency))


def install(settings: Settings) -> LiveScorer | None:
    """Install the live scorer (loading the champion now if there is one); None when
    CLEARHOUSE_ML_LIVE_SCORING is off."""
    if not settings.ml_live_scoring:
        risk.set_score_hook(None)
        return None
    scorer = LiveScorer(settings)
    scorer.refresh()
    risk.set_score_hook(scorer, settings.ml_review_score, settings.ml_block_score)
    return scorer
