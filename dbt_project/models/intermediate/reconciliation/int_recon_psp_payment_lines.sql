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

resolved as (
    select
        l.*,
        coalesce(pay_ref.payment_id, pay_id.payment_id) as payment_id
    from lines as l
    {{ recon_name_joins('ledger', 'payment_id', 'pay') }}
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
