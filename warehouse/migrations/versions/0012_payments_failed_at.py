"""payments.failed_at: when a payment failed (business time, as its payment_events row says), so
the fraud features of later payments count a decline only from then on

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

import warehouse.models

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failed_at", warehouse.models.UTCDateTime(timezone=True),
                                      nullable=True))
    # Payments that failed before this column existed: their transition's time, from the trail.
    op.execute("UPDATE payments SET failed_at = (SELECT max(e.at) FROM payment_events e "
               "WHERE e.payment_id = payments.id AND e.to_status = 'failed') "
               "WHERE status = 'failed'")


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("failed_at")
