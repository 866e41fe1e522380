-- The bank credits reconciliation counts (reconciliation.md: "the bank statement shows one credit
-- per payout"): current positive lines booked by the run's day (var recon_as_of), each credit once.
-- int_recon_payout_pairs pairs payouts with them; fct_reconciliation_breaks looks among them for
-- payout credits nobody knows.
-- Booked only: a camt PDNG/FUTR line ('pending') or INFO line and a BAI2 non-monetary line
-- ('info') is no money received (status as the loader writes it; the camt code 'BOOK' itself
-- is read the same).
-- Once: the loader keeps a camt.054 notification and a camt.052 / MT942 intraday report current
-- next to the end-of-day statement (camt.053, MT940, BAI2) - its supersession key holds the
-- message type - and intraday reports may repeat each other. A line of a notification or
-- intraday report is left out when another statement has the same credit: same account,
-- amount, currency and booking day, and the same bank reference when both lines carry one,
-- else a shared entry reference, EndToEndId or customer reference; the end-of-day line is kept,
-- else the first report's (by statement_uid). End-of-day lines are never left out, so two
-- genuine credits of one payout stay two (the second a duplicate_in_channel).

with credits as (
    select
        b.*,
        coalesce(b.message_type in ('camt.052', 'camt.054', 'mt942'), false) as is_interim
    from {{ ref('stg_files__bank_statement_lines') }} as b
    where b.amount_minor > 0
      and lower(b.status) in ('booked', 'book')
      and b.booking_date <= {{ recon_as_of() }}
)

select c.*
from credits as c
where not (c.is_interim and exists (
    select 1 from credits as o
    where o.statement_uid <> c.statement_uid
      and (not o.is_interim or o.statement_uid < c.statement_uid)
      and o.account_id = c.account_id
      and o.amount_minor = c.amount_minor
      and o.currency = c.currency
      and o.booking_date = c.booking_date
      and case when o.bank_reference is not null and c.bank_reference is not null
               then o.bank_reference = c.bank_reference
               else o.entry_reference = c.entry_reference
                    or o.end_to_end_id = c.end_to_end_id
                    or o.customer_reference = c.customer_reference
          end))
