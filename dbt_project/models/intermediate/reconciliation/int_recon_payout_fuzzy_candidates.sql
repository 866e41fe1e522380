-- Fuzzy pairs of a PSP payout and a bank credit (reconciliation.md match order 3, "no
-- reference": same currency and amount, value date within the channel's settlement window,
-- exactly one candidate -> matched, marked fuzzy; two or more -> an ambiguous break listing
-- them). A payout no credit carries the id of (int_recon_payout_pairs found none), and a booked
-- credit (int_recon_bank_credits) that carries no payout id at all: a credit naming a payout
-- the files do not know says it is another payout (missing_in_ledger in
-- fct_reconciliation_breaks), never a fuzzy partner. The credit equals what the payout's
-- credit must be (`expected_minor`, the net of its lines), in its currency, and is valued
-- (value date, else booking day) from the payout's settlement day up to its value date or the
-- end of the channel's window T+0..T+N, whichever is later.
-- credit_candidates / payout_candidates count the partners each side has.

{% set prefix = var("recon_payout_id_prefix", "po_") %}

with payouts as (
    select p.* from {{ ref('int_recon_payouts') }} as p
    where p.payout_minor > 0
      and not exists (select 1 from {{ ref('int_recon_payout_pairs') }} as pp
                      where pp.psp_line_id = p.psp_line_id)
),

credits as (
    select b.* from {{ ref('int_recon_bank_credits') }} as b
    where not exists (select 1 from {{ ref('int_recon_payout_pairs') }} as pp
                      where pp.statement_line_id = b.statement_line_id)
      and position(' {{ prefix }}' in lower({{ recon_tokens(
            "coalesce(b.customer_reference, '') || ' ' || coalesce(b.end_to_end_id, '') || ' '"
            " || coalesce(b.remittance_search, '')") }})) = 0
),

pairs as (
    select
        p.psp_line_id,
        p.channel,
        p.currency,
        p.payout_id,
        p.payout_rank,
        p.expected_minor,
        p.settlement_date,
        b.statement_line_id,
        b.amount_minor as bank_minor,
        b.booking_date,
        coalesce(b.value_date, b.booking_date) as value_date
    from payouts as p
    inner join credits as b
        on  b.currency = p.currency
        and b.amount_minor = p.expected_minor
        and coalesce(b.value_date, b.booking_date) between p.settlement_date
            and greatest(p.due_date, p.settlement_date + p.settlement_window_days)
)

select
    *,
    count(*) over (partition by psp_line_id) as credit_candidates,
    count(*) over (partition by statement_line_id) as payout_candidates
from pairs
