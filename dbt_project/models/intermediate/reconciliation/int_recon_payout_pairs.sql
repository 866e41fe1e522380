-- A PSP payout (int_recon_payouts) and the bank credit that carries its payout id (customer
-- reference equal to it, or the id as a whole token of the camt EndToEndId or the remittance
-- text (remittance_search: German MT940 subfields read apart): po_1 is not in "PAYOUT po_10";
-- macro recon_has_token): N:1 in reconciliation.md. References are compared case-blind: banks
-- upper-case remittance text (`:86:PSP PAYOUT PO_1` carries po_1). The
-- credit must equal the sum of the payout's PSP lines (`expected_minor`), in the payout's
-- currency. Equal amounts and currencies make a payout_batch match; a different amount is a
-- payout_mismatch break, a different currency a currency_mismatch. Only booked credits, each
-- once, booked by the run's day (var recon_as_of), are seen (int_recon_bank_credits): a pending
-- line or a notification repeating the statement's credit is no second credit.
-- reconciliation.md: "one credit per payout". `credit_rank` orders the credits carrying one
-- payout (booking day, then line): the first is the payout's credit; a later one is the payout
-- paid twice, a duplicate_in_channel break (fct_reconciliation_breaks), never a second match.

with pairs as (
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
        p.payout_rank,
        b.statement_line_id,
        b.amount_minor as bank_minor,
        b.currency as bank_currency,
        b.booking_date,
        b.account_id
    from {{ ref('int_recon_payouts') }} as p
    inner join {{ ref('int_recon_bank_credits') }} as b
        on  (lower(b.customer_reference) = lower(p.payout_id)
             or {{ recon_has_token('lower(b.end_to_end_id)', 'lower(p.payout_id)') }}
             or {{ recon_has_token('lower(b.remittance_search)', 'lower(p.payout_id)') }})
)

select
    *,
    row_number() over (partition by psp_line_id
                       order by booking_date, statement_line_id) as credit_rank
from pairs
