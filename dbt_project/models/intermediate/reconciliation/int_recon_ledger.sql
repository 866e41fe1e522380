-- The ledger side of reconciliation.md: every payment the platform recorded, whatever its
-- status, so that a channel line naming one always finds its ledger record (reconciliation.md:
-- missing_in_ledger is a line "with no ledger record"). `is_settled_in_ledger`: captured (a
-- refunding or refunded payment was captured too: the channel settles it and reports the refund
-- apart); failed / cancelled: a channel line for those is status_mismatch; `is_in_flight`: any
-- other status (initiated, processing, channel_calling, pending_callback, ...), a payment the
-- ledger has not yet seen succeed or fail. A channel line naming an in-flight payment is pending
-- (no break, counted in rpt_reconciliation_daily's pending) while the payment could still
-- complete: through its creation day + the channel's settlement window + var recon_grace_days,
-- as a captured payment with no line is pending; after that it is a status_mismatch of that
-- payment ("the ledger says failed ... the channel says settled"), first seen the day after, or
-- on the line's settlement day if later (fct_reconciliation_breaks). Once the ledger records the
-- success, the break resolves and the pair is an exact_reference match. An in-flight payment is
-- never a missing_in_channel nor a fuzzy candidate (nothing was captured), and the chain side
-- reads captured, failed and cancelled payments only, as before (int_recon_chain_pairs).
-- Each payment comes with where it settles: 'psp' (a channel that sends the PSP settlement CSV), 'chain' (crypto
-- and x402: a Transfer log) or 'internal' (wallets, agent tokens: nothing to reconcile).
-- expected_recipient: the address a chain payment's Transfer must go to - the x402 payTo of its
-- settled usage, else its channel's collection address (seed ref_chain_addresses: one per
-- channel, which the seed's tests keep true); NULL (no recipient check) for a chain channel
-- with neither.

with payments as (
    select * from {{ ref('stg_clearhouse__payments') }}
),

channels as (
    select * from {{ ref('stg_clearhouse__channels') }}
),

x402 as (
    select payment_id, pay_to, network from {{ ref('stg_clearhouse__x402_usage') }}
    where status = 'settled' and payment_id is not null
),

collection as (
    select channel_id, min(lower(address)) as address
    from {{ ref('ref_chain_addresses') }}
    group by channel_id
)

select
    p.payment_id,
    p.merchant_id,
    p.channel_id,
    p.channel_reference,
    p.currency,
    p.amount_minor,
    p.status,
    p.captured_at,
    cast(coalesce(p.captured_at, p.created_at) as date) as ledger_date,
    p.status in ('success', 'refunding', 'partially_refunded', 'refunded') as is_settled_in_ledger,
    coalesce(p.status not in ('success', 'refunding', 'partially_refunded', 'refunded', 'failed',
                              'cancelled'), true) as is_in_flight,
    case
        when c.channel_type in ('crypto', 'chain', 'x402') then 'chain'
        when c.channel_type in ('wallet', 'agent_token') or p.channel_id is null then 'internal'
        else 'psp'
    end as side,
    coalesce(c.settlement_window_days, 1) as settlement_window_days,
    coalesce(lower(x.pay_to), a.address) as expected_recipient
from payments as p
left join channels as c on c.channel_id = p.channel_id
left join x402 as x on x.payment_id = p.payment_id
left join collection as a on a.channel_id = p.channel_id
