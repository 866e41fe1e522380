with source as (
    select * from {{ source('clearhouse', 'payments') }}
)

select
    id as payment_id,
    merchant_id,
    merchant_reference,
    cast(amount_minor as {{ money_type() }}) as amount_minor,
    currency,
    status,
    payment_method_type,
    channel_id,
    channel_reference,
    failure_code,
    risk_decision,
    customer_id,
    cast(refunded_minor as {{ money_type() }}) as refunded_minor,
    captured_at,
    created_at,
    updated_at,
    _extracted_at as extracted_at
from source
