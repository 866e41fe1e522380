select
    l.statement_line_id,
    l.statement_uid,
    l.file_id,
    s.format,
    s.message_type,
    l.account_id,
    l.booking_date,
    l.value_date,
    cast(l.amount_minor as {{ money_type() }}) as amount_minor,
    l.currency,
    l.status,
    l.bank_reference,
    l.customer_reference,
    l.end_to_end_id,
    l.remittance,
    l.counterparty_name,
    l.counterparty_account,
    l.transaction_code,
    l.entry_reference
from {{ source('files', 'bank_statement_lines') }} l
join {{ source('files', 'bank_statements') }} s on s.statement_uid = l.statement_uid
where l.superseded_by is null
