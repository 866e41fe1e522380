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
    -- The text the payout matcher searches for a payout id (int_recon_payout_pairs). German
    -- structured MT940 :86: (`166?00GUTSCHRIFT?20SVWZ+PAYOUT?21po_1?32NAME`) packs its fields
    -- behind `?NN` markers, which a tokenizer would glue to the next word (`21po_1`): the purpose
    -- is searched with each marker read as a space, and also with the markers taken out, since
    -- banks wrap the 27-character purpose subfields anywhere (`?21po_?221` is `po_1`).
    case when substr(l.remittance, 4, 1) = '?'
              and translate(substr(l.remittance, 1, 3), '0123456789', '') = ''
              and length(l.remittance) > 4
         then regexp_replace(l.remittance, '[?][0-9][0-9]', ' ', 'g') || ' '
              || regexp_replace(l.remittance, '[?][0-9][0-9]', '', 'g')
         else l.remittance
    end as remittance_search,
    l.counterparty_name,
    l.counterparty_account,
    l.transaction_code,
    l.entry_reference
from {{ source('files', 'bank_statement_lines') }} l
join {{ source('files', 'bank_statements') }} s on s.statement_uid = l.statement_uid
where l.superseded_by is null
