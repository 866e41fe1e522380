{{ config(meta={'dagster': {'ref': {'name': 'fct_platform_revenue'}}}) }}
-- settlement.md's finance tie-out, per day and currency, to the minor unit:
--   sum(merchant statements' payment and refund lines, net of fees) + agent commissions
--     + platform net + channel cost = gross captured - refunds
-- i.e. the fees the statements charged are exactly what commission.md splits between the
-- channels, the agents and the platform. It is taken in the transaction currency on the day
-- each payment or refund happened, so late items (shown as adjustments in a later period) and
-- items converted to another settlement currency count where they belong. Chargebacks,
-- payouts and manual adjustments move money between the merchant and others, not fees, so
-- they stay out of it. A row returned is a day that does not tie out; as a Dagster asset
-- check on fct_platform_revenue it fails the run before anything is published.
-- "gross captured - refunds" is taken from the payments and refunds themselves (the captures
-- and succeeded refunds that settle through statements: int_payment_fees and
-- int_refund_fee_reversals), not from the statement lines, so a statement line that credits
-- more or less than was captured, or a captured payment missing from every statement, fails it.

with statements as (
    select cast(occurred_at as date) as day, txn_currency as currency,
           sum(txn_gross_minor - txn_fee_minor) as merchant_net
    from {{ ref('fct_settlement_statement_lines') }}
    where item_type in ('payment', 'refund')
    group by cast(occurred_at as date), txn_currency
),

captured as (
    select cast(captured_at as date) as day, currency, amount_minor as gross_minor
    from {{ ref('int_payment_fees') }}
    union all
    select cast(succeeded_at as date), currency, 0 - refund_minor
    from {{ ref('int_refund_fee_reversals') }}
),

ledger as (
    select day, currency, sum(gross_minor) as gross_less_refunds
    from captured
    group by day, currency
),

revenue as (
    select cast(occurred_at as date) as day, currency,
           sum(agent_commission_minor) as commissions,
           sum(platform_net_minor) as platform_net,
           sum(channel_cost_minor) as channel_cost
    from {{ ref('fct_platform_revenue') }}
    group by cast(occurred_at as date), currency
)

select coalesce(l.day, s.day, r.day) as day, coalesce(l.currency, s.currency, r.currency) as currency,
       s.merchant_net, l.gross_less_refunds, r.commissions, r.platform_net, r.channel_cost
from ledger as l
full outer join statements as s on s.day = l.day and s.currency = l.currency
full outer join revenue as r
    on  r.day = coalesce(l.day, s.day)
    and r.currency = coalesce(l.currency, s.currency)
where coalesce(s.merchant_net, 0) + coalesce(r.commissions, 0) + coalesce(r.platform_net, 0)
      + coalesce(r.channel_cost, 0) <> coalesce(l.gross_less_refunds, 0)
