"""pending_topups: top-ups whose payment succeeds later (a channel callback, or a review)

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

import warehouse.models

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_topups",
        sa.Column("payment_id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=100), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("principal_minor", warehouse.models.MinorUnits(precision=38, scale=0),
                  nullable=False),
        sa.Column("bonus_minor", warehouse.models.MinorUnits(precision=38, scale=0),
                  nullable=False),
        sa.Column("created_at", warehouse.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=True),
        sa.Column("resolved_at", warehouse.models.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("outcome is null or outcome in ('credited','void')",
                           name=op.f("ck_pending_topups_outcome")),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"],
                                name=op.f("fk_pending_topups_payment_id_payments")),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_pending_topups")),
    )


def downgrade() -> None:
    op.drop_table("pending_topups")
