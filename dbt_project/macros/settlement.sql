{# Settlement (settlement.md): the day statements are closed to, cycle periods, FX conversion. #}

{# The day settlement closes periods to: var settlement_as_of, else var recon_as_of, else the
   run's UTC date. A period is closed once its last day is before this day. #}
{% macro settlement_as_of() -%}
    cast('{{ var("settlement_as_of", var("recon_as_of", run_started_at.strftime("%Y-%m-%d"))) }}' as date)
{%- endmacro %}


{# The day periods are open from at this run: its settlement_as_of day, or the later day a run
   already closed through (`closed_through`, NULL before the first run), so a backfill of an
   older day never reopens a period. #}
{% macro settlement_open_day(closed_through) -%}
    greatest({{ settlement_as_of() }}, coalesce({{ closed_through }}, {{ settlement_as_of() }}))
{%- endmacro %}


{# First day of the period of `cycle` ('daily', 'weekly' = ISO week from Monday, 'monthly')
   that contains the date `d`. #}
{% macro cycle_period_start(cycle, d) -%}
    case {{ cycle }}
        when 'weekly' then cast(date_trunc('week', {{ d }}) as date)
        when 'monthly' then cast(date_trunc('month', {{ d }}) as date)
        else cast({{ d }} as date)
    end
{%- endmacro %}

{# Last day (inclusive) of the period of `cycle` that starts on `start`. #}
{% macro cycle_period_end(cycle, start) -%}
    case {{ cycle }}
        when 'weekly' then cast({{ start }} + interval '6 days' as date)
        when 'monthly' then cast({{ start }} + interval '1 month' - interval '1 day' as date)
        else cast({{ start }} as date)
    end
{%- endmacro %}

{# A day plus n days (n an integer expression), as a date on both engines. #}
{% macro add_days(d, n) -%}
    {{ return(adapter.dispatch('add_days', 'clearhouse')(d, n)) }}
{%- endmacro %}
{% macro default__add_days(d, n) -%}cast(({{ d }}) + cast({{ n }} as integer) as date){%- endmacro %}
{% macro duckdb__add_days(d, n) -%}cast(({{ d }}) + to_days(cast({{ n }} as integer)) as date){%- endmacro %}


{# The currency an asset is converted through: USDC and USDT are taken at par with USD
   (their issuers redeem 1:1); everything else is itself. #}
{% macro fx_anchor(currency) -%}
    case when {{ currency }} in ('USDC', 'USDT') then 'USD' else {{ currency }} end
{%- endmacro %}


{# The rate a row of `t` (currency, settlement_currency, fx_from, fx_to) is converted at, given
   its applicable ECB rate `r` (applicable_fx_rates, nth = 1): none in its own currency, a peg
   (USDC/USDT at par with USD) when both anchor to one currency, else the ECB rate and its id. #}
{% macro applied_fx_rate_id(t, r) -%}
    case
        when {{ t }}.currency = {{ t }}.settlement_currency then null
        when {{ t }}.fx_from = {{ t }}.fx_to
            then 'peg:' || {{ t }}.currency || ':' || {{ t }}.settlement_currency
        else {{ r }}.fx_rate_id
    end
{%- endmacro %}
{% macro applied_fx_rate(t, r) -%}
    case
        when {{ t }}.currency = {{ t }}.settlement_currency or {{ t }}.fx_from = {{ t }}.fx_to
            then cast(1 as decimal(38, 16))
        else {{ r }}.rate
    end
{%- endmacro %}


{# The ECB rates that apply (settlement.md, money.md point 6): for each (fx_from, fx_to, day) of
   the relation `needed`, every published rate of that pair on or before the day, the applicable
   one (the latest: a weekend or holiday takes the last business day's) with nth = 1. One rule
   for statements and analytics. #}
{% macro applicable_fx_rates(needed, day) -%}
    select
        n.fx_from, n.fx_to, n.{{ day }}, r.fx_rate_id, r.rate, r.derivation,
        row_number() over (partition by n.fx_from, n.fx_to, n.{{ day }}
                           order by r.rate_date desc) as nth
    from {{ needed }} as n
    join {{ ref('int_fx__rates') }} as r
        on  r.base_currency = n.fx_from
        and r.quote_currency = n.fx_to
        and r.rate_date <= n.{{ day }}
{%- endmacro %}


{# 10^n as an exact integer (n a non-negative integer expression): no power(), which is DOUBLE. #}
{% macro pow10(n) -%}
    {{ clearhouse.money_int("'1' || repeat('0', cast(" ~ n ~ " as integer))") }}
{%- endmacro %}


{# money.md point 6: converted_minor = round_half_up(amount_minor * rate * 10^(exp_to - exp_from)).
   `rate_units` is the rate as an exact integer of 10^-16 units (DECIMAL(38,16) text without
   its point), so the whole computation stays on integers: HUGEINT on DuckDB, NUMERIC on
   Postgres. #}
{% macro fx_convert(amount, rate_units, exp_from, exp_to) -%}
    {{ clearhouse.round_half_up_div(
        clearhouse.money_int(amount) ~ ' * ' ~ clearhouse.money_int(rate_units) ~ ' * '
            ~ clearhouse.pow10('greatest(0, ' ~ exp_to ~ ' - ' ~ exp_from ~ ')'),
        "cast('10000000000000000' as " ~ ('hugeint' if target.type == 'duckdb' else 'numeric') ~ ") * "
            ~ clearhouse.pow10('greatest(0, ' ~ exp_from ~ ' - ' ~ exp_to ~ ')')) }}
{%- endmacro %}

{# `amount` (minor units of `from_currency`) on a statement in `to_currency`: itself when the two
   are the same (no rate needed), else converted at `rate` (fx_convert). #}
{% macro statement_amount(amount, from_currency, to_currency, rate, exp_from, exp_to) -%}
    case when {{ to_currency }} = {{ from_currency }} then {{ amount }}
         else {{ fx_convert(amount, rate_units(rate), exp_from, exp_to) }}
    end
{%- endmacro %}

{# A rate (DECIMAL(38,16), the scale of derived rates; published ones have at most 12 decimals)
   as exact integer units of 10^-16: its text always has 16 decimals, so dropping the point is
   exact (multiplying would leave DuckDB's DECIMAL range). #}
{% macro rate_units(rate) -%}
    {{ clearhouse.money_int("replace(cast(cast(" ~ rate ~ " as decimal(38, 16)) as " ~ dbt.type_string() ~ "), '.', '')") }}
{%- endmacro %}


{# The day the earlier runs closed periods to (NULL before the first run), as a one-row CTE
   body: this invocation's own row in int_settlement_runs does not count. #}
{% macro previous_runs() -%}
    select max(as_of_date) as closed_through
    from {{ ref('int_settlement_runs') }}
    where invocation_id <> '{{ invocation_id }}'
{%- endmacro %}


{# settlement.md, "a closed period never changes": the statement period of each item first seen
   in this run (the CTE `new_items`, with columns `key`, `owner`, `cycle`, natural_period_start
   and occurred_on), decided once. An item whose own period was closed by an earlier run is
   late: it goes on the owner's period open at this run, as an adjustment that names it. Used by
   the merchants' (int_settlement_placements) and the agents' (int_agent_statement_placements)
   statements alike.
   A cycle changed since (PATCH on the merchant or agent) applies to items not yet placed; where
   its period would start on the day a period of the old cycle already starts, the item joins
   that statement instead (held_periods): one statement per owner, currency and first day.
   When that statement is closed (a longer cycle now: daily -> monthly, its first day's daily
   statement long closed) the item moves (moved_to_open_period): never onto a closed statement. #}
{% macro place_new_items(new_items, key, owner, cycle) -%}
with previous_runs as (
    {{ previous_runs() }}
),

flagged as (
    select
        n.*,
        r.closed_through,
        coalesce({{ cycle_period_end('n.' ~ cycle, 'n.natural_period_start') }}
                 < r.closed_through, false) as is_late,
        {{ settlement_open_day('r.closed_through') }} as open_day
    from {{ new_items }} as n
    cross join previous_runs as r
),

placed as (
    select
        f.*,
        case when f.is_late then {{ cycle_period_start('f.' ~ cycle, 'f.open_day') }}
             else f.natural_period_start end as period_start
    from flagged as f
),

held as (
{%- if is_incremental() %}
    {{ held_periods(this, owner, cycle) }}
{%- else %}
    select cast(null as {{ dbt.type_string() }}) as owner, cast(null as date) as period_start,
           cast(null as {{ dbt.type_string() }}) as cycle, cast(null as date) as period_end
    where 1 = 0
{%- endif %}
),

{{ moved_to_open_period('placed', 'held', key, owner, cycle, 'period_start',
                        "case when p.is_late then p.open_day
                              else greatest(p.occurred_on, p.closed_through) end") }}

select
    m.{{ key }},
    m.{{ owner }},
    m.statement_cycle_now as {{ cycle }},
    m.natural_period_start,
    m.statement_start as period_start,
    m.statement_end as period_end,
    m.is_late or (m.is_moved and m.occurred_on < m.closed_through) as is_late,
    {{ settlement_as_of() }} as placed_as_of,
    cast('{{ invocation_id }}' as {{ dbt.type_string() }}) as placed_by_invocation
from moved as m
{%- endmacro %}


{# The statement each row of `rows` (columns `key`, `owner`, `cycle`, `closed_through` and the
   period start it would take, `start`) goes on, given `held` (a CTE of held_periods): the held
   statement starting that day, or a new one of the row's cycle - unless that held statement is
   closed, which only a cycle changed to a longer one brings about (a daily statement of the
   1st, closed, where the new monthly period would start). Then the row goes on the owner's open
   held statement holding `target_day` (SQL over `p`), else on a new statement from
   greatest(its cycle's period start, closed_through) - the first day no run has closed; the
   old cycle's quiet statements cover the days before - to the end of that cycle period.
   Defines the CTE `moved` with statement_cycle_now, statement_start, statement_end and
   is_moved. #}
{% macro moved_to_open_period(rows, held, key, owner, cycle, start, target_day) -%}
targeted as (
    select
        p.*,
        h.cycle as held_cycle,
        h.period_end as held_end,
        coalesce(h.period_end < p.closed_through, false) as is_moved,
        {{ target_day }} as target_day
    from {{ rows }} as p
    left join {{ held }} as h on h.owner = p.{{ owner }} and h.period_start = p.{{ start }}
),

candidates as (
    select
        t.*,
        o.period_start as open_start,
        o.cycle as open_cycle_held,
        o.period_end as open_end,
        row_number() over (partition by t.{{ key }} order by o.period_start desc) as nth
    from targeted as t
    left join {{ held }} as o
        on  t.is_moved and o.owner = t.{{ owner }}
        and o.period_start <= t.target_day and o.period_end >= t.target_day
        and o.period_end >= t.closed_through
),

moved as (
    select
        c.*,
        case when not c.is_moved then coalesce(c.held_cycle, c.{{ cycle }})
             else coalesce(c.open_cycle_held, c.{{ cycle }}) end as statement_cycle_now,
        case when not c.is_moved then c.{{ start }}
             when c.open_start is not null then c.open_start
             else greatest({{ cycle_period_start('c.' ~ cycle, 'c.target_day') }},
                           c.closed_through) end as statement_start,
        case when not c.is_moved
                 then coalesce(c.held_end, {{ cycle_period_end('c.' ~ cycle, 'c.' ~ start) }})
             when c.open_start is not null then c.open_end
             else {{ cycle_period_end('c.' ~ cycle,
                                      cycle_period_start('c.' ~ cycle, 'c.target_day')) }}
        end as statement_end
    from candidates as c
    where c.nth = 1
)
{%- endmacro %}


{# The statement periods already placed in `placements` (a placements relation), one per owner
   and first day (should two cycles ever have started one on the same day: the shorter). #}
{% macro held_periods(placements, owner, cycle) -%}
    select owner, period_start, cycle, period_end
    from (
        select {{ owner }} as owner, period_start, {{ cycle }} as cycle, period_end,
               row_number() over (partition by {{ owner }}, period_start
                                  order by period_end, {{ cycle }}) as nth
        from {{ placements }}
    ) as periods
    where nth = 1
{%- endmacro %}



{# Where a correction is booked: the owner's period open at this run's day. The rows of
   `changed` carry `open_cycle` (the owner's cycle now), `open_day`, `closed_through` and the
   key `correction_key`; a statement already placed from that first day (in `placements`)
   keeps its own cycle and end, as in place_new_items - and, closed after a cycle change, is
   never booked on (moved_to_open_period). Adds open_period_start, open_statement_cycle and
   open_period_end. #}
{% macro correction_period(changed, owner, placements, cycle) -%}
    with held as (
        {{ held_periods(placements, owner, cycle) }}
    ),

    to_book as (
        select c.*, {{ cycle_period_start('c.open_cycle', 'c.open_day') }} as cycle_start
        from {{ changed }} as c
    ),

    {{ moved_to_open_period('to_book', 'held', 'correction_key', owner, 'open_cycle',
                            'cycle_start', 'p.open_day') }}

    select
        m.*,
        m.statement_start as open_period_start,
        m.statement_cycle_now as open_statement_cycle,
        m.statement_end as open_period_end
    from moved as m
{%- endmacro %}


{# settlement.md: "for each merchant and cycle period" a statement - also for a period without
   a single line (opening = closing, nothing in between). The quiet periods not yet covered,
   given `quiet_closed` (the quiet statements already closed, columns merchant_id, currency,
   settlement_cycle, period_start, period_end), one row per statement:
     * between two statements of a merchant and currency: whole periods of the earlier one's
       cycle (after a cycle change, days that make no whole period stay uncovered);
     * after the last statement, in the settlement currency only: whole periods of the
       merchant's current cycle up to the period open at this run. A currency no longer settled
       in (in-kind items, a settlement currency changed since) and a closed merchant get none.
   Statements start with a merchant's first line: nothing before it. #}
{% macro settlement_quiet_candidates(quiet_closed) -%}
with heads as (
    select merchant_id, currency, settlement_cycle, period_start, period_end
    from {{ ref('int_settlement_frozen_lines') }}
    union
    select merchant_id, currency, settlement_cycle, period_start, period_end
    from {{ ref('int_settlement_lines') }}
    union
    select merchant_id, currency, settlement_cycle, period_start, period_end
    from {{ quiet_closed }}
),

ordered as (
    select
        h.*,
        lead(h.period_start) over (partition by h.merchant_id, h.currency
                                   order by h.period_end, h.period_start) as next_start
    from heads as h
),

runs as (
    select max(as_of_date) as closed_through from {{ ref('int_settlement_runs') }}
),

after_last as (
    -- the last statement of each merchant and settlement currency, the merchant's current cycle
    -- and the first day of its first period after that statement
    select o.merchant_id, o.currency, o.settlement_cycle, m.settlement_cycle as current_cycle,
           m.last_day, {{ add_days('o.period_end', 1) }} as gap_start,
           -- the day after the current cycle's period holding the last statement's last day
           {{ add_days(cycle_period_end('m.settlement_cycle',
                                        cycle_period_start('m.settlement_cycle', 'o.period_end')),
                       1) }} as new_start
    from ordered as o
    join (
        -- a closed merchant's statements stop with the period it was closed in (its last
        -- update), everyone else's go on to the period open at this run
        select mm.merchant_id, mm.settlement_currency, mm.settlement_cycle,
               case when mm.merchant_status = 'closed'
                    then least(cast(mm.updated_at as date),
                               {{ settlement_open_day('r.closed_through') }})
                    else {{ settlement_open_day('r.closed_through') }} end as last_day
        from {{ ref('stg_clearhouse__merchants') }} as mm
        cross join runs as r
    ) as m
        on m.merchant_id = o.merchant_id and m.settlement_currency = o.currency
    where o.next_start is null
),

gaps as (
    select merchant_id, currency, settlement_cycle,
           {{ add_days('period_end', 1) }} as gap_start,
           {{ add_days('next_start', -1) }} as gap_end
    from ordered
    where next_start > {{ add_days('period_end', 1) }}
    union all
    -- after the last statement: its own cycle until the merchant's current cycle has a period
    -- starting, then that one (the same cycle: the second part alone)
    select merchant_id, currency, settlement_cycle, gap_start,
           least({{ add_days('new_start', -1) }},
                 {{ cycle_period_end('settlement_cycle',
                                     cycle_period_start('settlement_cycle', 'last_day')) }})
    from after_last
    union all
    select merchant_id, currency, current_cycle, new_start,
           {{ cycle_period_end('current_cycle', cycle_period_start('current_cycle', 'last_day')) }}
    from after_last
),

days as (
    select g.merchant_id, g.currency, g.settlement_cycle, g.gap_end,
           {{ add_days('g.gap_start', 's.n') }} as period_start
    from gaps as g
    cross join lateral generate_series(0, g.gap_end - g.gap_start) as s(n)
    where g.gap_end >= g.gap_start
)

select
    merchant_id || ':' || currency || ':' || {{ date_key('period_start') }} as statement_id,
    merchant_id,
    currency,
    settlement_cycle,
    period_start,
    {{ cycle_period_end('settlement_cycle', 'period_start') }} as period_end
from days
where {{ cycle_period_start('settlement_cycle', 'period_start') }} = period_start
  and {{ cycle_period_end('settlement_cycle', 'period_start') }} <= gap_end
{%- endmacro %}
