-- commission.md: "A refund reverses commission pro rata:
--   reversed_i = round_half_up(commission_i * refunded_minor / captured_minor),
-- the platform taking the rounding residual so that conservation holds on the refund too.
-- A full refund reverses exactly."
-- So each refund reverses round_half_up(commission * its own amount / captured), and the refund
-- that completes the full refund of the payment reverses exactly what is left of the
-- commission (commission - what the earlier refunds reversed), so that a payment refunded in
-- full, at once or in parts, has its commission reversed exactly. Partial refunds never take
-- back more than the commission in total: where rounding each one up would (a commission of 3
-- and six refunds of a sixth each: 0.5 rounds to 1 six times), the running total stops at the
-- commission (the spec is silent there: its formula alone would reverse 6 of 3). A
-- payment's refunds are ordered by (succeeded_at, refund_id). The merchant fee and the channel
-- cost are reversed by the same rule (macro refund_reversal; warehouse.money.refund_reversals).
-- reversed_minor is positive for a positive commission (the fact row carries it negated).

with reversals as (
    select * from {{ ref('int_refund_fee_reversals') }}
    where payment_fee_minor is not null
),

levels as (
    select * from {{ ref('int_commission_levels') }}
),

own_share as (
    select
        r.refund_id,
        r.payment_id,
        r.merchant_id,
        r.currency,
        r.succeeded_at,
        r.cum_refunded_minor,
        r.payment_amount_minor,
        l.level,
        l.agent_id,
        l.model,
        l.pct_bps,
        l.model_fixed_minor,
        l.cost_rate_bps,
        l.cost_fixed_minor,
        l.captured_at,
        l.commission_minor,
        cast({{ prorate('l.commission_minor', 'r.refund_minor', 'r.payment_amount_minor') }}
             as {{ money_type() }}) as pro_rata_minor
    from reversals as r
    inner join levels as l on l.payment_id = r.payment_id
),

with_earlier as (
    select
        *,
        {{ refund_shares_before('pro_rata_minor', 'payment_id, level, agent_id') }} as shares_before_minor
    from own_share
)

select
    refund_id,
    payment_id,
    merchant_id,
    currency,
    succeeded_at,
    level,
    agent_id,
    model,
    pct_bps,
    model_fixed_minor,
    cost_rate_bps,
    cost_fixed_minor,
    captured_at,
    {{ refund_reversal('commission_minor', 'pro_rata_minor', 'shares_before_minor',
                       'cum_refunded_minor = payment_amount_minor') }} as reversed_minor
from with_earlier
