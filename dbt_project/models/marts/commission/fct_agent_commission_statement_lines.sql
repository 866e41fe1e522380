-- settlement.md: an agent's commission statement per cycle sums its commission rows by model and
-- level, with the reversals shown separately. One row per statement, model and level. The
-- cycle is the agent's own (agents.statement_cycle: 'daily', 'weekly' or 'monthly'; monthly
-- unless set, as agents' residuals are usually paid), by the UTC day of the payment's capture
-- or the refund's success.

with commissions as (
    select
        c.*,
        a.statement_cycle,
        {{ cycle_period_start('a.statement_cycle', 'cast(c.occurred_at as date)') }} as period_start
    from {{ ref('fct_commissions') }} as c
    inner join {{ ref('stg_clearhouse__agents') }} as a on a.agent_id = c.beneficiary_id
)

select
    beneficiary_id || ':' || currency || ':' || {{ date_key('period_start') }} as statement_id,
    beneficiary_id as agent_id,
    currency,
    statement_cycle,
    period_start,
    {{ cycle_period_end('statement_cycle', 'period_start') }} as period_end,
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
group by beneficiary_id, currency, statement_cycle, period_start, model, level
