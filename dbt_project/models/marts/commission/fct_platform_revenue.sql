-- commission.md: per payment and per refund, where the merchant's fee F went:
--   F = channel_cost + platform_net + sum(agent commissions), exact to the minor unit.
-- Payments: platform_net = up_k - channel_cost - sum(percentage and fixed commissions), where
-- up_k is what reaches the platform from the top agent (F when the merchant has no agent).
-- Refunds (negative rows): F, the channel cost and each commission are reversed as
-- commission.md says for commissions (round_half_up(x * refunded / captured) on the refund's
-- own amount, the refund completing a full refund reversing what is left: macro
-- refund_reversal); the platform takes the rounding residual.
-- channel_cost = fee(channel price in force at captured_at); no channel price = 0, and
-- channel_price_id is then NULL (a warn-severity test names such payments: the spec's channel
-- cost cannot be known, as for a missing fixed amount - except on the platform's own x402 and
-- agent-token channels, which no outside channel charges).
-- negative_margin: platform_net < 0 or an agent's markup spread < 0 (raised, never clipped).
-- It is the payment's exception: a refund row reverses the payment's split and is never flagged
-- (its platform_net is the reversal of the payment's, negative whenever the payment's was
-- positive).

with fees as (
    select f.*, p.channel_id
    from {{ ref('int_payment_fees') }} as f
    inner join {{ ref('stg_clearhouse__payments') }} as p on p.payment_id = f.payment_id
    where f.fee_minor is not null
),

channel_prices as (
    select * from {{ ref('stg_clearhouse__prices') }} where subject_type = 'channel'
),

costed as (
    select
        f.payment_id,
        f.merchant_id,
        f.currency,
        f.amount_minor,
        f.captured_at,
        f.fee_minor,
        f.channel_id,
        cp.price_id as channel_price_id,
        cast(coalesce(
            {{ fee_minor('f.amount_minor', 'cp.rate_bps', 'coalesce(cp.fixed_minor, 0)') }}, 0)
            as {{ money_type() }}) as channel_cost_minor
    from fees as f
    left join channel_prices as cp
        on  cp.subject_id = f.channel_id
        and cp.currency = f.currency
        and {{ in_force('cp', 'f.captured_at') }}
),

levels as (
    select * from {{ ref('int_commission_levels') }}
),

per_payment as (
    select
        payment_id,
        max(level) as top_level,
        cast(sum(commission_minor) as {{ money_type() }}) as agent_commission_minor,
        cast(sum(case when model in ('percentage', 'fixed') then commission_minor else 0 end)
             as {{ money_type() }}) as platform_paid_minor,
        count(case when model = 'markup' and commission_minor < 0 then 1 end)
            as negative_spreads
    from levels
    group by payment_id
),

reaching_platform as (
    select l.payment_id, l.up_minor
    from levels as l
    inner join per_payment as pp on pp.payment_id = l.payment_id and pp.top_level = l.level
),

payment_rows as (
    select
        c.payment_id as event_id,
        'payment' as event_kind,
        c.payment_id,
        c.merchant_id,
        c.currency,
        c.captured_at as occurred_at,
        c.fee_minor as merchant_fee_minor,
        c.channel_id,
        c.channel_price_id,
        c.channel_cost_minor,
        cast(coalesce(pp.agent_commission_minor, 0) as {{ money_type() }})
            as agent_commission_minor,
        cast(coalesce(rp.up_minor, c.fee_minor) - c.channel_cost_minor
             - coalesce(pp.platform_paid_minor, 0) as {{ money_type() }}) as platform_net_minor,
        coalesce(pp.negative_spreads, 0) as negative_spreads
    from costed as c
    left join per_payment as pp on pp.payment_id = c.payment_id
    left join reaching_platform as rp on rp.payment_id = c.payment_id
),

refund_commissions as (
    select refund_id, cast(sum(reversed_minor) as {{ money_type() }}) as reversed_minor
    from {{ ref('int_commission_reversals') }}
    group by refund_id
),

refund_costs as (
    select
        r.*,
        c.channel_id,
        c.channel_price_id,
        c.channel_cost_minor,
        cast({{ prorate('c.channel_cost_minor', 'r.refund_minor', 'r.payment_amount_minor') }}
             as {{ money_type() }}) as cost_share_minor
    from {{ ref('int_refund_fee_reversals') }} as r
    inner join costed as c on c.payment_id = r.payment_id
),

refund_cost_shares as (
    select
        *,
        {{ refund_shares_before('cost_share_minor', 'payment_id') }} as cost_shares_before_minor
    from refund_costs
),

refund_rows as (
    select
        r.refund_id as event_id,
        'refund' as event_kind,
        r.payment_id,
        r.merchant_id,
        r.currency,
        r.succeeded_at as occurred_at,
        cast(-r.fee_reversed_minor as {{ money_type() }}) as merchant_fee_minor,
        r.channel_id,
        r.channel_price_id,
        cast(-{{ refund_reversal('r.channel_cost_minor', 'r.cost_share_minor',
                                 'r.cost_shares_before_minor',
                                 'r.cum_refunded_minor = r.payment_amount_minor') }}
             as {{ money_type() }}) as channel_cost_minor,
        cast(-coalesce(rc.reversed_minor, 0) as {{ money_type() }}) as agent_commission_minor,
        0 as negative_spreads
    from refund_cost_shares as r
    left join refund_commissions as rc on rc.refund_id = r.refund_id
)

select
    event_id, event_kind, payment_id, merchant_id, currency, occurred_at, merchant_fee_minor,
    channel_cost_minor, agent_commission_minor, platform_net_minor,
    platform_net_minor < 0 or negative_spreads > 0 as negative_margin, channel_id,
    channel_price_id
from payment_rows

union all

select
    event_id, event_kind, payment_id, merchant_id, currency, occurred_at, merchant_fee_minor,
    channel_cost_minor, agent_commission_minor,
    cast(merchant_fee_minor - channel_cost_minor - agent_commission_minor
         as {{ money_type() }}) as platform_net_minor,
    false as negative_margin, channel_id, channel_price_id
from refund_rows
