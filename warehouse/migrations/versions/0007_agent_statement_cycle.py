"""agents.statement_cycle: each agent's commission statement cycle (daily, weekly, monthly)

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("statement_cycle", sa.String(length=10), nullable=False,
                                      server_default="monthly"))
        batch_op.create_check_constraint(
            op.f("ck_agents_cycle"), "statement_cycle in ('daily','weekly','monthly')")


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_agents_cycle"), type_="check")
        batch_op.drop_column("statement_cycle")
