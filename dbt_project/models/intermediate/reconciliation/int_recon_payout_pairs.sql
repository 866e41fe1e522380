-- A PSP payout row (Clearhouse PSP settlement CSV) and the bank credit whose remittance carries
-- its payout id (camt EndToEndId, BAI2 customer reference, or the remittance text): N:1 in
-- reconciliation.md. Equal amounts make a payout_batch match, others a payout_mismatch break.

select
    p.psp_line_id,
    p.channel,
    p.currency,
    p.payout_id,
    p.gross_minor as payout_minor,
    p.settlement_date,
    b.statement_line_id,
    b.amount_minor as bank_minor,
    b.currency as bank_currency,
    b.booking_date
from {{ ref('stg_files__psp_lines') }} as p
inner join {{ ref('stg_files__bank_statement_lines') }} as b
    on  b.amount_minor > 0
    and (b.end_to_end_id = p.payout_id or b.customer_reference = p.payout_id
         or position(p.payout_id in coalesce(b.remittance, '')) > 0)
where p.format = 'psp_csv' and p.record_type = 'payout'
