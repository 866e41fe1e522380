-- Manual settlement adjustments finance posts on a merchant (settlement.md: "with reason and
-- who"). amount_minor is signed: positive credits the merchant, negative debits it.
with source as (
    select * from {{ source('clearhouse', 'settlement_adjustments') }}
)

select
    id as adjustment_id,
    merchant_id,
    cast(amount_minor as {{ money_type() }}) as amount_minor,
    currency,
    reason,
    created_by,
    effective_at,
    created_at,
    updated_at,
    _extracted_at as extracted_at
from source
