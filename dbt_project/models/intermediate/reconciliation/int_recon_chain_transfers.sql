-- Transfer logs as reconciliation reads them: confirmed once the network's threshold is met
-- (var recon_chain_confirmations, default 10, Base's rule of thumb in serving/x402/networks.py).

select
    t.*,
    t.confirmations >= {{ var('recon_chain_confirmations', 10) }} as is_confirmed
from {{ ref('stg_files__chain_transfers') }} as t
