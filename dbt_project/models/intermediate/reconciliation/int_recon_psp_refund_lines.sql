-- The channel side of refunds: `refund` lines of the Clearhouse PSP settlement CSV (current
-- files only), each with the ledger refund its reference names (the refund's channel_reference
-- on the same channel, else the platform's refund id in merchant_reference, also only of a
-- refund on the line's channel) and its rank among the lines naming the same refund (1:1: a
-- second one is a duplicate; a line naming no refund is ranked among the lines carrying the
-- same raw channel reference). A line naming no ledger refund may name a payment of its channel
-- instead (its channel reference, or its id in merchant_reference): `named_payment_id`, for the
-- status_mismatch "the channel says refunded".
with lines as (
    select * from {{ ref('stg_files__psp_lines') }}
    where format = 'psp_csv' and record_type = 'refund'
      and settlement_date <= {{ recon_as_of() }}  -- a past day's run: that day's files
),

refunds as (
    select * from {{ ref('int_recon_refunds') }}
),

payments as (
    select payment_id, channel_id, channel_reference from {{ ref('int_recon_ledger') }}
    where side = 'psp'
),

resolved as (
    select
        l.*,
        coalesce(ref_ref.refund_id, ref_id.refund_id) as refund_id,
        coalesce(ref_ref.payment_id, ref_id.payment_id) as payment_id,
        case when ref_ref.refund_id is null and ref_id.refund_id is null
             then coalesce(pay_ref.payment_id, pay_id.payment_id) end as named_payment_id
    from lines as l
    {{ recon_name_joins('refunds', 'refund_id', 'ref') }}
    {{ recon_name_joins('payments', 'payment_id', 'pay') }}
)

select
    r.*,
    case
        when r.refund_id is not null
            then row_number() over (partition by r.refund_id
                                    order by r.settlement_date, r.line_number, r.psp_line_id)
        when r.channel_reference is null then 1
        else row_number() over (partition by r.channel, r.channel_reference, r.refund_id
                                order by r.settlement_date, r.line_number, r.psp_line_id)
    end as reference_rank
from resolved as r
