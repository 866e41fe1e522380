-- settlement.md: an agent's commission statement per cycle sums its commission rows by model and
-- level, with the reversals shown separately. The cycle is the agent's own
-- (agents.statement_cycle: 'daily', 'weekly' or 'monthly'; monthly unless set, as agents'
-- residuals are usually paid), by the UTC day of the payment's capture or the refund's success.
-- Lines:
--   'commission'  one per statement, model and level (line_id = '<model>:<level>'; 'none:<level>'
--                 for an agent without a model in force): earned on payments, reversed by
--                 refunds, net;
--   'adjustment'  one per late commission row (first seen after its own period had closed: on
--                 the period open then, naming its payment or refund and natural period) and
--                 per correction to a row already on a closed statement (line_id
--                 'correction:<commission_id>:<n>').
-- Lines of closed periods come frozen (int_agent_statement_frozen_lines) and never change; open
-- periods are live.
{%- set columns = 'line_id, commission_id, statement_id, agent_id, statement_cycle, period_start,
    period_end, currency, line_type, event_kind, event_id, model, level, is_correction,
    natural_period_start, amount_minor, description' %}
with frozen as (
    select * from {{ ref('int_agent_statement_frozen_lines') }}
),

live as (
    select l.*
    from {{ ref('int_agent_statement_lines') }} as l
    where not exists (select 1 from frozen as f where f.line_id = l.line_id)
),

rows_ as (
    -- each commission row once: what it earned (a payment's) or reversed (a refund's)
    select
        *,
        case when event_kind = 'payment' then amount_minor else 0 end as earned,
        case when event_kind = 'refund' then amount_minor else 0 end as reversed,
        case when event_kind = 'payment' and not is_correction then 1 else 0 end as payments,
        case when event_kind = 'refund' and not is_correction then 1 else 0 end as refunds
    from (
        select {{ columns }} from frozen
        union all
        select {{ columns }} from live
    ) as booked_and_live
)

select
    statement_id,
    coalesce(model, 'none') || ':' || cast(level as {{ dbt.type_string() }}) as line_id,
    'commission' as line_type,
    agent_id,
    currency,
    statement_cycle,
    period_start,
    period_end,
    model,
    level,
    cast(null as {{ dbt.type_string() }}) as commission_id,
    cast(null as {{ dbt.type_string() }}) as event_id,
    cast(null as date) as natural_period_start,
    cast(sum(earned) as {{ money_type() }}) as earned_minor,
    cast(sum(reversed) as {{ money_type() }}) as reversed_minor,
    cast(sum(amount_minor) as {{ money_type() }}) as net_minor,
    cast(sum(payments) as bigint) as payment_count,
    cast(sum(refunds) as bigint) as refund_count,
    cast(null as {{ dbt.type_string() }}) as description
from rows_
where line_type = 'commission'
group by statement_id, agent_id, currency, statement_cycle, period_start, period_end, model,
         level

union all

select
    statement_id,
    line_id,
    line_type,
    agent_id,
    currency,
    statement_cycle,
    period_start,
    period_end,
    model,
    level,
    commission_id,
    event_id,
    natural_period_start,
    cast(earned as {{ money_type() }}) as earned_minor,
    cast(reversed as {{ money_type() }}) as reversed_minor,
    cast(amount_minor as {{ money_type() }}) as net_minor,
    cast(payments as bigint) as payment_count,
    cast(refunds as bigint) as refund_count,
    description
from rows_
where line_type = 'adjustment'
