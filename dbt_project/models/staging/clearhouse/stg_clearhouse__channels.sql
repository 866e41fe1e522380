with source as (
    select * from {{ source('clearhouse', 'channels') }}
)

select
    id as channel_id,
    name as channel_name,
    channel_type,
    status as channel_status,
    cast(settlement_window_days as integer) as settlement_window_days,
    created_at,
    updated_at,
    _extracted_at as extracted_at
from source
