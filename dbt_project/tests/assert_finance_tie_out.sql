{{ config(meta={'dagster': {'ref': {'name': 'fct_platform_revenue'}}}) }}
-- settlement.md's finance tie-out, per day and currency, to the minor unit:
--   sum(merchant statements' net activity) + agent commissions + platform net + channel cost
--     = gross captured - refunds
-- i.e. the fees the statements charged are exactly what commission.md splits between the
-- channels, the agents and the platform. A row returned is a day that does not tie out; as a
-- Dagster asset check on fct_platform_revenue it fails the run before anything is published.

with statements as (
    select period_start as day, currency,
           sum(net_activity_minor) as net_activity,
           sum(gross_minor) - sum(refunds_minor) as gross_less_refunds
    from {{ ref('fct_settlement_statements') }}
    group by period_start, currency
),

revenue as (
    select cast(occurred_at as date) as day, currency,
           sum(agent_commission_minor) as commissions,
           sum(platform_net_minor) as platform_net,
           sum(channel_cost_minor) as channel_cost
    from {{ ref('fct_platform_revenue') }}
    group by cast(occurred_at as date), currency
)

select s.day, s.currency, s.net_activity, s.gross_less_refunds,
       r.commissions, r.platform_net, r.channel_cost
from statements as s
full outer join revenue as r on r.day = s.day and r.currency = s.currency
where coalesce(s.net_activity, 0) + coalesce(r.commissions, 0) + coalesce(r.platform_net, 0)
      + coalesce(r.channel_cost, 0) <> coalesce(s.gross_less_refunds, 0)
