with source as (
    select * from {{ source('clearhouse', 'commission_models') }}
)

select
    id as commission_model_id,
    agent_id,
    currency,
    model,
    cast(pct_bps as bigint) as pct_bps,
    cast(fixed_minor as {{ money_type() }}) as fixed_minor,
    valid_from,
    valid_to,
    created_at,
    updated_at,
    _extracted_at as extracted_at
from source
