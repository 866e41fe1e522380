-- Agent portfolio performance: per agent, UTC day and transaction currency, what the merchants
-- under it (directly or through sub-agents, at any depth) did and what the agent earned on it.
-- The portfolio is the agent tree in force at each payment's captured_at, as commission.md
-- walks it (fct_commissions has one row per payment or refund and agent on the merchant's
-- chain), so a re-parented agent's earlier business stays with its former parent, and a
-- refund follows its payment's tree, not today's. An activity view by the event's day (capture
-- or refund), like the agents' commission statements:
--   merchant_count / payment_count / captured_minor   captures of the day in the portfolio
--   refund_count / refunded_minor                     refunds of the day of portfolio payments
--   commission_earned_minor / _reversed_minor / _net  the agent's own commission rows
-- Amounts in minor units of `currency`; nothing converted (commission is earned in the
-- transaction currency).

with commissions as (
    select * from {{ ref('fct_commissions') }}
),

payments as (
    select payment_id, amount_minor from {{ ref('stg_clearhouse__payments') }}
),

refunds as (
    select refund_id, amount_minor from {{ ref('stg_clearhouse__refunds') }}
),

-- one row per agent and event (an agent appears once per chain; level is kept for safety)
per_event as (
    select
        c.beneficiary_id as agent_id,
        cast(c.occurred_at as date) as day,
        c.currency,
        c.event_kind,
        c.event_id,
        c.merchant_id,
        cast(sum(c.amount_minor) as {{ money_type() }}) as commission_minor
    from commissions as c
    group by c.beneficiary_id, cast(c.occurred_at as date), c.currency, c.event_kind,
        c.event_id, c.merchant_id
)

select
    e.agent_id,
    e.day,
    e.currency,
    cast(count(distinct case when e.event_kind = 'payment' then e.merchant_id end) as bigint)
        as merchant_count,
    cast(count(case when e.event_kind = 'payment' then 1 end) as bigint) as payment_count,
    cast(coalesce(sum(p.amount_minor), 0) as {{ money_type() }}) as captured_minor,
    cast(count(case when e.event_kind = 'refund' then 1 end) as bigint) as refund_count,
    cast(coalesce(sum(r.amount_minor), 0) as {{ money_type() }}) as refunded_minor,
    cast(coalesce(sum(case when e.event_kind = 'payment' then e.commission_minor end), 0)
         as {{ money_type() }}) as commission_earned_minor,
    cast(coalesce(sum(case when e.event_kind = 'refund' then 0 - e.commission_minor end), 0)
         as {{ money_type() }}) as commission_reversed_minor,
    cast(coalesce(sum(e.commission_minor), 0) as {{ money_type() }}) as commission_net_minor
from per_event as e
left join payments as p on e.event_kind = 'payment' and p.payment_id = e.event_id
left join refunds as r on e.event_kind = 'refund' and r.refund_id = e.event_id
group by e.agent_id, e.day, e.currency
