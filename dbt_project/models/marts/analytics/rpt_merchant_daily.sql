-- Per merchant, UTC day of the payment's creation, payment method and currency: a cohort view
-- of the payments created that day (how many were captured, for how much, how much of them has
-- been refunded so far). success_rate = captured_count / payment_count as an exact
-- DECIMAL(9,6), half-up rounded, computed on integers (no DOUBLE).

with payments as (
    select * from {{ ref('fct_payments') }}
),

refund_counts as (
    select payment_id, count(*) as refund_count
    from {{ ref('stg_clearhouse__refunds') }}
    where status = 'succeeded'
      and succeeded_at is not null
    group by payment_id
),

daily as (
    select
        p.merchant_id,
        cast(p.created_at as date) as day,
        p.payment_method_type,
        p.currency,
        count(*) as payment_count,
        count(case when p.is_captured then 1 end) as captured_count,
        cast(coalesce(sum(case when p.is_captured then p.amount_minor end), 0)
             as {{ money_type() }}) as captured_minor,
        cast(sum(p.refunded_minor) as {{ money_type() }}) as refunded_minor,
        coalesce(sum(rc.refund_count), 0) as refund_count
    from payments as p
    left join refund_counts as rc
        on rc.payment_id = p.payment_id
    group by p.merchant_id, cast(p.created_at as date), p.payment_method_type, p.currency
)

select
    merchant_id,
    day,
    payment_method_type,
    currency,
    cast(payment_count as bigint) as payment_count,
    cast(captured_count as bigint) as captured_count,
    {{ ratio_decimal('captured_count', 'payment_count', 6, 9) }} as success_rate,
    captured_minor,
    refunded_minor,
    cast(refund_count as bigint) as refund_count,
    case when captured_count > 0
         then {{ round_half_up_div('captured_minor', 'captured_count') }}
    end as average_ticket_minor
from daily
