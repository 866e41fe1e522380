-- The channel side: payment lines of the Clearhouse PSP settlement CSV (current files only),
-- each with the ledger payment its reference names (channel_reference on the same channel, else
-- the platform id in merchant_reference, also only of a payment on the line's channel) and its
-- rank among the lines naming the same payment (reconciliation.md: ledger -> PSP line is 1:1,
-- so the first line counts and the others are duplicates, however they name it). A line naming
-- no payment is ranked among the lines carrying the same raw channel reference. "First": the
-- earliest settlement day, then the earliest line of the file (line_number, not psp_line_id,
-- whose text puts line 10 before line 2).

with lines as (
    select * from {{ ref('stg_files__psp_lines') }}
    where format = 'psp_csv' and record_type = 'payment'
      -- a run for a past day sees the files of that day and before only
      and settlement_date <= {{ recon_as_of() }}
),

ledger as (
    select * from {{ ref('int_recon_ledger') }}
),

named as (
    select
        l.*,
        coalesce(pay_ref.payment_id, pay_id.payment_id) as named_payment_id
    from lines as l
    {{ recon_name_joins('ledger', 'payment_id', 'pay') }}
),

-- a channel reference a line ties to a payment (by the payment id it also carries) is that
-- payment's on the channel, also on a line carrying only the reference - settled again, a
-- duplicate_in_channel, not money the ledger does not know (the ledger may lack the reference:
-- the channel's answer never came back)
linked as (
    select channel, channel_reference, min(named_payment_id) as payment_id
    from named
    where named_payment_id is not null and channel_reference is not null
    group by channel, channel_reference
),

resolved as (
    select n.*, coalesce(n.named_payment_id, k.payment_id) as payment_id
    from named as n
    left join linked as k
        on k.channel = n.channel and k.channel_reference = n.channel_reference
)

select
    r.*,
    -- a payment (or an unknown reference) settled twice: the first line counts, the others
    -- are duplicates
    case
        when r.payment_id is not null
            then row_number() over (partition by r.payment_id
                                    order by r.settlement_date, r.line_number, r.psp_line_id)
        when r.channel_reference is null then 1
        else row_number() over (partition by r.channel, r.channel_reference, r.payment_id
                                order by r.settlement_date, r.line_number, r.psp_line_id)
    end as reference_rank
from resolved as r
