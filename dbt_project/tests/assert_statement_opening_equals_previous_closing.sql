-- settlement.md: closing_balance = next period's opening_balance. For each merchant and
-- currency, a statement's opening equals the previous statement's closing (0 for the first),
-- statements in order of their last day (fct_settlement_statements chains them so).

with s as (
    select
        statement_id,
        opening_balance_minor,
        coalesce(lag(closing_balance_minor) over (
            partition by merchant_id, currency order by period_end, period_start
        ), 0) as previous_closing_minor
    from {{ ref('fct_settlement_statements') }}
)

select *
from s
where opening_balance_minor <> previous_closing_minor
