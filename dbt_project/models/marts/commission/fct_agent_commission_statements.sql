-- An agent's commission statement per cycle (the agent's statement_cycle, monthly unless set) and
-- currency: what it earned on payments captured in the period, what refunds reversed, the
-- adjustments (late commission rows and corrections to rows on closed statements), the net
-- (earned + reversed + adjustments) and a running balance (opening = the previous statement's
-- closing; the first opens at 0). Lines: fct_agent_commission_statement_lines. Statements chain
-- in order of their last day (then first day): after a cycle change mid-period, a new-cycle
-- statement that ends first is not carrying the old cycle's still-open one, so a closed
-- statement's opening only ever depends on statements closed before it.
-- status: 'closed' once the period's last day is before the settlement_as_of day of this run or
-- an earlier one (its lines are frozen: it never changes), else 'open' (provisional).

with lines as (
    select * from {{ ref('fct_agent_commission_statement_lines') }}
),

closed_through as (
    select max(as_of_date) as closed_before from {{ ref('int_settlement_runs') }}
),

statements as (
    select
        statement_id,
        agent_id,
        currency,
        statement_cycle,
        period_start,
        period_end,
        cast(sum(case when line_type = 'commission' then earned_minor else 0 end)
             as {{ money_type() }}) as earned_minor,
        cast(sum(case when line_type = 'commission' then reversed_minor else 0 end)
             as {{ money_type() }}) as reversed_minor,
        cast(sum(case when line_type = 'adjustment' then net_minor else 0 end)
             as {{ money_type() }}) as adjustments_minor,
        cast(sum(net_minor) as {{ money_type() }}) as net_minor,
        sum(payment_count) as payment_count,
        sum(refund_count) as refund_count,
        count(case when line_type = 'adjustment' then 1 end) as adjustment_count
    from lines
    group by statement_id, agent_id, currency, statement_cycle, period_start, period_end
)

select
    s.statement_id,
    s.agent_id,
    s.currency,
    s.period_start,
    s.period_end,
    s.statement_cycle as settlement_cycle,
    cast(coalesce(sum(s.net_minor) over (
        partition by s.agent_id, s.currency order by s.period_end, s.period_start, s.statement_id
        rows between unbounded preceding and 1 preceding), 0) as {{ money_type() }})
        as opening_balance_minor,
    s.earned_minor,
    s.reversed_minor,
    s.net_minor,
    cast(sum(s.net_minor) over (
        partition by s.agent_id, s.currency order by s.period_end, s.period_start, s.statement_id
        rows between unbounded preceding and current row) as {{ money_type() }})
        as closing_balance_minor,
    cast(s.payment_count as bigint) as payment_count,
    cast(s.refund_count as bigint) as refund_count,
    s.adjustments_minor,
    cast(s.adjustment_count as bigint) as adjustment_count,
    case when s.period_end < c.closed_before then 'closed' else 'open' end as status
from statements as s
cross join closed_through as c
