-- The channel's chargebacks: `chargeback` rows of the Clearhouse PSP settlement CSV (current
-- files only; gross negative), each with the ledger payment its reference names, as a payment
-- line does: the payment's channel_reference on the same channel, else the platform's payment
-- id in merchant_reference, also only of a payment on the line's channel. The ledger keeps no
-- chargeback record of its own (settlement statements take them from these rows), so a
-- chargeback reconciles against its payment: a match (exact_reference) when it names a
-- captured payment of its currency and takes back at most its amount, a break otherwise
-- (fct_reconciliation_breaks). A payment may be charged back more than once (a second
-- chargeback after a representment, at another transaction time): each is a chargeback. But
-- the same chargeback row again - same channel, channel reference, gross, currency and
-- transaction_at (and the same payment named; for a row naming none, the same
-- merchant_reference) - on a later day's file (or twice in one) is the channel reference settled
-- twice: `repeat_rank` orders such rows (earliest settlement day, then line_number, as
-- int_recon_psp_payment_lines ranks payment lines; int_settlement_items books the first once
-- the same way); rank 1 is the chargeback (matched or broken as above), a later one
-- duplicate_in_channel. `fee_adjustment` rows name no payment and are not reconciled line by
-- line (their net is in their payout's total).

with lines as (
    select * from {{ ref('stg_files__psp_lines') }}
    where format = 'psp_csv' and record_type = 'chargeback'
      and settlement_date <= {{ recon_as_of() }}  -- a past day's run: that day's files
),

ledger as (
    select * from {{ ref('int_recon_ledger') }} where side = 'psp'
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
    row_number() over (
        partition by r.payment_id, r.channel, r.channel_reference, r.gross_minor, r.currency,
                     r.transaction_at,
                     case when r.payment_id is null then r.merchant_reference end
        order by r.settlement_date, r.line_number, r.psp_line_id) as repeat_rank
from resolved as r
