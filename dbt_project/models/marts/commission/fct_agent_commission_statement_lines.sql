-- settlement.md: an agent's commission statement per cycle sums its commission rows by model and
-- level, with the reversals shown separately. One row per statement, model and level. The
-- cycle is the dbt var agent_statement_cycle ('daily', 'weekly' or 'monthly'; default monthly,
-- as agents' residuals are usually paid), by the UTC day of the payment's capture or the
-- refund's success.
{% set cycle = "'" ~ var('agent_statement_cycle', 'monthly') ~ "'" %}

with commissions as (
    select
        *,
        {{ cycle_period_start(cycle, 'cast(occurred_at as date)') }} as period_start
    from {{ ref('fct_commissions') }}
)

select
    beneficiary_id || ':' || currency || ':' || {{ date_key('period_start') }} as statement_id,
    beneficiary_id as agent_id,
    currency,
    period_start,
    {{ cycle_period_end(cycle, 'period_start') }} as period_end,
    model,
    level,
    cast(sum(case when event_kind = 'payment' then amount_minor else 0 end)
         as {{ money_type() }}) as earned_minor,
    cast(sum(case when event_kind = 'refund' then amount_minor else 0 end)
         as {{ money_type() }}) as reversed_minor,
    cast(sum(amount_minor) as {{ money_type() }}) as net_minor,
    count(case when event_kind = 'payment' then 1 end) as payment_count,
    count(case when event_kind = 'refund' then 1 end) as refund_count
from commissions
group by beneficiary_id, currency, period_start, model, level
