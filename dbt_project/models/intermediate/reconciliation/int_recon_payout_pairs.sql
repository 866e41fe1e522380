-- A PSP payout (int_recon_payouts) and the bank credit that carries its payout id (customer
-- reference equal to it, or the id as a whole token of the camt EndToEndId or the remittance
-- text (remittance_search: German MT940 subfields read apart): po_1 is not in "PAYOUT po_10";
-- macro recon_has_token): N:1 in reconciliation.md. The
-- credit must equal the sum of the payout's PSP lines (`expected_minor`), in the payout's
-- currency. Equal amounts and currencies make a payout_batch match; a different amount is a
-- payout_mismatch break, a different currency a currency_mismatch. Bank lines booked after the
-- run's day (var recon_as_of) are not seen.

select
    p.psp_line_id,
    p.channel,
    p.currency,
    p.payout_id,
    p.payout_minor,
    p.line_count,
    p.lines_net_minor,
    p.expected_minor,
    p.settlement_date,
    b.statement_line_id,
    b.amount_minor as bank_minor,
    b.currency as bank_currency,
    b.booking_date,
    b.account_id
from {{ ref('int_recon_payouts') }} as p
inner join {{ ref('stg_files__bank_statement_lines') }} as b
    on  b.amount_minor > 0
    and b.booking_date <= {{ recon_as_of() }}
    and (b.customer_reference = p.payout_id
         or {{ recon_has_token('b.end_to_end_id', 'p.payout_id') }}
         or {{ recon_has_token('b.remittance_search', 'p.payout_id') }})
