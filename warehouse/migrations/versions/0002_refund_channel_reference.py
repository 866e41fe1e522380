"""refunds.channel_reference: the channel's id of a refund, for reconciliation

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("refunds") as batch:
        batch.add_column(sa.Column("channel_reference", sa.String(length=100), nullable=True))
        batch.create_index("ix_refunds_channel_reference", ["channel_reference"])


def downgrade() -> None:
    with op.batch_alter_table("refunds") as batch:
        batch.drop_index("ix_refunds_channel_reference")
        batch.drop_column("channel_reference")
