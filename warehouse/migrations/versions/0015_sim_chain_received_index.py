"""sim_chain_logs: the recipient index covers the balance sum (Postgres)

A sender's balance is what it received in live Transfer logs minus what it sent
(serving/x402/chain.py); x402's claim and settle compute it in every paid call. With the plain
(network, asset, to_address) index, a database whose statistics were older than its logs (a
new one, or one between autovacuum's passes) planned the sum through the authorization index
and scanned every log of the asset: each paid call grew slower as the chain grew (bench/x402.py:
Postgres CPU per paid call 2.6 ms against 1.4 ms once analysed). The index now holds only live
logs and carries `value`, so it answers the sum alone and wins on any statistics. SQLite keeps
the plain index (it has no INCLUDE).

Revision ID: 0015
Revises: 0014
"""
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_sim_chain_logs_recipient", table_name="sim_chain_logs")
    op.create_index("ix_sim_chain_logs_recipient", "sim_chain_logs",
                    ["network", "asset", "to_address"], postgresql_include=["value"],
                    postgresql_where="NOT removed")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_sim_chain_logs_recipient", table_name="sim_chain_logs")
    op.create_index("ix_sim_chain_logs_recipient", "sim_chain_logs",
                    ["network", "asset", "to_address"])
