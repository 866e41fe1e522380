"""prices.fixed_minor may be NULL: a price recorded without a fixed amount for its currency

commission.md: fee(price) = round_half_up(amount * rate_bps / 10000) + fixed_minor[currency],
"missing fixed for that currency = 0, and a data-quality warning". The API filled in 0 when the
fixed amount was left out (POST /prices, a merchant's pricing, a channel price's per-currency
dict), so the pipeline could not tell a missing fixed amount from an explicit 0 and never
warned. Existing rows keep their 0.

Revision ID: 0014
Revises: 0013
"""
from alembic import op

import warehouse.models

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prices", schema=None) as batch_op:
        batch_op.alter_column("fixed_minor",
                              existing_type=warehouse.models.MinorUnits(precision=38, scale=0),
                              nullable=True)


def downgrade() -> None:
    op.execute("UPDATE prices SET fixed_minor = 0 WHERE fixed_minor IS NULL")
    with op.batch_alter_table("prices", schema=None) as batch_op:
        batch_op.alter_column("fixed_minor",
                              existing_type=warehouse.models.MinorUnits(precision=38, scale=0),
                              nullable=False)
