-- reconciliation.md, match order: 1. exact reference (ledger payment <-> PSP line, 1:1),
-- 2. payout batch (a PSP payout <-> the bank credit whose remittance carries its id, N:1: the
-- credit equals the net of the payout's lines, int_recon_payout_pairs),
-- chain (crypto and x402 payment <-> Transfer log by transaction hash, recipient, value),
-- 3. fuzzy (no reference: same channel, currency and amount, the line inside the channel's
-- settlement window, exactly one candidate either way; and a payout no bank credit names <-> an
-- unreferenced credit of its expected amount inside its window, int_recon_payout_fuzzy_candidates,
-- payment_id NULL as on a payout_batch row). Refunds match their channel's refund
-- line by reference the same way (exact_reference, refund_id set; amount_minor is the line's
-- signed gross, negative). A pair that differs in amount,
-- currency or status is a break, not a match (fct_reconciliation_breaks): it counts in no
-- matched_count / match_rate. A chargeback row matches the payment it names once: the same row
-- re-sent on a later file is duplicate_in_channel (int_recon_psp_chargeback_lines.repeat_rank).
-- A line naming a payment the ledger has in flight is no match until the ledger says success.

with lines as (
    select * from {{ ref('int_recon_psp_payment_lines') }}
),

ledger as (
    select * from {{ ref('int_recon_ledger') }}
),

exact as (
    select
        {{ clearhouse.recon_psp_line_match('g.payment_id', 'cast(null as varchar(40))') }}
    from lines as l
    inner join ledger as g on g.payment_id = l.payment_id
    where l.reference_rank = 1 and g.is_settled_in_ledger
      and g.currency = l.currency and g.amount_minor = l.gross_minor
),

refunds as (
    select
        {{ clearhouse.recon_psp_line_match('r.payment_id', 'r.refund_id') }}
    from {{ ref('int_recon_psp_refund_lines') }} as l
    inner join {{ ref('int_recon_refunds') }} as r on r.refund_id = l.refund_id
    where l.reference_rank = 1 and r.is_settled_in_ledger
      and r.currency = l.currency and r.amount_minor = 0 - l.gross_minor
),

-- A chargeback naming a captured payment of its channel, in its currency, taking back no more
-- than the payment (amount_minor: the line's signed gross, negative); the first of its repeats
chargebacks as (
    select
        {{ clearhouse.recon_psp_line_match('g.payment_id', 'cast(null as varchar(40))') }}
    from {{ ref('int_recon_psp_chargeback_lines') }} as l
    inner join ledger as g on g.payment_id = l.payment_id
    where l.repeat_rank = 1 and g.is_settled_in_ledger and g.currency = l.currency
      and 0 - l.gross_minor <= g.amount_minor
),

-- a payout and its bank credit: by the id the credit carries (int_recon_payout_pairs), else by
-- amount inside the window, one candidate each way (int_recon_payout_fuzzy_candidates)
payout_credits as (
    select 'payout_batch' as match_type, psp_line_id, statement_line_id, channel, currency,
           payout_id, bank_minor, booking_date
    from {{ ref('int_recon_payout_pairs') }}
    where bank_minor = expected_minor and bank_currency = currency and credit_rank = 1
    union all
    select 'fuzzy', psp_line_id, statement_line_id, channel, currency,
           payout_id, bank_minor, booking_date
    from {{ ref('int_recon_payout_fuzzy_candidates') }}
    where credit_candidates = 1 and payout_candidates = 1
),

payout_matches as (
    select
        match_type,
        match_type || ':' || psp_line_id || ':' || statement_line_id as match_key,
        channel,
        currency,
        cast(null as varchar(40)) as payment_id,
        payout_id as channel_reference,
        statement_line_id,
        cast(null as varchar(66)) as chain_tx_hash,
        bank_minor as amount_minor,
        booking_date as matched_on,
        psp_line_id,
        cast(null as varchar(40)) as refund_id
    from payout_credits
),

-- a payment's first fully matching Transfer log (int_recon_chain_pairs: a later one in the same
-- transaction is a duplicate_in_channel break)
chain as (
    select
        'chain' as match_type,
        'chain:' || p.transaction_hash || ':' || cast(p.log_index as varchar(10)) as match_key,
        p.channel_id as channel,
        p.currency,
        p.payment_id,
        p.channel_reference,
        cast(null as varchar(200)) as statement_line_id,
        p.transaction_hash as chain_tx_hash,
        p.amount_minor,
        cast(p.observed_at as date) as matched_on,
        cast(null as varchar(200)) as psp_line_id,
        cast(null as varchar(40)) as refund_id
    from {{ ref('int_recon_chain_pairs') }} as p
    where p.is_settled_in_ledger and p.is_full_match and p.transfer_rank = 1
),

fuzzy as (
    select
        'fuzzy' as match_type,
        'fuzzy:' || c.psp_line_id as match_key,
        c.channel,
        c.currency,
        c.payment_id,
        c.channel_reference,
        cast(null as varchar(200)) as statement_line_id,
        cast(null as varchar(66)) as chain_tx_hash,
        c.gross_minor as amount_minor,
        c.settlement_date as matched_on,
        c.psp_line_id,
        cast(null as varchar(40)) as refund_id
    from {{ ref('int_recon_fuzzy_candidates') }} as c
    where c.line_candidates = 1 and c.payment_candidates = 1
),

matches as (
    select * from exact
    union all select * from refunds
    union all select * from chargebacks
    union all select * from payout_matches
    union all select * from chain
    union all select * from fuzzy
)

select
    md5(match_key) as match_id,
    match_type,
    channel,
    currency,
    payment_id,
    channel_reference,
    statement_line_id,
    chain_tx_hash,
    cast(amount_minor as {{ money_type() }}) as amount_minor,
    matched_on,
    psp_line_id,
    refund_id
from matches
