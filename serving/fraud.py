"""Live fraud scoring: the payments champion (ml.registry) inside the API's risk check.

`install(settings)` puts a LiveScorer behind serving.risk's score hook at start-up. The scorer
looks at HOME/models/payments/champion.json at most once a second (a stat call); when the
pointer changes - a promotion or a rollback by `clearhouse ml promote|rollback` or the Dagster
asset - it loads the new champion and scores with it from then on, without a restart. With no
champion it scores nothing and the rules decide alone.

Per payment: one query reads the payments that the features may look at (ml.payment_features:
the customer's last 30 days, the card's, IP's and device's last 24 hours, all strictly before
now), `event_features` turns them into the feature row, and a predict call gives the score; a
payment held for review or blocked gets its reasons from a second call on probe rows
(ml.scoring.score_one, as batch scoring does it), both on the champion compiled to numpy arrays
(ml.compiled; scikit-learn's own predict_proba costs about 2 ms a call in overhead). bench/ml.py
measures it (figures in docs/architecture.md). A key with more than HISTORY_LIMIT payments in
its window is cut to the newest ones (velocity rules have rejected it long before).

scikit-learn loads with the first champion (at start-up when one exists), never on import.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from serving import risk
from warehouse.models import Payment, UTCDateTime
from warehouse.settings import Settings

log = logging.getLogger(__name__)
RECHECK_SECONDS = 1.0
HISTORY_LIMIT = 5000


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
        from ml.registry import Registry, RegistryError

        registry = Registry(self.settings, family="payments")
        try:
            version = registry.champion()
            if version is None:
                return None
            card = registry.card(version)
            champion = Champion(version, _fast(registry.load(version), card), card["features"],
                                card["reference"])
        except (RegistryError, KeyError, OSError) as exc:
            # Keep serving with the model we have rather than none; the operator sees why.
            log.error("fraud model: cannot load the champion: %s", exc)
            return self.champion
        log.info("fraud model: scoring with %s", version)
        return champion

    def __call__(self, session: Session, checked: risk.RiskInput,
                 now: datetime) -> tuple[int, list[str]] | None:
        self.refresh()
        champion = self.champion
        if champion is None:
            return None
        import numpy as np

        from ml.payment_features import event_features
        from ml.scoring import score_one

        event = {"payment_id": checked.payment_id or "", "created_at": now,
                 "method": checked.method, "amount_minor": checked.amount_minor,
                 "currency": checked.currency, "customer_id": checked.customer_id,
                 "card_fingerprint": checked.card_fingerprint,
                 "customer_ip": checked.customer_ip, "device_id": checked.device_id,
                 "geo": checked.geo}
        values = event_features(event, history(session, event))
        row = np.array([[values[name] for name in champion.features]])
        score, why = score_one(champion.model, row, champion.features, champion.reference,
                               reasons_from=self.settings.ml_review_score)
        return score, [*why, f"ml_model:{champion.version}"]


def _fast(model, card: dict):
    """The champion compiled to arrays (ml.compiled: the same probabilities, without
    scikit-learn's per-call overhead), or the model itself when it does not compile."""
    import numpy as np

    from ml.compiled import CompileError, compile_model

    reference = np.array([[card["reference"][name] for name in card["features"]]])
    probe = np.vstack([reference, np.zeros_like(reference), reference * 10 + 1])
    try:
        return compile_model(model, probe)
    except CompileError as exc:
        log.warning("fraud model %s: scoring with scikit-learn (%s)", card.get("version"), exc)
        return model


def history(session: Session, event: dict) -> list[dict]:
    """The payments the features of `event` may read, in the event layout, in one query."""
    keys = {name: event[column] for name, column in _KEYS.items()}
    if not any(keys.values()):
        return []
    now = event["created_at"]
    rows = session.connection().execute(_HISTORY, {  # Core: no ORM row loading
        **keys, "now": now, "day_ago": now - timedelta(hours=24),
        "month_ago": now - timedelta(days=30), "limit": HISTORY_LIMIT}).all()
    return [dict(zip(EVENT_FIELDS, row, strict=True)) for row in rows]


def select_events():
    """SELECT of payments in the event layout's columns (EVENT_FIELDS), geo out of the
    customer JSON in SQL."""
    return select(Payment.id, Payment.created_at, Payment.merchant_id,
                  Payment.payment_method_type, Payment.amount_minor, Payment.currency,
                  Payment.customer_id, Payment.card_fingerprint, Payment.customer_ip,
                  Payment.device_id, Payment.customer["geo"].as_string(), Payment.status)


EVENT_FIELDS = ("payment_id", "created_at", "merchant_id", "method", "amount_minor", "currency",
                "customer_id", "card_fingerprint", "customer_ip", "device_id", "geo", "status")
_KEYS = {"customer": "customer_id", "card": "card_fingerprint", "ip": "customer_ip",
         "device": "device_id"}

# One constant statement (compiled once, cached): a key that is None matches nothing, since
# `column = NULL` is never true in SQL.
_HISTORY = (select_events()
            .where(Payment.created_at >= bindparam("month_ago", type_=UTCDateTime),
                   Payment.created_at < bindparam("now", type_=UTCDateTime),
                   or_(Payment.customer_id == bindparam("customer"),
                       (Payment.created_at >= bindparam("day_ago", type_=UTCDateTime))
                       & or_(Payment.card_fingerprint == bindparam("card"),
                             Payment.customer_ip == bindparam("ip"),
                             Payment.device_id == bindparam("device"))))
            .order_by(Payment.created_at.desc()).limit(bindparam("limit")))


def as_event(row) -> dict:
    """A row of `select_events()` in the event layout."""
    return dict(zip(EVENT_FIELDS, row, strict=True))


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
