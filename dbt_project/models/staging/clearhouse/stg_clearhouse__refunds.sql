with source as (
    select * from {{ source('clearhouse', 'refunds') }}
)

select
    id as refund_id,
    payment_id,
    merchant_id,
    cast(amount_minor as {{ money_type() }}) as amount_minor,
    currency,
    status,
    reason,
    channel_reference,
    succeeded_at,
    created_at,
    updated_at,
    _extracted_at as extracted_at
from source
