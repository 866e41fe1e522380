-- Fuzzy pairs (reconciliation.md step 3): a PSP line with no reference to a ledger payment,
-- and a settled ledger payment on the same channel with no line of its own, same currency and
-- amount, the line's value date (its payout date, else its settlement day: when the channel
-- settled it, not when the card was charged) within the channel's settlement window T+0..T+N,
-- i.e. [capture day, capture day + settlement_window_days].
-- line_candidates / payment_candidates count the partners each side has. Only the first line
-- carrying a raw channel reference takes part: a second one is duplicate_in_channel.
-- "No reference" (match order 3): no reference of the pair contradicts the other side. A line
-- carrying a platform id (merchant_reference) that names no payment of its channel says it is
-- another payment than any candidate: never fuzzy. A line carrying a channel reference that names
-- nothing pairs only with a payment the ledger has no channel_reference for (the channel's id
-- never came back); with a payment whose own channel_reference differs the channel says they are
-- two transactions, so the line is missing_in_ledger and the payment, once due,
-- missing_in_channel. A line with neither reference (blank; the PSP CSV loader refuses such a
-- payment row, another adapter may not) pairs with any payment. A blank reference is none.

with lines as (
    select * from {{ ref('int_recon_psp_payment_lines') }}
    where payment_id is null and reference_rank = 1
      and nullif(trim(merchant_reference), '') is null
),

ledger as (
    select g.* from {{ ref('int_recon_ledger') }} as g
    where g.side = 'psp' and g.is_settled_in_ledger
      and not exists (select 1 from {{ ref('int_recon_psp_payment_lines') }} as l
                      where l.payment_id = g.payment_id)
),

pairs as (
    select
        l.psp_line_id,
        l.channel,
        l.channel_reference,
        l.currency,
        l.gross_minor,
        l.settlement_date,
        l.line_number,
        coalesce(l.payout_date, l.settlement_date) as value_date,
        g.payment_id,
        g.ledger_date
    from lines as l
    inner join ledger as g
        on  g.channel_id = l.channel
        and g.currency = l.currency
        and g.amount_minor = l.gross_minor
        and coalesce(l.payout_date, l.settlement_date) between g.ledger_date
            and g.ledger_date + g.settlement_window_days
        and (nullif(trim(l.channel_reference), '') is null
             or nullif(trim(g.channel_reference), '') is null)
)

select
    *,
    count(*) over (partition by psp_line_id) as line_candidates,
    count(*) over (partition by payment_id) as payment_candidates
from pairs
