-- Payout requests of merchants and agents; a withdrawal is paid out when status = 'paid', at
-- paid_at (marked paid; decided_at is the approval or rejection). Rows paid before paid_at
-- existed (API migration 0010) carry the approval time there.
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
    coalesce(paid_at, case when status = 'paid' then decided_at end) as paid_at,
    reason,
    created_at,
    updated_at,
    _extracted_at as extracted_at
from source
