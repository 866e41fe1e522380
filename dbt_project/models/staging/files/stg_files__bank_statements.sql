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
    -- a balance counts minor units of its own currency (camt may state another than the
    -- account's); rows loaded before the column existed: the statement's
    case when opening_balance_minor is not null
         then coalesce(opening_currency, currency) end as opening_currency,
    cast(closing_balance_minor as {{ money_type() }}) as closing_balance_minor,
    closing_date,
    case when closing_balance_minor is not null
         then coalesce(closing_currency, currency) end as closing_currency,
    balance_check,
    line_count,
    cast(lines_total_minor as {{ money_type() }}) as lines_total_minor
from {{ source('files', 'bank_statements') }}
where superseded_by is null
