-- x402 revenue per merchant, endpoint (pricing rule), scheme and UTC day of the call: how many
-- calls came in, how many were paid (settled), how many were not charged (the upstream failed,
-- settling failed, or the caller went away before settling), the revenue in minor units of the
-- asset and how many distinct payers paid. refunded_minor: what succeeded refunds of those paid
-- calls' payments gave back, whenever they succeeded (a cohort by the call's day, like
-- rpt_merchant_daily); net_revenue_minor = revenue_minor - refunded_minor. `payers` counts
-- distinct payers of the day, so it does not add up across days.

with usage as (
    select * from {{ ref('stg_clearhouse__x402_usage') }}
),

rules as (
    select * from {{ ref('stg_clearhouse__x402_pricing_rules') }}
),

refunded as (
    select payment_id, cast(sum(amount_minor) as {{ money_type() }}) as refunded_minor
    from {{ ref('stg_clearhouse__refunds') }}
    where status = 'succeeded'
      and succeeded_at is not null
    group by payment_id
),

calls as (
    select
        u.*,
        case when u.status = 'settled' then rf.refunded_minor end as refunded_minor
    from usage as u
    left join refunded as rf on rf.payment_id = u.payment_id
)

select
    u.merchant_id,
    cast(u.created_at as date) as day,
    u.rule_id,
    r.path_pattern,
    u.scheme,
    u.currency,
    r.amount_minor as rule_amount_minor,
    count(*) as calls,
    count(case when u.status = 'settled' then 1 end) as paid_calls,
    count(case when u.status <> 'settled' then 1 end) as not_charged_calls,
    cast(coalesce(sum(case when u.status = 'settled' then u.amount_minor end), 0)
         as {{ money_type() }}) as revenue_minor,
    count(distinct case when u.status = 'settled' then u.payer end) as payers,
    cast(coalesce(sum(u.refunded_minor), 0) as {{ money_type() }}) as refunded_minor,
    cast(coalesce(sum(case when u.status = 'settled' then u.amount_minor end), 0)
         - coalesce(sum(u.refunded_minor), 0) as {{ money_type() }}) as net_revenue_minor
from calls as u
left join rules as r on r.rule_id = u.rule_id
group by u.merchant_id, cast(u.created_at as date), u.rule_id, r.path_pattern, u.scheme,
    u.currency, r.amount_minor
