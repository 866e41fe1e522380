-- A PSP payout row (Clearhouse PSP settlement CSV) and the bank credit that carries its payout
-- id (customer reference equal to it, or the id as a whole token of the camt EndToEndId or the
-- remittance text: po_1 is not in "PAYOUT po_10"; macro recon_has_token): N:1 in
-- reconciliation.md. The credit must equal the sum of the payout's PSP lines, i.e. the net of
-- the lines (payments, refunds, ...) that carry its payout_id on the same channel; a payout row
-- with no such lines in the file stands for them with its own gross (`expected_minor`). Equal
-- amounts make a payout_batch match, others a payout_mismatch break.

with payouts as (
    select * from {{ ref('stg_files__psp_lines') }}
    where format = 'psp_csv' and record_type = 'payout'
),

payout_lines as (
    select channel, payout_id, count(*) as line_count,
           cast(sum(net_minor) as {{ money_type() }}) as lines_net_minor
    from {{ ref('stg_files__psp_lines') }}
    where format = 'psp_csv' and record_type <> 'payout' and payout_id is not null
    group by channel, payout_id
)

select
    p.psp_line_id,
    p.channel,
    p.currency,
    p.payout_id,
    p.gross_minor as payout_minor,
    coalesce(pl.line_count, 0) as line_count,
    pl.lines_net_minor,
    cast(coalesce(pl.lines_net_minor, p.gross_minor) as {{ money_type() }}) as expected_minor,
    p.settlement_date,
    b.statement_line_id,
    b.amount_minor as bank_minor,
    b.currency as bank_currency,
    b.booking_date
from payouts as p
left join payout_lines as pl on pl.channel = p.channel and pl.payout_id = p.payout_id
inner join {{ ref('stg_files__bank_statement_lines') }} as b
    on  b.amount_minor > 0
    and (b.customer_reference = p.payout_id
         or {{ recon_has_token('b.end_to_end_id', 'p.payout_id') }}
         or {{ recon_has_token('b.remittance', 'p.payout_id') }})
