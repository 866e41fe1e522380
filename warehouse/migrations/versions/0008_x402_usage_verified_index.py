"""x402_usage: a partial index on created_at for calls still `verified`

The background worker writes off calls left `verified` for 5 minutes once a minute
(serving/x402/booking.write_off_abandoned); without an index that was a scan of every paid call
ever made.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_x402_usage_verified_created", "x402_usage", ["created_at"],
                    postgresql_where=sa.text("status = 'verified'"),
                    sqlite_where=sa.text("status = 'verified'"))


def downgrade() -> None:
    op.drop_index("ix_x402_usage_verified_created", table_name="x402_usage")
