-- A chain payment (crypto, x402: int_recon_ledger side 'chain') and each Transfer log of its
-- transaction (reconciliation.md: "A chain payment matches a Transfer log by transaction hash,
-- with `to` = the merchant's pay-to address, `value` = amount and token contract = asset").
-- `is_full_match`: the log is confirmed, not reorged, and its value, asset (from its token
-- contract) and recipient (when one is expected) are the payment's. A transaction may carry
-- several such logs: `transfer_rank` orders them (block, then log index). The first is the
-- payment's Transfer; a later one is the payment's channel reference (its transaction hash)
-- settled again - money received twice - a duplicate_in_channel break
-- (fct_reconciliation_breaks), never a second match: ledger -> channel is 1:1. Payments the
-- ledger has in flight (int_recon_ledger.is_in_flight) are left out, as they were before the
-- ledger side listed them: their logs raise nothing yet (and, their hash being a payment's
-- reference, are no missing_in_ledger either).

with pairs as (
    select
        g.payment_id,
        g.channel_id,
        g.currency,
        g.amount_minor,
        g.channel_reference,
        g.is_settled_in_ledger,
        g.expected_recipient,
        t.transaction_hash,
        t.log_index,
        t.block_number,
        t.block_timestamp,
        t.observed_at,
        t.to_address,
        t.asset,
        t.value_minor,
        t.is_reorged,
        t.copy_rank,
        t.is_confirmed,
        (not t.is_reorged and t.is_confirmed
         and t.value_minor = g.amount_minor
         and coalesce(t.asset, '') = g.currency
         and (g.expected_recipient is null or g.expected_recipient = t.to_address))
            as is_full_match
    from {{ ref('int_recon_ledger') }} as g
    inner join {{ ref('int_recon_chain_transfers') }} as t
        on t.transaction_hash = lower(g.channel_reference)
    where g.side = 'chain' and not g.is_in_flight
)

select
    *,
    case when is_full_match
         then row_number() over (partition by payment_id, is_full_match
                                 order by block_number, log_index)
    end as transfer_rank
from pairs
