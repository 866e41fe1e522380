with source as (
    select * from {{ source('clearhouse', 'agents') }}
)

select
    id as agent_id,
    name as agent_name,
    status as agent_status,
    -- Rows extracted before the column existed have none: the default cycle.
    coalesce(statement_cycle, '{{ var("agent_statement_cycle", "monthly") }}') as statement_cycle,
    created_at,
    updated_at,
    _extracted_at as extracted_at
from source
