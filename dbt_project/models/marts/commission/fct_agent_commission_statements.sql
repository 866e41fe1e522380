-- An agent's commission statement per cycle (the agent's statement_cycle, monthly unless set) and
-- currency: what it earned on payments captured in the period, what refunds reversed, the net, and a running balance (opening = the previous
-- statement's closing; the first opens at 0). Lines: fct_agent_commission_statement_lines.

with lines as (
    select * from {{ ref('fct_agent_commission_statement_lines') }}
),

statements as (
    select
        statement_id,
        agent_id,
        currency,
        statement_cycle,
        period_start,
        period_end,
        cast(sum(earned_minor) as {{ money_type() }}) as earned_minor,
        cast(sum(reversed_minor) as {{ money_type() }}) as reversed_minor,
        cast(sum(net_minor) as {{ money_type() }}) as net_minor,
        sum(payment_count) as payment_count,
        sum(refund_count) as refund_count
    from lines
    group by statement_id, agent_id, currency, statement_cycle, period_start, period_end
)

select
    statement_id,
    agent_id,
    currency,
    period_start,
    period_end,
    statement_cycle as settlement_cycle,
    cast(coalesce(sum(net_minor) over (
        partition by agent_id, currency order by period_start
        rows between unbounded preceding and 1 preceding), 0) as {{ money_type() }})
        as opening_balance_minor,
    earned_minor,
    reversed_minor,
    net_minor,
    cast(sum(net_minor) over (
        partition by agent_id, currency order by period_start
        rows between unbounded preceding and current row) as {{ money_type() }})
        as closing_balance_minor,
    cast(payment_count as bigint) as payment_count,
    cast(refund_count as bigint) as refund_count
from statements
