"""Live fraud scoring: the payments champion (ml.registry) inside the API's risk check.

`install(settings)` puts a LiveScorer behind serving.risk's score hook at start-up. The scorer
looks at HOME/models/payments/champion.json at most once a second (a stat call); when the
pointer changes - a promotion or a rollback by `clearhouse ml promote|rollback` or the Dagster
asset - it loads the new champion and scores with it from then on, without a restart. With no
champion it scores nothing and the rules decide alone.

Per payment: one query reads the payments that the features may look at (ml.payment_features:
the customer's last 30 days, the card's, IP's and device's last 24 hours, all strictly before
now), `event_features` turns them into the feature row, and one predict call on 1 + n rows gives the
score and the reasons (ml.scoring.score_one). bench/ml.py measures it (figures in
docs/architecture.md); scikit-learn's per-call overhead dominates. A key with more than HISTORY_LIMIT payments in its
window is cut to the newest ones (velocity rules have rejected it long before).

scikit-learn loads with the first champion (at start-up when one exists), never on import.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from serving import risk
from warehouse.models import Payment
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
            champion = Champion(version, registry.load(version), card["features"],
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
        score, why = score_one(champion.model, row, champion.features, champion.reference)
        return score, [*why, f"ml_model:{champion.version}"]


def history(session: Session, event: dict) -> list[dict]:
    """The payments the features of `event` may read, in the event layout, in one query."""
    now = event["created_at"]
    day_ago, month_ago = now - timedelta(hours=24), now - timedelta(days=30)
    recent = [getattr(Payment, column) == event[column]
              for column in ("card_fingerprint", "customer_ip", "device_id") if event[column]]
    keyed = []
    if event["customer_id"]:
        keyed.append(Payment.customer_id == event["customer_id"])
    if recent:
        keyed.append((Payment.created_at >= day_ago) & or_(*recent))
    if not keyed:
        return []
    rows = session.execute(
        select_events()
        .where(Payment.created_at >= month_ago, Payment.created_at < now, or_(*keyed))
        .order_by(Payment.created_at.desc()).limit(HISTORY_LIMIT)).all()
    return [as_event(r) for r in rows]


def select_events():
    """SELECT of payments in the columns `as_event` turns into the event layout."""
    return select(Payment.id, Payment.created_at, Payment.merchant_id,
                  Payment.payment_method_type, Payment.amount_minor, Payment.currency,
                  Payment.customer_id, Payment.card_fingerprint, Payment.customer_ip,
                  Payment.device_id, Payment.customer, Payment.status)


def as_event(r) -> dict:
    return {"payment_id": r.id, "created_at": r.created_at, "merchant_id": r.merchant_id,
            "method": r.payment_method_type, "amount_minor": r.amount_minor,
            "currency": r.currency, "customer_id": r.customer_id,
            "card_fingerprint": r.card_fingerprint, "customer_ip": r.customer_ip,
            "device_id": r.device_id, "geo": (r.customer or {}).get("geo"), "status": r.status}


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
