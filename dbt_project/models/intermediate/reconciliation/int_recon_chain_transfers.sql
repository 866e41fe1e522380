-- Transfer logs as reconciliation reads them: confirmed once the network's threshold is met
-- (`confirmations_required`: seed ref_chain_networks, e.g. Base 10, Ethereum mainnet 12; a
-- network it does not list takes var recon_chain_confirmations, default 10),
-- with the asset their token contract is (seed ref_chain_tokens; NULL for a contract we do not
-- know, which then matches no payment). A run for a past day (var recon_as_of) sees the logs of
-- blocks up to that day only (a log without its block's time: loaded by that day).

select
    t.*,
    coalesce(n.confirmations, {{ var('recon_chain_confirmations', 10) }}) as confirmations_required,
    t.confirmations >= coalesce(n.confirmations, {{ var('recon_chain_confirmations', 10) }})
        as is_confirmed,
    k.asset
from {{ ref('stg_files__chain_transfers') }} as t
left join {{ ref('ref_chain_tokens') }} as k
    on k.network = t.network and lower(k.token_address) = lower(t.token_address)
left join {{ ref('ref_chain_networks') }} as n on n.network = t.network
where cast(t.observed_at as date) <= {{ recon_as_of() }}
