-- One statement per merchant, per day (daily cycle), per currency, for the days that have
-- lines (settlement.md). Foundation: settled in the transaction currency, no FX yet.
-- Chargebacks, adjustments and payouts are 0 until their sources exist.
-- opening = previous statement's closing for the same merchant + currency (0 for the first).

with lines as (
    select * from {{ ref('fct_settlement_statement_lines') }}
),

activity as (
    select
        statement_id,
        merchant_id,
        settlement_cycle,
        period_start,
        period_end,
        currency,
        cast(sum(case when line_type = 'payment' then gross_minor else 0 end)
             as {{ money_type() }}) as gross_minor,
        cast(0 - sum(case when line_type = 'refund' then gross_minor else 0 end)
             as {{ money_type() }}) as refunds_minor,
        cast(0 as {{ money_type() }}) as chargebacks_minor,
        cast(sum(fee_minor) as {{ money_type() }}) as fees_minor,
        cast(0 as {{ money_type() }}) as adjustments_minor,
        cast(0 as {{ money_type() }}) as payouts_minor,
        count(case when line_type = 'payment' then 1 end) as payment_count,
        count(case when line_type = 'refund' then 1 end) as refund_count
    from lines
    group by statement_id, merchant_id, settlement_cycle, period_start, period_end, currency
),

with_net as (
    select
        *,
        cast(gross_minor - refunds_minor - chargebacks_minor - fees_minor - adjustments_minor
             as {{ money_type() }}) as net_activity_minor
    from activity
),

balanced as (
    select
        *,
        cast(coalesce(sum(net_activity_minor - payouts_minor) over (
            partition by merchant_id, currency
            order by period_start
            rows between unbounded preceding and 1 preceding
        ), 0) as {{ money_type() }}) as opening_balance_minor
    from with_net
)

select
    statement_id,
    merchant_id,
    settlement_cycle,
    period_start,
    period_end,
    currency,
    opening_balance_minor,
    gross_minor,
    refunds_minor,
    chargebacks_minor,
    fees_minor,
    adjustments_minor,
    net_activity_minor,
    payouts_minor,
    cast(opening_balance_minor + net_activity_minor - payouts_minor
         as {{ money_type() }}) as closing_balance_minor,
    cast(payment_count as bigint) as payment_count,
    cast(refund_count as bigint) as refund_count
from balanced
