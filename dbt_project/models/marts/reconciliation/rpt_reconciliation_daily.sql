-- reconciliation.md "Figures per day and channel" - and currency: an amount is minor units of
-- one currency (money.md 1), so a channel settling USD and EUR has a row for each, and no figure
-- adds minor units of two currencies. Per row: matched count and amount, match rate,
-- breaks in all (break_count, break_amount_minor) and by type (breaks_<type> counts and
-- breaks_<type>_amount_minor; a break's amount = the ledger amount, else the channel's, signed
-- as the break shows it, so the types' amounts add up to break_amount_minor), pending (settled in
-- the ledger, no channel evidence yet, still inside the settlement window; or in flight in the
-- ledger - int_recon_ledger.is_in_flight - with a channel line naming it, still inside the window
-- in which it could complete), and oldest_open_break_days: the age of the channel's oldest break
-- first seen by that day and open now - ages are counted to the run's day (var recon_as_of),
-- not to the row's day, and a break resolved since is left out, so a past day's row tells how old
-- what is still open today was already then, not what was open on that day. A run for a past day (var recon_as_of) has no row for
-- a later day and counts no payment captured after it as pending. match_rate = matched / (matched + breaks), an exact
-- DECIMAL(9,6); day = matched_on for matches, first_seen for breaks, capture day for pending.

{% set break_types = ['missing_in_channel', 'missing_in_ledger', 'amount_mismatch',
    'currency_mismatch', 'fee_mismatch', 'duplicate_in_channel', 'status_mismatch',
    'payout_mismatch', 'chain_unconfirmed', 'chain_reorged', 'recipient_mismatch',
    'ambiguous'] %}
{% set as_of = recon_as_of() %}
{% set grace = var('recon_grace_days', 1) %}

with matches as (
    select matched_on as day, channel, currency, count(*) as matched_count,
           cast(sum(amount_minor) as {{ money_type() }}) as matched_amount_minor
    from {{ ref('fct_reconciliation_matches') }}
    group by matched_on, channel, currency
),

breaks as (
    select * from {{ ref('fct_reconciliation_breaks') }}
),

break_days as (
    select
        first_seen as day,
        channel,
        currency,
        count(*) as break_count,
        cast(sum(coalesce(ledger_amount_minor, channel_amount_minor)) as {{ money_type() }})
            as break_amount_minor
        {% for t in break_types %}
        , count(case when break_type = '{{ t }}' then 1 end) as breaks_{{ t }}
        {% endfor %}
        {% for t in break_types %}
        , cast(sum(case when break_type = '{{ t }}'
                        then coalesce(ledger_amount_minor, channel_amount_minor) end)
               as {{ money_type() }}) as breaks_{{ t }}_amount_minor
        {% endfor %}
    from breaks
    group by first_seen, channel, currency
),

pending as (
    select g.ledger_date as day, g.channel_id as channel, g.currency, count(*) as pending_count
    from {{ ref('int_recon_ledger') }} as g
    where g.side in ('psp', 'chain')
      -- a run for a past day knows nothing captured after it
      and g.ledger_date <= {{ as_of }}
      and g.ledger_date + g.settlement_window_days + {{ grace }} >= {{ as_of }}
      and (g.is_settled_in_ledger
           or (g.is_in_flight
               and exists (select 1 from {{ ref('int_recon_psp_payment_lines') }} as l
                           where l.payment_id = g.payment_id)))
      and not exists (select 1 from {{ ref('fct_reconciliation_matches') }} as m
                      where m.payment_id = g.payment_id
                        and not exists (select 1
                                        from {{ ref('int_recon_psp_chargeback_lines') }} as c
                                        where c.psp_line_id = m.psp_line_id))
      and not exists (select 1 from breaks as b where b.payment_id = g.payment_id)
    group by g.ledger_date, g.channel_id, g.currency
),

-- the days up to the run's: a run for a past day shows no figure of a later day (the breaks
-- table keeps those a later run first saw)
keys as (
    select day, channel, currency from matches where day <= {{ as_of }}
    union select day, channel, currency from break_days where day <= {{ as_of }}
    union select day, channel, currency from pending
)

select
    k.day,
    k.channel,
    k.currency,
    coalesce(m.matched_count, 0) as matched_count,
    cast(coalesce(m.matched_amount_minor, 0) as {{ money_type() }}) as matched_amount_minor,
    {{ ratio_decimal('coalesce(m.matched_count, 0)',
                     'coalesce(m.matched_count, 0) + coalesce(b.break_count, 0)') }}
        as match_rate,
    coalesce(b.break_count, 0) as break_count,
    cast(coalesce(b.break_amount_minor, 0) as {{ money_type() }}) as break_amount_minor
    {% for t in break_types %}
    , coalesce(b.breaks_{{ t }}, 0) as breaks_{{ t }}
    {% endfor %}
    {% for t in break_types %}
    , cast(coalesce(b.breaks_{{ t }}_amount_minor, 0) as {{ money_type() }})
        as breaks_{{ t }}_amount_minor
    {% endfor %},
    coalesce(p.pending_count, 0) as pending_count,
    (select max(o.age_days) from breaks as o
     where o.channel = k.channel and o.currency is not distinct from k.currency
       and o.status = 'open' and o.first_seen <= k.day)
        as oldest_open_break_days
from keys as k
left join matches as m
    on m.day = k.day and m.channel = k.channel and m.currency is not distinct from k.currency
left join break_days as b
    on b.day = k.day and b.channel = k.channel and b.currency is not distinct from k.currency
left join pending as p
    on p.day = k.day and p.channel = k.channel and p.currency is not distinct from k.currency
