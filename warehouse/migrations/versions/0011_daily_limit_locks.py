"""payment_risk_facts(): a payment's limits and velocity read under locks (Postgres)

The risk check compares what a payment's merchant, customer, card, device and IP did before it
with its limits - the KYC daily limit and the velocity rules (serving/risk.py), a channel's
daily limit (serving/routing.py) - then the payment is written. Under READ COMMITTED two
payments read the same history side by side and both passed: 8 concurrent payments of 400 USD
took 2,800-3,200 USD against a 1,000 USD daily limit, and 40 card-testing attempts on one card
at once were none of them refused (the card's velocity rule refuses the 31st in an hour). SQLite
runs one writer at a time and never had the race.

This function takes a transaction-level advisory lock per key the payment is checked against,
always in one order - the merchant's UTC day, then the customer, card, device and IP (each when
given), then each channel with a daily limit as (channel, currency, day), sorted - so two
payments never wait for each other in a cycle (the general path takes the same locks in the
same order: the first five in its risk check, the channels' in routing). Only then does it read.
A VOLATILE function's queries each take a fresh snapshot, so they see every payment committed by
whoever held a lock before; the locks are held to the end of the payment's transaction, so the
next payment on the same key sees this one. Payments sharing no key never wait for each other.

Returns what the rules read: the merchant's accepted volume today per currency and the channels'
captured volume today in `p_currency`, as 'key=minor,...' text (NULL when none); the payments in
the last hour per customer, card, device and IP (NULL for a key not given); and the customer's
latest payment in the last hour (its `customer` JSON as text), for the geo rule.

Revision ID: 0011
Revises: 0010
"""
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UP = """
CREATE FUNCTION payment_risk_facts(
    p_merchant_id varchar, p_day date, p_currency varchar, p_channels text[],
    p_day_start timestamptz, p_day_end timestamptz, p_customer_id text, p_card text,
    p_device text, p_ip text, p_hour_ago timestamptz, p_now timestamptz)
RETURNS TABLE (used_today text, captured_today text, v_customer bigint, v_card bigint,
               v_device bigint, v_ip bigint, last_customer text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    lock_key text;
BEGIN
    FOR lock_key IN SELECT k FROM unnest(ARRAY[
            CASE WHEN p_merchant_id IS NOT NULL
                 THEN 'merchant_day:' || p_merchant_id || ':' || p_day::text END,
            'customer:' || p_customer_id, 'card:' || p_card, 'device:' || p_device,
            'ip:' || p_ip]) WITH ORDINALITY AS t(k, n)
            WHERE k IS NOT NULL ORDER BY n LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(lock_key, 0));
    END LOOP;
    FOR lock_key IN SELECT DISTINCT c FROM unnest(p_channels) AS c ORDER BY c LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(
            'channel_day:' || lock_key || ':' || p_currency || ':' || p_day::text, 0));
    END LOOP;
    RETURN QUERY SELECT
        (SELECT string_agg(v.currency || '=' || v.total::text, ',') FROM (
            SELECT currency, sum(amount_minor) AS total FROM merchant_daily_volume
             WHERE merchant_id = p_merchant_id AND day = p_day
             GROUP BY currency HAVING sum(amount_minor) <> 0) v),
        (SELECT string_agg(c.channel_id || '=' || c.total::text, ',') FROM (
            SELECT channel_id, sum(amount_minor) AS total FROM payments
             WHERE channel_id = ANY(p_channels) AND currency = p_currency
               AND captured_at >= p_day_start AND captured_at < p_day_end
             GROUP BY channel_id) c),
        (SELECT count(*) FROM payments WHERE customer_id = p_customer_id
            AND created_at >= p_hour_ago),
        (SELECT count(*) FROM payments WHERE card_fingerprint = p_card
            AND created_at >= p_hour_ago),
        (SELECT count(*) FROM payments WHERE device_id = p_device
            AND created_at >= p_hour_ago),
        (SELECT count(*) FROM payments WHERE customer_ip = p_ip
            AND created_at >= p_hour_ago),
        (SELECT customer::text FROM payments WHERE customer_id = p_customer_id
            AND created_at >= p_hour_ago AND created_at <= p_now
          ORDER BY created_at DESC LIMIT 1);
END $$;
"""

DOWN = """
DROP FUNCTION payment_risk_facts(varchar, date, varchar, text[], timestamptz, timestamptz, text,
                                 text, text, text, timestamptz, timestamptz);
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(UP)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DOWN)
