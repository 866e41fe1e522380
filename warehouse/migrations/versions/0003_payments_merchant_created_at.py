"""payments (merchant_id, created_at) index for the KYC daily-volume rule

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_payments_merchant_created_at", "payments", ["merchant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_payments_merchant_created_at", table_name="payments")
