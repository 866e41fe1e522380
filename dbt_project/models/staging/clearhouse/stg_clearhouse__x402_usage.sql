with source as (
    select * from {{ source('clearhouse', 'x402_usage') }}
)

select
    id as usage_id,
    merchant_id,
    rule_id,
    http_method,
    path,
    scheme,
    x402_version,
    network,
    asset as currency,
    cast(amount_atomic as {{ money_type() }}) as amount_minor,
    pay_to,
    payer,
    token_id,
    status,
    upstream_status,
    tx_hash,
    payment_id,
    error_reason,
    settled_at,
    created_at,
    updated_at,
    _extracted_at as extracted_at
from source
