-- The ledger side of reconciliation.md: every payment the platform recorded as captured (a
-- refunding or refunded payment was captured too: the channel settles it and reports the refund
-- apart), or
-- that ended failed / cancelled (a channel line for those is status_mismatch),
-- with where it settles: 'psp' (a channel that sends the PSP settlement CSV), 'chain' (crypto
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
where p.status in ('success', 'refunding', 'partially_refunded', 'refunded', 'failed',
                   'cancelled')
