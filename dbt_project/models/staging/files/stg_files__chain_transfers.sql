-- One row per Transfer log; a later `removed: true` copy of the same log marks it reorged.
-- Confirmations count the log's own block: newest block seen on the network - block + 1.
with logs as (
    select * from {{ source('files', 'chain_logs') }}
),

heads as (
    select network, max(latest_block) as latest_block
    from {{ source('files', 'chain_heads') }}
    group by network
),

removed as (
    select distinct network, transaction_hash, log_index
    from logs
    where removed
)

select
    l.chain_log_id,
    l.file_id,
    l.network,
    l.block_number,
    l.block_hash,
    l.block_timestamp,
    l.transaction_hash,
    l.log_index,
    l.token_address,
    l.from_address,
    l.to_address,
    l.value_text,
    cast(l.value_minor as {{ money_type() }}) as value_minor,
    r.transaction_hash is not null as is_reorged,
    greatest(coalesce(h.latest_block, l.block_number) - l.block_number + 1, 0) as confirmations
from logs l
left join removed r
    on r.network = l.network and r.transaction_hash = l.transaction_hash
    and r.log_index = l.log_index
left join heads h on h.network = l.network
where not l.removed
