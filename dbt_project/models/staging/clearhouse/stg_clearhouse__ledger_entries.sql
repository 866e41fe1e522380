with source as (
    select * from {{ source('clearhouse', 'ledger_entries') }}
)

select
    cast(id as bigint) as ledger_entry_id,
    transaction_id,
    kind,
    payment_id,
    refund_id,
    merchant_id,
    account,
    currency,
    cast(amount_minor as {{ money_type() }}) as amount_minor,
    effective_at,
    created_at,
    _extracted_at as extracted_at
from source
