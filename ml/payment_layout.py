"""The payment event layout and the feature windows' keys, without polars: the API's live
scorer (serving/fraud.py) reads them at import, ml.payment_features builds on them."""

from __future__ import annotations

from datetime import timedelta

# Column order of the payment event layout (types: ml.payment_features.EVENT_SCHEMA).
# failed_at: when a failed payment failed (NULL otherwise; a failed payment without it failed
# when it was created): a payment pending at t that fails later is no decline at t.
EVENT_COLUMNS = ("payment_id", "created_at", "merchant_id", "method", "amount_minor", "currency",
                 "customer_id", "card_fingerprint", "customer_ip", "device_id", "geo", "status",
                 "failed_at")
# Keys whose earlier payments are counted, and the count windows.
KEYS = {"customer": "customer_id", "card": "card_fingerprint", "ip": "customer_ip",
        "device": "device_id"}
WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24)}
COUNT_NAMES = tuple(f"{key}_count_{window}" for key in KEYS for window in WINDOWS)
