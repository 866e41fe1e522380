-- commission.md "Output": one row per (payment or refund, beneficiary agent). Payments: the
-- commission each agent on the chain earned (level 1 = the merchant's direct agent); refunds:
-- the pro-rata reversal, negative. The rate used: rate_bps + fixed_minor of the agent's cost
-- price for markup, pct_bps for percentage, fixed_minor for fixed.

with levels as (
    select * from {{ ref('int_commission_levels') }}
),

reversals as (
    select * from {{ ref('int_commission_reversals') }}
),

payments as (
    select payment_id, merchant_id from {{ ref('stg_clearhouse__payments') }}
)

select
    l.payment_id || ':' || l.agent_id || ':' || cast(l.level as varchar(3)) as commission_id,
    l.payment_id as event_id,
    'payment' as event_kind,
    l.payment_id,
    p.merchant_id,
    l.agent_id as beneficiary_id,
    l.level,
    l.model,
    case when l.model = 'markup' then l.cost_rate_bps end as rate_bps,
    case when l.model = 'percentage' then l.pct_bps end as pct_bps,
    case when l.model = 'markup' then l.cost_fixed_minor
         when l.model = 'fixed' then l.model_fixed_minor end as fixed_minor,
    l.commission_minor as amount_minor,
    l.currency,
    l.captured_at,
    l.captured_at as occurred_at
from levels as l
inner join payments as p on p.payment_id = l.payment_id

union all

select
    r.refund_id || ':' || r.agent_id || ':' || cast(r.level as varchar(3)) as commission_id,
    r.refund_id as event_id,
    'refund' as event_kind,
    r.payment_id,
    r.merchant_id,
    r.agent_id as beneficiary_id,
    r.level,
    r.model,
    case when r.model = 'markup' then r.cost_rate_bps end as rate_bps,
    case when r.model = 'percentage' then r.pct_bps end as pct_bps,
    case when r.model = 'markup' then r.cost_fixed_minor
         when r.model = 'fixed' then r.model_fixed_minor end as fixed_minor,
    cast(-r.reversed_minor as {{ money_type() }}) as amount_minor,
    r.currency,
    r.captured_at,
    r.succeeded_at as occurred_at
from reversals as r
