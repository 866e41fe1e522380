"""The two kinds of day the Dagster definitions partition by (UTC, from 2020-01-01)."""

import dagster as dg

# The day the books are taken as of (dbt vars settlement_as_of and recon_as_of): settlement
# periods ending before it are closed, reconciliation breaks are aged to it. Today's key exists
# (end_offset=1): the hourly runs refresh it, its first run after midnight is the close of the
# day before, and a backfill over past days replays their closes in order.
BOOK_DAYS = dg.DailyPartitionsDefinition(start_date="2020-01-01", timezone="UTC", end_offset=1)

# A finished calendar day whose statement files are written (merchant_statements).
STATEMENT_DAYS = dg.DailyPartitionsDefinition(start_date="2020-01-01", timezone="UTC")
