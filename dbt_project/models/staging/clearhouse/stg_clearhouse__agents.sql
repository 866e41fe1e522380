with source as (
    select * from {{ source('clearhouse', 'agents') }}
)

select
    id as agent_id,
    name as agent_name,
    status as agent_status,
    created_at,
    updated_at,
    _extracted_at as extracted_at
from source
