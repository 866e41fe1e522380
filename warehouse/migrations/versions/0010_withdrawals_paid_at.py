"""withdrawals.paid_at: when a payout was marked paid (the statement's payout date); decided_at
stays the approval or rejection

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

import warehouse.models

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("withdrawals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paid_at", warehouse.models.UTCDateTime(timezone=True),
                                      nullable=True))
    # Payouts marked paid before this column existed: their approval time is all we know.
    op.execute("UPDATE withdrawals SET paid_at = decided_at WHERE status = 'paid'")


def downgrade() -> None:
    with op.batch_alter_table("withdrawals", schema=None) as batch_op:
        batch_op.drop_column("paid_at")
