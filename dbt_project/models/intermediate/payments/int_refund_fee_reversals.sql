{{ config(materialized='table') }}
-- A table: read by several models downstream; a view would recompute it for each.
-- One row per succeeded refund: the part of the payment's fee F it reverses.
-- Cumulative proration, so that the reversals of a payment's refunds sum to exactly
-- prorate(F, total refunded, amount), and a full refund reverses exactly F:
--   reversal_k = prorate(F, refunded through k, amount) - prorate(F, refunded before k, amount)
-- with a payment's refunds ordered by (succeeded_at, refund_id).
-- fee_reversed_minor is a positive number (fee given back to the merchant).
-- Refunds of wallet payments are left out, like the payments (see int_payment_fees): they put
-- stored value back in the wallet, no money.

with refunds as (
    select r.* from {{ ref('stg_clearhouse__refunds') }} as r
    where r.status = 'succeeded'
      and r.succeeded_at is not null
      and not exists (
          select 1 from {{ ref('stg_clearhouse__payments') }} as p
          where p.payment_id = r.payment_id and p.payment_method_type = 'wallet'
      )
),

fees as (
    select * from {{ ref('int_payment_fees') }}
),

cumulated as (
    select
        r.refund_id,
        r.payment_id,
        r.merchant_id,
        r.currency,
        r.amount_minor as refund_minor,
        r.succeeded_at,
        f.amount_minor as payment_amount_minor,
        f.fee_minor as payment_fee_minor,
        f.price_id,
        cast(sum(r.amount_minor) over (
            partition by r.payment_id
            order by r.succeeded_at, r.refund_id
            rows between unbounded preceding and current row
        ) as {{ money_type() }}) as cum_refunded_minor
    from refunds as r
    left join fees as f
        on f.payment_id = r.payment_id
),

bounds as (
    select
        *,
        cast(cum_refunded_minor - refund_minor as {{ money_type() }}) as cum_refunded_before_minor
    from cumulated
)

select
    refund_id,
    payment_id,
    merchant_id,
    currency,
    refund_minor,
    succeeded_at,
    payment_amount_minor,
    payment_fee_minor,
    price_id,
    cum_refunded_before_minor,
    cum_refunded_minor,
    cast(
        {{ prorate('payment_fee_minor', 'cum_refunded_minor', 'payment_amount_minor') }}
        - {{ prorate('payment_fee_minor', 'cum_refunded_before_minor', 'payment_amount_minor') }}
    as {{ money_type() }}) as fee_reversed_minor
from bounds
