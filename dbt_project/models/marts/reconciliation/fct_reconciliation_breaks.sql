-- reconciliation.md: one row per break, with a stable id (md5 of its type and the keys of the
-- sides involved: the same inputs give the same ids on every run), the amounts, the delta
-- (channel - ledger), first_seen (the day the break could first be seen: the line's settlement
-- day, the bank booking day, the block day, or for missing_in_channel the first day it is shown:
-- the day after the channel's settlement window plus var recon_grace_days ran out, i.e. capture
-- day + window + grace + 1), age_days against var recon_as_of (default: today, UTC). Up to and
-- including capture day + window + grace a ledger payment with no channel line is pending
-- (rpt_reconciliation_daily counts it), not a break. Refunds of PSP payments reconcile against
-- the channel's refund lines the same way (refund_id set; amounts signed as the channel reports
-- them, so a refund's ledger amount is negative too). A line naming a payment the ledger has in
-- flight (int_recon_ledger.is_in_flight: not yet success, failed or cancelled) is pending through
-- the payment's creation day + window + grace, then status_mismatch (reference_breaks below).
-- Incremental: the model keeps every break it has seen. Each run recomputes the open ones from
-- the current inputs (keeping their first_seen); one that no longer shows is marked resolved,
-- with the day (resolved_at = recon_as_of) and what resolved it (the match that now covers its
-- payment or reference, else 'data_changed'), and stays. A break that shows again reopens.
-- `dbt build --full-refresh` forgets the history.

{% set as_of = recon_as_of() %}
{% set grace = var('recon_grace_days', 1) %}

{{ config(materialized='incremental', unique_key='break_id',
          on_schema_change='append_new_columns') }}
{#- refund_id and psp_line_id came later: a table built before them lacks those columns yet
    (append_new_columns adds them, at the end, on the next run) -#}
{% set previous_columns = (adapter.get_columns_in_relation(this) | map(attribute='name')
    | map('lower') | list) if is_incremental() else [] %}
{% set previous_refund_id = 'p.refund_id' if 'refund_id' in previous_columns
    else 'cast(null as varchar(40))' %}
{% set previous_psp_line_id = 'p.psp_line_id' if 'psp_line_id' in previous_columns
    else 'cast(null as varchar(200))' %}

with ledger as (
    select * from {{ ref('int_recon_ledger') }}
),

lines as (
    select * from {{ ref('int_recon_psp_payment_lines') }}
),

matches as (
    select * from {{ ref('fct_reconciliation_matches') }}
),

fuzzy as (
    select * from {{ ref('int_recon_fuzzy_candidates') }}
),

transfers as (
    select * from {{ ref('int_recon_chain_transfers') }}
),

chargeback_lines as (
    select * from {{ ref('int_recon_psp_chargeback_lines') }}
),

channel_prices as (
    select * from {{ ref('stg_clearhouse__prices') }} where subject_type = 'channel'
),

referenced as (
    select l.*, g.amount_minor as ledger_minor, g.currency as ledger_currency,
           g.is_settled_in_ledger, g.status as ledger_status, g.is_in_flight,
           -- a payment in flight could still complete through this day (int_recon_ledger)
           g.ledger_date + g.settlement_window_days + {{ grace }} as in_flight_until
    from lines as l
    inner join ledger as g on g.payment_id = l.payment_id
),

-- A line naming a ledger record is keyed by that record and the line's rank among the lines
-- naming it ('payment:<id>', 'payment:<id>:2' for the first duplicate), not by its psp_line_id,
-- which names the file version: a corrected file re-sent under its name leaves a break it still
-- shows with its id (reconciliation.md: "a stable id").
-- The first line naming a payment the ledger has in flight (int_recon_ledger.is_in_flight) is
-- pending while the payment could still complete (through in_flight_until), then
-- status_mismatch - the channel settled what the ledger has not seen succeed - first seen the
-- day after, or on the line's day if later; the same id as the status_mismatch of a payment
-- that then fails, and resolved by the match once the ledger says success. A later line naming
-- it is duplicate_in_channel at once, whatever the payment's status.
reference_breaks as (
    select
        case
            when reference_rank > 1 then 'duplicate_in_channel'
            when not is_settled_in_ledger then 'status_mismatch'
            when currency <> ledger_currency then 'currency_mismatch'
            else 'amount_mismatch'
        end as break_type,
        {{ recon_record_key("'payment:' || payment_id", 'reference_rank') }} as break_key,
        channel, currency, payment_id, channel_reference,
        cast(null as varchar(200)) as statement_line_id,
        cast(null as varchar(66)) as chain_tx_hash,
        ledger_minor, gross_minor as channel_minor,
        case when reference_rank = 1 and is_in_flight
             then greatest(settlement_date, in_flight_until + 1)
             else settlement_date end as first_seen,
        cast(null as varchar(2000)) as candidates,
        psp_line_id
    from referenced
    where reference_rank > 1
       or (is_in_flight and in_flight_until + 1 <= {{ as_of }})
       or (not is_in_flight and (not is_settled_in_ledger or currency <> ledger_currency
                                 or gross_minor <> ledger_minor))
),

-- fee_mismatch: every payment line matched to a ledger payment, by reference (the first line
-- naming it, same currency) or fuzzy, against the channel price in force when it was transacted.
-- Refund lines are not checked: no price prices a refund (the channels keep the payment's fee).
fee_checked as (
    select r.psp_line_id, r.channel, r.currency, r.payment_id, r.channel_reference,
           r.gross_minor, r.fee_minor, r.transaction_at, r.settlement_date
    from referenced as r
    where r.reference_rank = 1 and r.is_settled_in_ledger and r.currency = r.ledger_currency

    union all

    select l.psp_line_id, l.channel, l.currency, m.payment_id, l.channel_reference,
           l.gross_minor, l.fee_minor, l.transaction_at, l.settlement_date
    from lines as l
    inner join matches as m on m.psp_line_id = l.psp_line_id and m.match_type = 'fuzzy'
),

fee_breaks as (
    select
        'fee_mismatch' as break_type,
        'payment:' || r.payment_id as break_key,
        r.channel, r.currency, r.payment_id, r.channel_reference,
        cast(null as varchar(200)) as statement_line_id,
        cast(null as varchar(66)) as chain_tx_hash,
        {{ fee_minor('r.gross_minor', 'cp.rate_bps', 'coalesce(cp.fixed_minor, 0)') }}
            as ledger_minor,
        r.fee_minor as channel_minor,
        r.settlement_date as first_seen,
        cast(null as varchar(2000)) as candidates,
        r.psp_line_id
    from fee_checked as r
    inner join channel_prices as cp
        on  cp.subject_id = r.channel
        and cp.currency = r.currency
        and {{ in_force('cp', 'r.transaction_at') }}
    where r.fee_minor <> {{ fee_minor('r.gross_minor', 'cp.rate_bps', 'coalesce(cp.fixed_minor, 0)') }}
),

unreferenced as (
    select l.* from lines as l
    where l.payment_id is null
      and not exists (select 1 from matches as m where m.psp_line_id = l.psp_line_id)
),

-- A payment with several candidate lines, each of which has that payment as its only candidate:
-- one ambiguous break for the payment listing the lines (reconciliation.md: "an `ambiguous`
-- break listing them"), raised from its first line; the other lines raise nothing of their own.
payment_ambiguity as (
    select
        f.psp_line_id,
        f.payment_id,
        row_number() over (partition by f.payment_id
                           order by f.settlement_date, f.line_number, f.psp_line_id) as line_rank,
        (select string_agg(coalesce(o.channel_reference, o.psp_line_id), ','
                           order by coalesce(o.channel_reference, o.psp_line_id))
         from fuzzy as o
         where o.payment_id = f.payment_id and o.line_candidates = 1) as candidate_lines
    from fuzzy as f
    where f.line_candidates = 1 and f.payment_candidates > 1
),

-- A line naming no ledger payment: the first line carrying its raw channel reference is
-- ambiguous (several fuzzy candidates) or missing_in_ledger; a later one carrying the same
-- reference is duplicate_in_channel (the same channel reference settled twice).
line_breaks as (
    select
        case
            when u.reference_rank > 1 then 'duplicate_in_channel'
            when exists (select 1 from fuzzy as f where f.psp_line_id = u.psp_line_id)
                then 'ambiguous'
            else 'missing_in_ledger'
        end as break_type,
        case when a.payment_id is not null and u.reference_rank = 1
             then 'payment:' || a.payment_id else u.psp_line_id end as break_key,
        u.channel, u.currency,
        cast(case when u.reference_rank = 1 then a.payment_id end as varchar(40)) as payment_id,
        u.channel_reference,
        cast(null as varchar(200)) as statement_line_id,
        cast(null as varchar(66)) as chain_tx_hash,
        cast(case when a.payment_id is not null and u.reference_rank = 1 then u.gross_minor end
             as {{ money_type() }}) as ledger_minor,
        u.gross_minor as channel_minor,
        u.settlement_date as first_seen,
        case when a.payment_id is not null and u.reference_rank = 1 then a.candidate_lines
             else (select string_agg(f.payment_id, ',' order by f.payment_id) from fuzzy as f
                   where f.psp_line_id = u.psp_line_id) end as candidates,
        u.psp_line_id
    from unreferenced as u
    left join payment_ambiguity as a on a.psp_line_id = u.psp_line_id
    where a.psp_line_id is null or a.line_rank = 1 or u.reference_rank > 1
),

unsettled_ledger as (
    -- settled in the ledger, nothing on the channel side: no line, no fuzzy match, no transfer
    select g.* from ledger as g
    where g.is_settled_in_ledger and g.side in ('psp', 'chain')
      and not exists (select 1 from lines as l where l.payment_id = g.payment_id)
      -- (a chargeback's match is no evidence that the payment itself settled)
      and not exists (select 1 from matches as m
                      where m.payment_id = g.payment_id
                        and not exists (select 1 from chargeback_lines as c
                                        where c.psp_line_id = m.psp_line_id))
      and not exists (select 1 from transfers as t
                      where g.side = 'chain' and t.transaction_hash = lower(g.channel_reference))
      and not exists (select 1 from fuzzy as f where f.payment_id = g.payment_id)
),

missing_in_channel as (
    select
        'missing_in_channel' as break_type,
        u.payment_id as break_key,
        u.channel_id as channel, u.currency, u.payment_id, u.channel_reference,
        cast(null as varchar(200)) as statement_line_id,
        cast(null as varchar(66)) as chain_tx_hash,
        u.amount_minor as ledger_minor,
        cast(null as {{ money_type() }}) as channel_minor,
        -- the first day it is shown: the day after the window and the grace ran out
        u.ledger_date + u.settlement_window_days + {{ grace }} + 1 as first_seen,
        cast(null as varchar(2000)) as candidates,
        cast(null as varchar(200)) as psp_line_id
    from unsettled_ledger as u
    where u.ledger_date + u.settlement_window_days + {{ grace }} + 1 <= {{ as_of }}
),

-- A chain payment's Transfer logs (int_recon_chain_pairs) that are not its match: a log of its
-- transaction that fails a condition of the match, when no log of the transaction matches it
-- fully (once one does, the transaction's other logs are other transfers it made, not breaks of
-- this payment); a second fully matching log of the transaction (transfer_rank > 1): the
-- payment's channel reference settled twice, duplicate_in_channel; and the fully matching log of
-- a payment the ledger says failed or cancelled: the chain says settled, status_mismatch.
chain_breaks as (
    select
        case
            when p.is_full_match and p.transfer_rank > 1 then 'duplicate_in_channel'
            when p.is_full_match then 'status_mismatch'
            when p.is_reorged then 'chain_reorged'
            when p.expected_recipient is not null and p.expected_recipient <> p.to_address
                then 'recipient_mismatch'
            -- the token contract is not the payment's asset (or one we do not know)
            when coalesce(p.asset, '') <> p.currency then 'currency_mismatch'
            when p.value_minor <> p.amount_minor then 'amount_mismatch'
            else 'chain_unconfirmed'
        end as break_type,
        p.transaction_hash || ':' || cast(p.log_index as varchar(10)) as break_key,
        p.channel_id as channel, p.currency, p.payment_id, p.channel_reference,
        cast(null as varchar(200)) as statement_line_id,
        p.transaction_hash as chain_tx_hash,
        p.amount_minor as ledger_minor,
        p.value_minor as channel_minor,
        cast(p.observed_at as date) as first_seen,
        cast(null as varchar(2000)) as candidates,
        cast(null as varchar(200)) as psp_line_id,
        -- one break per log: copies of it in other blocks (a reorg, int_recon_chain_transfers)
        -- give the same break of the same payment once, from the copy seen last
        row_number() over (partition by p.payment_id, p.transaction_hash, p.log_index,
                                        p.is_full_match, p.is_reorged
                           order by p.copy_rank) as nth_copy
    from {{ ref('int_recon_chain_pairs') }} as p
    where (p.is_full_match and (p.transfer_rank > 1 or not p.is_settled_in_ledger))
       or (not p.is_full_match
           and not exists (select 1 from {{ ref('int_recon_chain_pairs') }} as o
                           where o.payment_id = p.payment_id and o.is_full_match))
),

-- The platform's receiving addresses: its own collection addresses and every x402 payTo.
platform_addresses as (
    select address, min(channel_id) as channel
    from (
        select lower(address) as address, channel_id from {{ ref('ref_chain_addresses') }}
        union all
        select lower(pay_to), '{{ var("x402_channel_id") }}' from {{ ref('stg_clearhouse__x402_pricing_rules') }}
    ) as a
    group by address
),

-- A confirmed Transfer into one of them that no ledger payment references: money arrived that
-- the ledger does not know (reconciliation.md: a chain line with no ledger record).
unexplained_transfers as (
    select
        'missing_in_ledger' as break_type,
        'chain:' || t.transaction_hash || ':' || cast(t.log_index as varchar(10)) as break_key,
        a.channel,
        coalesce(t.asset, t.token_address) as currency,
        cast(null as varchar(40)) as payment_id,
        t.transaction_hash as channel_reference,
        cast(null as varchar(200)) as statement_line_id,
        t.transaction_hash as chain_tx_hash,
        cast(null as {{ money_type() }}) as ledger_minor,
        t.value_minor as channel_minor,
        cast(t.observed_at as date) as first_seen,
        cast(null as varchar(2000)) as candidates,
        cast(null as varchar(200)) as psp_line_id
    from transfers as t
    inner join platform_addresses as a on a.address = lower(t.to_address)
    where t.is_confirmed and not t.is_reorged
      and not exists (select 1 from {{ ref('stg_clearhouse__payments') }} as p
                      where lower(p.channel_reference) = t.transaction_hash)
),

refund_lines as (
    select * from {{ ref('int_recon_psp_refund_lines') }}
),

ledger_refunds as (
    select * from {{ ref('int_recon_refunds') }}
),

-- reconciliation.md status_mismatch: the ledger says fully refunded, the channel says settled -
-- it reports the payment and no refund of it at all. One break for the payment (its refunds'
-- missing_in_channel breaks would say the same); it resolves when a refund line arrives.
-- A refund is reported in the channel's settlement window like a capture: until the last
-- refund's day + window + grace has passed its line is pending, not missing, so the break is
-- first seen the day after that (or the payment line's day, if later) - never before the
-- refund happened.
refunds_due as (
    select payment_id,
           max(ledger_date + settlement_window_days + {{ grace }} + 1) as due_after
    from ledger_refunds
    where is_settled_in_ledger
    group by payment_id
),

refunded_but_settled as (
    select
        'status_mismatch' as break_type,
        'refunded:' || g.payment_id as break_key,
        g.channel_id as channel, g.currency, g.payment_id, g.channel_reference,
        cast(null as varchar(200)) as statement_line_id,
        cast(null as varchar(66)) as chain_tx_hash,
        cast(0 as {{ money_type() }}) as ledger_minor,
        l.gross_minor as channel_minor,
        greatest(l.settlement_date, coalesce(d.due_after, l.settlement_date)) as first_seen,
        cast(null as varchar(2000)) as candidates,
        l.psp_line_id
    from ledger as g
    inner join referenced as l on l.payment_id = g.payment_id and l.reference_rank = 1
    left join refunds_due as d on d.payment_id = g.payment_id
    where g.status = 'refunded' and g.side = 'psp'
      and not exists (select 1 from refund_lines as rl where rl.payment_id = g.payment_id)
      and coalesce(d.due_after, l.settlement_date) <= {{ as_of }}
),

refund_breaks as (
    select
        case
            -- the channel says refunded, the ledger has no refund of that payment (the reverse
            -- of a settled failed / refunded payment)
            when l.refund_id is null and l.named_payment_id is not null
                 and not exists (select 1 from ledger_refunds as lr
                                 where lr.payment_id = l.named_payment_id
                                   and lr.is_settled_in_ledger) then 'status_mismatch'
            -- naming nothing in the ledger: the first line carrying the reference is
            -- missing_in_ledger, a later one duplicate_in_channel (a line carrying a payment's
            -- reference may be another refund of it: not a duplicate)
            when l.refund_id is null and l.named_payment_id is null and l.reference_rank > 1
                then 'duplicate_in_channel'
            when l.refund_id is null then 'missing_in_ledger'
            when l.reference_rank > 1 then 'duplicate_in_channel'
            when not r.is_settled_in_ledger then 'status_mismatch'
            when l.currency <> r.currency then 'currency_mismatch'
            else 'amount_mismatch'
        end as break_type,
        case when l.refund_id is null then l.psp_line_id
             else {{ recon_record_key("'refund:' || l.refund_id", 'l.reference_rank') }}
        end as break_key,
        l.channel, l.currency, coalesce(l.payment_id, l.named_payment_id) as payment_id,
        l.channel_reference,
        cast(null as varchar(200)) as statement_line_id,
        cast(null as varchar(66)) as chain_tx_hash,
        cast(0 - r.amount_minor as {{ money_type() }}) as ledger_minor,
        l.gross_minor as channel_minor,
        l.settlement_date as first_seen,
        cast(null as varchar(2000)) as candidates,
        l.refund_id,
        l.psp_line_id
    from refund_lines as l
    left join ledger_refunds as r on r.refund_id = l.refund_id
    where l.refund_id is null or l.reference_rank > 1 or not r.is_settled_in_ledger
       or l.currency <> r.currency or l.gross_minor <> 0 - r.amount_minor

    union all

    -- succeeded in the ledger, no refund line once the window and the grace have passed
    select
        'missing_in_channel', 'refund:' || r.refund_id,
        r.channel_id, r.currency, r.payment_id, r.channel_reference,
        cast(null as varchar(200)), cast(null as varchar(66)),
        cast(0 - r.amount_minor as {{ money_type() }}), cast(null as {{ money_type() }}),
        r.ledger_date + r.settlement_window_days + {{ grace }} + 1,
        cast(null as varchar(2000)),
        r.refund_id,
        cast(null as varchar(200))
    from ledger_refunds as r
    where r.is_settled_in_ledger
      and not exists (select 1 from refund_lines as l where l.refund_id = r.refund_id)
      and not exists (select 1 from refunded_but_settled as s where s.payment_id = r.payment_id)
      and r.ledger_date + r.settlement_window_days + {{ grace }} + 1 <= {{ as_of }}
),

payout_pairs as (
    select * from {{ ref('int_recon_payout_pairs') }}
),

payout_fuzzy as (
    select * from {{ ref('int_recon_payout_fuzzy_candidates') }}
),

-- Payouts (reconciliation.md: a payout's bank credit differs from the sum of its PSP lines, so
-- payout_mismatch): the credit found for the payout differs from that sum; the credit is in
-- another currency (currency_mismatch, "matched by reference, currencies differ": raised besides
-- any payout_mismatch of the pair); no credit at all once the payout's value date plus
-- var recon_grace_days has passed (payout_mismatch with channel_amount_minor NULL: the bank's
-- side is missing - not missing_in_channel, which the spec keeps for a ledger record with no
-- channel line - first seen the day after the grace ran out, as missing_in_channel is); a second
-- credit carrying the same payout (credit_rank > 1: "one credit per payout", the payout paid
-- twice) is duplicate_in_channel on that bank line, the payout's expected sum on the ledger side.
-- Keyed by the payout (channel, payout id, and the row's rank among rows carrying that id), not
-- by the payout row's psp_line_id or the bank line's statement_line_id, which name file versions:
-- a PSP file re-sent under its name or a statement re-issued by the bank leaves a payout break
-- it still shows with its id (reconciliation.md: "a stable id").
{% set payout_key = recon_record_key("'payout:' || channel || ':' || payout_id", 'payout_rank') %}
payout_breaks as (
    select
        'payout_mismatch' as break_type,
        {{ payout_key }} as break_key,
        channel, currency, cast(null as varchar(40)) as payment_id, payout_id as channel_reference,
        statement_line_id,
        cast(null as varchar(66)) as chain_tx_hash,
        -- the sum of the payout's PSP lines (its own gross when the file has none)
        expected_minor as ledger_minor,
        bank_minor as channel_minor,
        booking_date as first_seen,
        cast(null as varchar(2000)) as candidates,
        psp_line_id
    from payout_pairs
    where bank_minor <> expected_minor and credit_rank = 1

    union all

    select
        'duplicate_in_channel', {{ payout_key }} || ':' || cast(credit_rank as varchar(20)),
        channel, currency, cast(null as varchar(40)), payout_id, statement_line_id,
        cast(null as varchar(66)), expected_minor, bank_minor, booking_date,
        cast(null as varchar(2000)), psp_line_id
    from payout_pairs
    where credit_rank > 1

    union all

    select
        'currency_mismatch', {{ payout_key }},
        channel, currency, cast(null as varchar(40)), payout_id, statement_line_id,
        cast(null as varchar(66)), expected_minor, bank_minor, booking_date,
        cast(null as varchar(2000)), psp_line_id
    from payout_pairs
    where bank_currency <> currency and credit_rank = 1

    union all

    select
        'payout_mismatch', 'unpaid:' || {{ payout_key }},
        p.channel, p.currency, cast(null as varchar(40)), p.payout_id,
        cast(null as varchar(200)), cast(null as varchar(66)),
        p.expected_minor, cast(null as {{ money_type() }}),
        p.due_date + {{ grace }} + 1,
        cast(null as varchar(2000)), p.psp_line_id
    from {{ ref('int_recon_payouts') }} as p
    where p.payout_minor > 0
      and p.due_date + {{ grace }} + 1 <= {{ as_of }}
      and not exists (select 1 from payout_pairs as pp where pp.psp_line_id = p.psp_line_id)
      -- a fuzzy partner (matched) or several (the ambiguous break below speaks for it)
      and not exists (select 1 from payout_fuzzy as f where f.psp_line_id = p.psp_line_id)
),

-- Payouts and unreferenced credits of one amount (int_recon_payout_fuzzy_candidates): a credit
-- with several candidate payouts is one ambiguous break on the credit listing the payouts; a
-- payout with several candidate credits, each of which has only that payout, one on the payout
-- listing the credits (first seen when the first of them was booked). Neither is a match; the
-- payouts raise no "no credit" payout_mismatch while the candidates stand.
payout_ambiguity as (
    select
        'ambiguous' as break_type,
        'bank:' || f.statement_line_id as break_key,
        min(f.channel) as channel, min(f.currency) as currency,
        cast(null as varchar(40)) as payment_id,
        cast(null as varchar(200)) as channel_reference,
        f.statement_line_id,
        cast(null as varchar(66)) as chain_tx_hash,
        cast(null as {{ money_type() }}) as ledger_minor,
        min(f.bank_minor) as channel_minor,
        min(f.booking_date) as first_seen,
        cast(string_agg(f.payout_id, ',' order by f.payout_id) as varchar(2000)) as candidates,
        cast(null as varchar(200)) as psp_line_id
    from payout_fuzzy as f
    where f.payout_candidates > 1
    group by f.statement_line_id

    union all

    select
        'ambiguous', {{ recon_record_key("'payout:' || f.channel || ':' || f.payout_id", 'f.payout_rank') }},
        f.channel, f.currency, cast(null as varchar(40)), f.payout_id,
        cast(null as varchar(200)), cast(null as varchar(66)),
        min(f.expected_minor), cast(null as {{ money_type() }}),
        min(f.booking_date),
        cast(string_agg(f.statement_line_id, ',' order by f.statement_line_id) as varchar(2000)),
        f.psp_line_id
    from payout_fuzzy as f
    where f.credit_candidates > 1
    group by f.psp_line_id, f.channel, f.currency, f.payout_id, f.payout_rank
    having max(f.payout_candidates) = 1
),

-- A payout credit the PSP files do not know: missing_in_ledger (the platform has no record of
-- that payout). Conservative, so that an unrelated credit is never a break: a credit (booked by
-- the run's day) on a collection account - one a known payout has been credited to - paired
-- with no payout, whose customer reference, EndToEndId or remittance holds a whole token
-- beginning with the payout-id prefix of the PSP files (var recon_payout_id_prefix, 'po_' as
-- clearhouse/channel_files.py writes them; compared in lower case). channel_reference is that
-- token; the channel is the one whose payouts reach the account (the first by id when several
-- share it).
collection_accounts as (
    select account_id, min(channel) as channel
    from payout_pairs
    where account_id is not null
    group by account_id
),

bank_texts as (
    select
        b.*,
        {{ recon_tokens("coalesce(b.customer_reference, '') || ' ' || coalesce(b.end_to_end_id, '') || ' ' || coalesce(b.remittance_search, '')") }}
            as tokens
    -- booked credits only, each once (a pending line or a notification is none)
    from {{ ref('int_recon_bank_credits') }} as b
    where not exists (select 1 from payout_pairs as pp
                      where pp.statement_line_id = b.statement_line_id)
),

unknown_payout_credits as (
    select
        'missing_in_ledger' as break_type,
        'bank:' || b.statement_line_id as break_key,
        a.channel, b.currency, cast(null as varchar(40)) as payment_id,
        cast(split_part(substr(b.tokens,
                               position(' {{ var("recon_payout_id_prefix", "po_") }}' in lower(b.tokens)) + 1),
                        ' ', 1) as varchar(200)) as channel_reference,
        b.statement_line_id,
        cast(null as varchar(66)) as chain_tx_hash,
        cast(null as {{ money_type() }}) as ledger_minor,
        b.amount_minor as channel_minor,
        b.booking_date as first_seen,
        cast(null as varchar(2000)) as candidates,
        cast(null as varchar(200)) as psp_line_id
    from bank_texts as b
    inner join collection_accounts as a on a.account_id = b.account_id
    where position(' {{ var("recon_payout_id_prefix", "po_") }}' in lower(b.tokens)) > 0
),

-- A chargeback row (int_recon_psp_chargeback_lines): the same row re-sent (repeat_rank > 1) is
-- duplicate_in_channel, the channel reference settled twice, whatever the first one is; else,
-- naming no payment of its channel it is
-- missing_in_ledger; naming a payment the ledger says failed or cancelled (or has not captured
-- yet), status_mismatch;
-- in another currency, currency_mismatch; taking back more than the payment, amount_mismatch
-- (amounts signed as the channel reports them: the ledger's is minus the payment's).
chargeback_breaks as (
    select
        case
            when l.repeat_rank > 1 then 'duplicate_in_channel'
            when g.payment_id is null then 'missing_in_ledger'
            when not g.is_settled_in_ledger then 'status_mismatch'
            when l.currency <> g.currency then 'currency_mismatch'
            else 'amount_mismatch'
        end as break_type,
        l.psp_line_id as break_key,
        l.channel, l.currency, g.payment_id, l.channel_reference,
        cast(null as varchar(200)) as statement_line_id,
        cast(null as varchar(66)) as chain_tx_hash,
        cast(0 - g.amount_minor as {{ money_type() }}) as ledger_minor,
        l.gross_minor as channel_minor,
        l.settlement_date as first_seen,
        cast(null as varchar(2000)) as candidates,
        l.psp_line_id
    from chargeback_lines as l
    left join ledger as g on g.payment_id = l.payment_id
    where l.repeat_rank > 1
       or g.payment_id is null or not g.is_settled_in_ledger or l.currency <> g.currency
       or 0 - l.gross_minor > g.amount_minor
),

payment_breaks as (
    select * from reference_breaks
    union all select * from fee_breaks
    union all select * from line_breaks
    union all select * from missing_in_channel
    union all
    select break_type, break_key, channel, currency, payment_id, channel_reference,
           statement_line_id, chain_tx_hash, ledger_minor, channel_minor, first_seen,
           candidates, psp_line_id
    from chain_breaks where nth_copy = 1
    union all select * from unexplained_transfers
    union all select * from refunded_but_settled
    union all select * from payout_breaks
    union all select * from unknown_payout_credits
    union all select * from payout_ambiguity
    union all select * from chargeback_breaks
),

breaks as (
    select break_type, break_key, channel, currency, payment_id, channel_reference,
           statement_line_id, chain_tx_hash, ledger_minor, channel_minor, first_seen,
           candidates, cast(null as varchar(40)) as refund_id, psp_line_id
    from payment_breaks
    union all select * from refund_breaks
),

current_breaks as (
    select
        md5(break_type || ':' || break_key) as break_id,
        break_type,
        channel,
        currency,
        payment_id,
        channel_reference,
        statement_line_id,
        chain_tx_hash,
        cast(ledger_minor as {{ money_type() }}) as ledger_amount_minor,
        cast(channel_minor as {{ money_type() }}) as channel_amount_minor,
        cast(channel_minor - ledger_minor as {{ money_type() }}) as delta_minor,
        first_seen,
        candidates,
        refund_id,
        -- the PSP line (payment, refund or payout row) the break was raised from
        cast(psp_line_id as varchar(200)) as psp_line_id
    from breaks
)

{% if is_incremental() %}
, previous as (
    select * from {{ this }}
),

-- What closed a break that no longer shows: the match now covering its payment, line, payout
-- or bank credit, else the data that changed (a corrected file, a later status).
closing_matches as (
    select m.match_id, m.payment_id, m.psp_line_id, m.channel_reference, m.refund_id,
           m.statement_line_id
    from matches as m
)
{% endif %}

select
    c.break_id, c.break_type, c.channel, c.currency, c.payment_id, c.channel_reference,
    c.statement_line_id, c.chain_tx_hash, c.ledger_amount_minor, c.channel_amount_minor,
    c.delta_minor,
    {% if is_incremental() %}coalesce(p.first_seen, c.first_seen){% else %}c.first_seen{% endif %}
        as first_seen,
    {{ as_of }} - {% if is_incremental() %}coalesce(p.first_seen, c.first_seen){% else %}c.first_seen{% endif %}
        as age_days,
    'open' as status,
    cast(null as date) as resolved_at,
    cast(null as varchar(200)) as resolved_by,
    c.candidates,
    c.refund_id,
    c.psp_line_id
from current_breaks as c
{% if is_incremental() %}
left join previous as p on p.break_id = c.break_id
-- (a break a later day resolved is not reopened by a run for an earlier day: below)
where p.break_id is null or p.resolved_at is null or p.resolved_at <= {{ as_of }}

union all

-- A break is never deleted: one that the current inputs no longer show is resolved, once.
select
    p.break_id, p.break_type, p.channel, p.currency, p.payment_id, p.channel_reference,
    p.statement_line_id, p.chain_tx_hash, p.ledger_amount_minor, p.channel_amount_minor,
    p.delta_minor, p.first_seen,
    coalesce(p.resolved_at, {{ as_of }}) - p.first_seen as age_days,
    'resolved' as status,
    coalesce(p.resolved_at, {{ as_of }}) as resolved_at,
    -- the same type as the first build's column: Postgres would otherwise widen it on each
    -- incremental run, moving it to the end of the table
    cast(coalesce(p.resolved_by, (
        select min('match:' || m.match_id) from closing_matches as m
        where (m.payment_id = p.payment_id
               and coalesce(m.refund_id, '') = coalesce({{ previous_refund_id }}, ''))
           or (p.channel_reference is not null and m.channel_reference = p.channel_reference)
           or (p.statement_line_id is not null and m.statement_line_id = p.statement_line_id)),
        'data_changed') as varchar(200)) as resolved_by,
    p.candidates,
    {{ previous_refund_id }} as refund_id,
    cast({{ previous_psp_line_id }} as varchar(200)) as psp_line_id
from previous as p
where not exists (select 1 from current_breaks as c where c.break_id = p.break_id)
  and p.first_seen <= {{ as_of }}

union all

-- A run for a past day cannot see what a break first seen after that day was raised from: such
-- a break is neither closed nor aged by it; it stays as the later run left it. Nor can it see
-- the data that closed a break after that day: a break resolved after the run's day stays
-- resolved, with its when and by what (README: replaying an older day reopens nothing).
select
    p.break_id, p.break_type, p.channel, p.currency, p.payment_id, p.channel_reference,
    p.statement_line_id, p.chain_tx_hash, p.ledger_amount_minor, p.channel_amount_minor,
    p.delta_minor, p.first_seen, p.age_days, p.status, p.resolved_at,
    cast(p.resolved_by as varchar(200)) as resolved_by,
    p.candidates,
    {{ previous_refund_id }} as refund_id,
    cast({{ previous_psp_line_id }} as varchar(200)) as psp_line_id
from previous as p
where (not exists (select 1 from current_breaks as c where c.break_id = p.break_id)
       and p.first_seen > {{ as_of }})
   or (p.resolved_at > {{ as_of }}
       and exists (select 1 from current_breaks as c where c.break_id = p.break_id))
{% endif %}
