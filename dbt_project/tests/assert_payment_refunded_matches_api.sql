{{ config(severity='warn', meta={'dagster': {'ref': {'name': 'fct_payments'}}}) }}
-- Data-quality warning: the API's running refunded_minor on the payment agrees with the sum of
-- its succeeded refunds as the warehouse sees them (a mismatch means a late or missing extract).

select f.payment_id, f.refunded_minor, p.refunded_minor as api_refunded_minor
from {{ ref('fct_payments') }} as f
join {{ ref('stg_clearhouse__payments') }} as p
    on p.payment_id = f.payment_id
where coalesce(p.refunded_minor, 0) <> f.refunded_minor
