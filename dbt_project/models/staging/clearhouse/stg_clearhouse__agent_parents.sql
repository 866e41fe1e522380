with source as (
    select * from {{ source('clearhouse', 'agent_parents') }}
)

select
    cast(id as bigint) as agent_parent_id,
    agent_id,
    parent_id as parent_agent_id,
    valid_from,
    valid_to,
    created_at,
    updated_at,
    _extracted_at as extracted_at
from source
