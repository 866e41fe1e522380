-- The ledger's refunds of payments that settle through a PSP (reconciliation.md: the ledger is
-- payments, refunds and payouts). A refund settles apart from its payment: the channel reports
-- it as its own `refund` line (negative gross). Chain and internal payments' refunds are not
-- reported by a channel file and are left out. Succeeded refunds should have a line; a line for
-- a failed refund is a status_mismatch.
select
    r.refund_id,
    r.payment_id,
    g.channel_id,
    r.channel_reference,
    r.currency,
    r.amount_minor,
    r.status,
    cast(coalesce(r.succeeded_at, r.created_at) as date) as ledger_date,
    r.status = 'succeeded' as is_settled_in_ledger,
    g.settlement_window_days
from {{ ref('stg_clearhouse__refunds') }} as r
join {{ ref('int_recon_ledger') }} as g on g.payment_id = r.payment_id
where g.side = 'psp' and r.status in ('succeeded', 'failed')
