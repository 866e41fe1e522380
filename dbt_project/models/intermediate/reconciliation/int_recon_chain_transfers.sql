-- Transfer logs as reconciliation reads them: confirmed once the network's threshold is met
-- (`confirmations_required`: seed ref_chain_networks, e.g. Base 10, Ethereum mainnet 12; a
-- network it does not list takes var recon_chain_confirmations, default 10),
-- with the asset their token contract is (seed ref_chain_tokens; NULL for a contract we do not
-- know, which then matches no payment). A run for a past day (var recon_as_of) sees the logs of
-- blocks up to that day only (a log without its block's time: loaded by that day).

-- One log, several blocks: two polls of eth_getLogs that straddle a reorg see the same log
-- (transaction, log index) in the block it left and in the block it was mined again in, and
-- never a removal. A transaction is in one block of the canonical chain: the copy seen last (the
-- latest loaded file, then the higher block) is the log, the others are reorged - as if their
-- removal had arrived. Decided among the logs this run sees, so a past day's replay gives what
-- that day gave.

with visible as (
    select *
    from {{ ref('stg_files__chain_transfers') }}
    where cast(observed_at as date) <= {{ recon_as_of() }}
),

ranked as (
    select
        v.*,
        row_number() over (partition by v.network, v.transaction_hash, v.log_index
                           order by v.loaded_at desc nulls last, v.block_number desc,
                                    v.chain_log_id desc) as copy_rank
    from visible as v
)

select
    t.chain_log_id,
    t.file_id,
    t.network,
    t.block_number,
    t.block_hash,
    t.block_timestamp,
    t.observed_at,
    t.loaded_at,
    t.transaction_hash,
    t.log_index,
    t.token_address,
    t.from_address,
    t.to_address,
    t.value_text,
    t.value_minor,
    t.is_reorged or t.copy_rank > 1 as is_reorged,
    t.copy_rank,
    t.confirmations,
    coalesce(n.confirmations, {{ var('recon_chain_confirmations', 10) }}) as confirmations_required,
    t.confirmations >= coalesce(n.confirmations, {{ var('recon_chain_confirmations', 10) }})
        as is_confirmed,
    k.asset
from ranked as t
left join {{ ref('ref_chain_tokens') }} as k
    on k.network = t.network and lower(k.token_address) = lower(t.token_address)
left join {{ ref('ref_chain_networks') }} as n on n.network = t.network
