-- commission.md: a refund reverses each commission pro rata, cumulatively per payment (as the
-- merchant fee is, see int_refund_fee_reversals), so a full refund reverses exactly:
--   reversed_k = prorate(commission, refunded through refund k, captured)
--              - prorate(commission, refunded before refund k, captured)
-- reversed_minor is positive for a positive commission (the fact row carries it negated).

with reversals as (
    select * from {{ ref('int_refund_fee_reversals') }}
    where payment_fee_minor is not null
),

levels as (
    select * from {{ ref('int_commission_levels') }}
)

select
    r.refund_id,
    r.payment_id,
    r.merchant_id,
    r.currency,
    r.succeeded_at,
    l.level,
    l.agent_id,
    l.model,
    l.pct_bps,
    l.model_fixed_minor,
    l.cost_rate_bps,
    l.cost_fixed_minor,
    l.captured_at,
    cast(
        {{ prorate('l.commission_minor', 'r.cum_refunded_minor', 'r.payment_amount_minor') }}
        - {{ prorate('l.commission_minor', 'r.cum_refunded_before_minor', 'r.payment_amount_minor') }}
    as {{ money_type() }}) as reversed_minor
from reversals as r
inner join levels as l on l.payment_id = r.payment_id
