select
    psp_line_id,
    file_id,
    format,
    line_number,
    settlement_date,
    record_type,
    channel,
    channel_reference,
    merchant_reference,
    transaction_at,
    currency,
    cast(gross_minor as {{ money_type() }}) as gross_minor,
    cast(fee_minor as {{ money_type() }}) as fee_minor,
    cast(net_minor as {{ money_type() }}) as net_minor,
    payout_id,
    payout_date,
    status
from {{ source('files', 'psp_lines') }}
where superseded_by is null
