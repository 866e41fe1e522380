-- One row per Transfer log; a later `removed: true` copy of the same log (same block) marks it
-- reorged. (A log seen again in another block with no removal - eth_getLogs never reports one -
-- is superseded in int_recon_chain_transfers, among the logs a run may see.)
-- loaded_at: when the file that brought the log was loaded.
-- Confirmations count the log's own block: newest block seen on the network - block + 1.
-- observed_at: when the log happened as far as we know - its block's time, else (formats that do
-- not carry it: an eth_getLogs answer, ethereum-etl's logs.csv) when the file bringing it was
-- loaded; reconciliation dates the log by it (a log with no date would match nothing).
with logs as (
    select * from {{ source('files', 'chain_logs') }}
),

heads as (
    select network, max(latest_block) as latest_block
    from {{ source('files', 'chain_heads') }}
    group by network
),

loaded as (
    select file_id, network, min(seen_at) as seen_at
    from {{ source('files', 'chain_heads') }}
    group by file_id, network
)

select
    l.chain_log_id,
    l.file_id,
    l.network,
    l.block_number,
    l.block_hash,
    l.block_timestamp,
    coalesce(l.block_timestamp, s.seen_at) as observed_at,
    s.seen_at as loaded_at,
    l.transaction_hash,
    l.log_index,
    l.token_address,
    l.from_address,
    l.to_address,
    l.value_text,
    cast(l.value_minor as {{ money_type() }}) as value_minor,
    -- a removal names the block it took the log out of: a transaction mined again in another
    -- block after a reorg is a log of its own, not reorged
    exists (select 1 from logs as r
            where r.removed and r.network = l.network
              and r.transaction_hash = l.transaction_hash and r.log_index = l.log_index
              and r.block_number = l.block_number
              and (r.block_hash is null or l.block_hash is null or r.block_hash = l.block_hash))
        as is_reorged,
    greatest(coalesce(h.latest_block, l.block_number) - l.block_number + 1, 0) as confirmations
from logs l
left join heads h on h.network = l.network
left join loaded s on s.file_id = l.file_id and s.network = l.network
where not l.removed
