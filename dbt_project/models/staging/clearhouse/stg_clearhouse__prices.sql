with source as (
    select * from {{ source('clearhouse', 'prices') }}
)

select
    id as price_id,
    subject_type,
    subject_id,
    currency,
    cast(rate_bps as bigint) as rate_bps,
    cast(fixed_minor as {{ money_type() }}) as fixed_minor,
    valid_from,
    valid_to,
    created_at,
    updated_at,
    _extracted_at as extracted_at
from source
