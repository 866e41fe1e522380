{{ config(materialized='table') }}
-- A table: read by several models downstream; a view would recompute it for each.
-- One row per captured payment with the merchant price in force at captured_at and the fee F
-- the merchant is charged (commission.md: F = fee(merchant price)).
-- Captured = status in (success, partially_refunded, refunded) and captured_at is set.
-- A captured payment with no merchant price in force keeps a row with NULL price and fee
-- (flagged by a warn-severity test), rather than disappearing or being charged 0 silently.
-- Wallet payments (payment_method_type = 'wallet') are left out: they redeem stored value the
-- customer already paid for with a top-up, which was the gross (and carried the fee); no money
-- moves through the platform when it is spent.

with payments as (
    select * from {{ ref('stg_clearhouse__payments') }}
    where status in ('success', 'partially_refunded', 'refunded')
      and captured_at is not null
      and payment_method_type <> 'wallet'
),

merchant_prices as (
    select * from {{ ref('stg_clearhouse__prices') }}
    where subject_type = 'merchant'
),

priced as (
    select
        p.payment_id,
        p.merchant_id,
        p.currency,
        p.amount_minor,
        p.captured_at,
        pr.price_id,
        pr.rate_bps,
        -- commission.md: a missing fixed amount for the currency counts as 0
        case when pr.price_id is not null
             then cast(coalesce(pr.fixed_minor, 0) as {{ money_type() }})
        end as fixed_minor
    from payments as p
    left join merchant_prices as pr
        on  pr.subject_id = p.merchant_id
        and pr.currency = p.currency
        and {{ in_force('pr', 'p.captured_at') }}
)

select
    payment_id,
    merchant_id,
    currency,
    amount_minor,
    captured_at,
    price_id,
    rate_bps,
    fixed_minor,
    {{ fee_minor('amount_minor', 'rate_bps', 'fixed_minor') }} as fee_minor
from priced
