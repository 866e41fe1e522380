select
    statement_uid,
    file_id,
    format,
    message_type,
    account_id,
    statement_id,
    sequence_number,
    currency,
    servicer_bic,
    from_date,
    to_date,
    cast(opening_balance_minor as {{ money_type() }}) as opening_balance_minor,
    opening_date,
    cast(closing_balance_minor as {{ money_type() }}) as closing_balance_minor,
    closing_date,
    balance_check,
    line_count,
    cast(lines_total_minor as {{ money_type() }}) as lines_total_minor
from {{ source('files', 'bank_statements') }}
where superseded_by is null
