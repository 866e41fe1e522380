-- One row per payment (every status). Fee columns are NULL when the payment was not captured:
-- no fee applies (NULL, not 0, so "not charged" and "charged 0" stay distinct), and for wallet
-- payments (stored value redeemed: the top-up carried the fee; int_payment_fees leaves them out).

with payments as (
    select * from {{ ref('stg_clearhouse__payments') }}
),

fees as (
    select * from {{ ref('int_payment_fees') }}
),

refunded as (
    select
        payment_id,
        cast(sum(amount_minor) as {{ money_type() }}) as refunded_minor
    from {{ ref('stg_clearhouse__refunds') }}
    where status = 'succeeded'
      and succeeded_at is not null
    group by payment_id
)

select
    p.payment_id,
    p.merchant_id,
    p.merchant_reference,
    p.channel_id,
    p.payment_method_type,
    p.currency,
    p.amount_minor,
    p.status,
    (p.status in ('success', 'partially_refunded', 'refunded')
     and p.captured_at is not null) as is_captured,
    p.captured_at,
    cast(p.captured_at as date) as captured_date,
    cast(coalesce(r.refunded_minor, 0) as {{ money_type() }}) as refunded_minor,
    f.fee_minor,
    f.rate_bps,
    f.fixed_minor,
    f.price_id,
    p.created_at
from payments as p
left join fees as f
    on f.payment_id = p.payment_id
left join refunded as r
    on r.payment_id = p.payment_id
