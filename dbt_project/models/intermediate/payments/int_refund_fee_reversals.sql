{{ config(materialized='table') }}
-- A table: read by several models downstream; a view would recompute it for each.
-- One row per succeeded refund: the part of the payment's fee F it reverses, by the rule
-- commission.md gives for commissions (macro refund_reversal, warehouse.money.refund_reversals):
-- round_half_up(F * refund / amount) on the refund's own amount, the refund completing a full
-- refund reversing what is left (a full refund reverses exactly F), the running total of
-- partial reversals never beyond F; a payment's refunds ordered by (succeeded_at, refund_id).
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

shares as (
    select
        *,
        cast(cum_refunded_minor - refund_minor as {{ money_type() }}) as cum_refunded_before_minor,
        cast({{ prorate('payment_fee_minor', 'refund_minor', 'payment_amount_minor') }}
             as {{ money_type() }}) as fee_share_minor
    from cumulated
),

bounds as (
    select
        *,
        {{ refund_shares_before('fee_share_minor', 'payment_id') }} as fee_shares_before_minor
    from shares
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
    {{ refund_reversal('payment_fee_minor', 'fee_share_minor', 'fee_shares_before_minor',
                       'cum_refunded_minor = payment_amount_minor') }} as fee_reversed_minor
from bounds
