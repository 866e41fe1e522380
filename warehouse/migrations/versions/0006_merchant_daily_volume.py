"""merchant_daily_volume: each merchant's accepted volume per UTC day and currency (Postgres)

The KYC daily limit (serving/risk.py) needs a merchant's accepted volume today before each
payment. Summing today's payments grew with every payment the merchant took (a 10,000-payment
day read 10,000 rows per payment). On Postgres a trigger on `payments` keeps the running sum
instead: a payment counts while its status is one of serving.risk.CAPTURING, on the UTC day of
its created_at. SQLite (the embedded development default, one writer at a time) keeps summing.
Each total is spread over 8 rows (shard = hash of the payment id), so a busy merchant's
concurrent payments do not queue for one row lock until they commit; readers add the shards up.

Revision ID: 0006
Revises: 0005
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Must equal serving.risk.CAPTURING (tests/serving/api/test_daily_volume.py checks both agree).
CAPTURING = "('success', 'partially_refunded', 'refunded', 'pending_callback', 'refunding')"

UP = f"""
CREATE TABLE merchant_daily_volume (
    merchant_id varchar(40) NOT NULL,
    day date NOT NULL,
    currency varchar(8) NOT NULL,
    shard smallint NOT NULL,
    amount_minor numeric(38, 0) NOT NULL,
    CONSTRAINT pk_merchant_daily_volume PRIMARY KEY (merchant_id, day, currency, shard)
);

CREATE FUNCTION merchant_daily_volume_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_counts boolean := TG_OP <> 'INSERT' AND OLD.status IN {CAPTURING};
    new_counts boolean := TG_OP <> 'DELETE' AND NEW.status IN {CAPTURING};
BEGIN
    IF old_counts AND new_counts AND OLD.id = NEW.id AND OLD.merchant_id = NEW.merchant_id
       AND OLD.currency = NEW.currency AND OLD.amount_minor = NEW.amount_minor
       AND OLD.created_at = NEW.created_at THEN
        RETURN NULL;  -- e.g. success -> refunding -> refunded: still counted, nothing to lock
    END IF;
    IF old_counts THEN
        UPDATE merchant_daily_volume SET amount_minor = amount_minor - OLD.amount_minor
         WHERE merchant_id = OLD.merchant_id AND currency = OLD.currency
           AND day = (OLD.created_at AT TIME ZONE 'UTC')::date AND shard = hashtext(OLD.id) & 7;
    END IF;
    IF new_counts THEN
        INSERT INTO merchant_daily_volume AS v (merchant_id, day, currency, shard, amount_minor)
        VALUES (NEW.merchant_id, (NEW.created_at AT TIME ZONE 'UTC')::date, NEW.currency,
                hashtext(NEW.id) & 7, NEW.amount_minor)
        ON CONFLICT (merchant_id, day, currency, shard)
        DO UPDATE SET amount_minor = v.amount_minor + EXCLUDED.amount_minor;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER payments_daily_volume
    AFTER INSERT OR DELETE OR UPDATE OF status, amount_minor, currency, merchant_id, created_at
    ON payments FOR EACH ROW EXECUTE FUNCTION merchant_daily_volume_count();

INSERT INTO merchant_daily_volume (merchant_id, day, currency, shard, amount_minor)
SELECT merchant_id, (created_at AT TIME ZONE 'UTC')::date, currency, hashtext(id) & 7,
       sum(amount_minor)
  FROM payments WHERE status IN {CAPTURING}
 GROUP BY 1, 2, 3, 4;
"""

DOWN = """
DROP TRIGGER payments_daily_volume ON payments;
DROP FUNCTION merchant_daily_volume_count();
DROP TABLE merchant_daily_volume;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(UP)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DOWN)
