-- Payout requests of merchants and agents; a withdrawal is paid out when status = 'paid',
-- at decided_at (the time of that last decision).
with source as (
    select * from {{ source('clearhouse', 'withdrawals') }}
)

select
    id as withdrawal_id,
    owner_type,
    owner_id,
    cast(amount_minor as {{ money_type() }}) as amount_minor,
    currency,
    status,
    decided_by,
    decided_at,
    reason,
    created_at,
    updated_at,
    _extracted_at as extracted_at
from source
