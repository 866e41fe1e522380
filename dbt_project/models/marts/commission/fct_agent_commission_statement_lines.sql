-- settlement.md: an agent's commission statement per cycle (daily: the UTC day of the payment's
-- capture or the refund's success) sums its commission rows by model and level, with the
-- reversals shown separately. One row per statement, model and level.

with commissions as (
    select * from {{ ref('fct_commissions') }}
)

select
    beneficiary_id || ':' || currency || ':' || {{ date_key('cast(occurred_at as date)') }}
        as statement_id,
    beneficiary_id as agent_id,
    currency,
    cast(occurred_at as date) as period_start,
    cast(occurred_at as date) as period_end,
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
group by beneficiary_id, currency, cast(occurred_at as date), model, level
