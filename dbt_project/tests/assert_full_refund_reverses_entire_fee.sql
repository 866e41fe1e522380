-- commission.md: a refund reverses the fee pro rata to its own amount,
-- reversed_i = round_half_up(F * refund_i / amount), the running total never beyond F; the
-- refund that completes the payment's refund reverses what is left, so a fully refunded payment
-- gets exactly F back. (Two partial refunds of 333 on 1,000 with F = 25 reverse 8 + 8 = 16, not
-- the 17 a proration of the cumulative 666 would give.)

with per_refund as (
    select
        payment_id,
        payment_amount_minor,
        payment_fee_minor,
        refund_minor,
        fee_reversed_minor,
        cast({{ prorate('payment_fee_minor', 'refund_minor', 'payment_amount_minor') }}
             as {{ money_type() }}) as share_minor
    from {{ ref('int_refund_fee_reversals') }}
    where payment_fee_minor is not null
),

per_payment as (
    select
        payment_id,
        max(payment_amount_minor) as amount_minor,
        max(payment_fee_minor) as fee_minor,
        sum(refund_minor) as refunded_minor,
        sum(fee_reversed_minor) as fee_reversed_minor,
        sum(share_minor) as shares_minor
    from per_refund
    group by payment_id
)

select *
from per_payment
where (refunded_minor = amount_minor and fee_reversed_minor <> fee_minor)
   or (refunded_minor <> amount_minor
       and fee_reversed_minor <> (case when fee_minor >= 0 then least(shares_minor, fee_minor)
                                       else greatest(shares_minor, fee_minor) end))
