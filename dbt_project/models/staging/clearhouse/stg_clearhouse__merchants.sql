with source as (
    select * from {{ source('clearhouse', 'merchants') }}
)

select
    id as merchant_id,
    name as merchant_name,
    status as merchant_status,
    agent_id,
    settlement_currency,
    settlement_cycle,
    cast(settlement_delay_days as integer) as settlement_delay_days,
    created_at,
    updated_at,
    _extracted_at as extracted_at
from source
