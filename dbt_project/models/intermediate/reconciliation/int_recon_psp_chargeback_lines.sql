-- The channel's chargebacks: `chargeback` rows of the Clearhouse PSP settlement CSV (current
-- files only; gross negative), each with the ledger payment its reference names, as a payment
-- line does: the payment's channel_reference on the same channel, else the platform's payment
-- id in merchant_reference, also only of a payment on the line's channel. The ledger keeps no
-- chargeback record of its own (settlement statements take them from these rows), so a
-- chargeback reconciles against its payment: a match (exact_reference) when it names a
-- captured payment of its currency and takes back at most its amount, a break otherwise
-- (fct_reconciliation_breaks). A payment may be charged back more than once (a second
-- chargeback after a representment): no duplicate ranking. `fee_adjustment` rows name no
-- payment and are not reconciled line by line (their net is in their payout's total).

with lines as (
    select * from {{ ref('stg_files__psp_lines') }}
    where format = 'psp_csv' and record_type = 'chargeback'
      and settlement_date <= {{ recon_as_of() }}  -- a past day's run: that day's files
),

ledger as (
    select * from {{ ref('int_recon_ledger') }} where side = 'psp'
)

select
    l.*,
    coalesce(pay_ref.payment_id, pay_id.payment_id) as payment_id
from lines as l
{{ recon_name_joins('ledger', 'payment_id', 'pay') }}
