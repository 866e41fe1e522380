"""merchant_daily_volume on SQLite too: one schema on both engines, models included

Migration 0006 created the table on Postgres only (with the trigger that keeps it), so the
models and the migrations disagreed there (`alembic check` / autogenerate proposed dropping it).
The table is now a model (warehouse.models.MerchantDailyVolume) and exists on SQLite as well,
empty: SQLite's risk check sums the day's payments instead.

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op

import warehouse.models

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        return  # created with its trigger by 0006
    op.create_table(
        "merchant_daily_volume",
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("shard", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("amount_minor", warehouse.models.MinorUnits(precision=38, scale=0),
                  nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "day", "currency", "shard",
                                name=op.f("pk_merchant_daily_volume")),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.drop_table("merchant_daily_volume")
