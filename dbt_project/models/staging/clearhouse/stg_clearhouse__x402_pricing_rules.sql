with source as (
    select * from {{ source('clearhouse', 'x402_pricing_rules') }}
)

select
    id as rule_id,
    merchant_id,
    path_pattern,
    http_method,
    cast(amount_atomic as {{ money_type() }}) as amount_minor,
    asset as currency,
    network,
    pay_to,
    billing_mode,
    status,
    created_at,
    updated_at,
    _extracted_at as extracted_at
from source
