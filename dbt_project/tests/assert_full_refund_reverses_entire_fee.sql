-- Cumulative proration: the fee reversals of a payment sum to
-- prorate(F, total refunded, amount); a fully refunded payment gets exactly F back.

with per_payment as (
    select
        payment_id,
        max(payment_amount_minor) as amount_minor,
        max(payment_fee_minor) as fee_minor,
        sum(refund_minor) as refunded_minor,
        sum(fee_reversed_minor) as fee_reversed_minor
    from {{ ref('int_refund_fee_reversals') }}
    where payment_fee_minor is not null
    group by payment_id
)

select *
from per_payment
where fee_reversed_minor <> {{ prorate('fee_minor', 'refunded_minor', 'amount_minor') }}
   or (refunded_minor = amount_minor and fee_reversed_minor <> fee_minor)
