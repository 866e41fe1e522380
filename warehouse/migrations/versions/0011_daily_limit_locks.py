"""payment_limit_volumes(): a payment's daily limits read under a lock (Postgres)

The KYC daily limit (serving/risk.py) and a channel's daily limit (serving/routing.py) compare
today's volume with the limit, then the payment is written. Under READ COMMITTED two payments of
one merchant read the same volume side by side and both passed: 8 concurrent payments of 400
USD took 2,800-3,200 USD against a 1,000 USD limit. SQLite runs one writer at a time and never
had the race.

This function takes a transaction-level advisory lock per limit the payment is checked against -
the merchant's UTC day first, then each channel's (channel, currency, day) with a daily limit in
sorted order, so two payments never wait for each other in a cycle - and only then reads the
volumes. A VOLATILE function's queries each take a fresh snapshot, so the volumes include every
payment committed by whoever held the lock before; the lock is held to the end of the payment's
transaction, so the next payment of that merchant (or on that channel) reads this one too.
Payments of different merchants on unlimited channels never wait for each other.

Returns the merchant's volume per currency and the channels' captured volume in `p_currency`,
as 'key=minor,...' text (NULL when none), the form the payment fast path already reads. A NULL
merchant takes the channels' locks only (routing on the general path, which took the merchant's
in the risk check before).

Revision ID: 0011
Revises: 0010
"""
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UP = """
CREATE FUNCTION payment_limit_volumes(p_merchant_id varchar, p_day date, p_currency varchar,
                                      p_channels text[], p_day_start timestamptz,
                                      p_day_end timestamptz)
RETURNS TABLE (used_today text, captured_today text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    channel text;
BEGIN
    IF p_merchant_id IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(
            hashtextextended('merchant_day:' || p_merchant_id || ':' || p_day::text, 0));
    END IF;
    FOR channel IN SELECT DISTINCT c FROM unnest(p_channels) AS c ORDER BY c LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(
            'channel_day:' || channel || ':' || p_currency || ':' || p_day::text, 0));
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
             GROUP BY channel_id) c);
END $$;
"""

DOWN = """
DROP FUNCTION payment_limit_volumes(varchar, date, varchar, text[], timestamptz, timestamptz);
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(UP)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DOWN)
