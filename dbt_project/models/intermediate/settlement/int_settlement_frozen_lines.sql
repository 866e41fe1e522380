{{ config(materialized='incremental', unique_key='line_id', full_refresh=false,
          on_schema_change='append_new_columns') }}
-- depends_on: {{ ref('int_settlement_runs') }}, {{ ref('int_settlement_items') }}
-- depends_on: {{ ref('int_settlement_placements') }}
-- depends_on: {{ ref('stg_clearhouse__merchants') }}, {{ ref('ref_currencies') }}
-- The booked statement lines, written once and never updated (settlement.md: a closed
-- statement never changes silently):
--   * lines of periods that closed (their last day before the run's settlement_as_of day), as
--     they stood at the close: later rates, prices or merchant settings cannot move them;
--   * corrections: when an item already booked on a closed statement has changed since (a
--     retroactive price change moves its fee, a PSP re-sends a chargeback with another amount,
--     an item disappears), the difference in the item's own currency - what the item is now
--     minus everything booked for it so far - is booked once, on the period open at this run,
--     as an 'adjustment' line naming the item (is_correction). It is converted at the rate the
--     item was first booked with, so FX rates published later never revalue a closed item.
--     Booked as soon as it is seen and never recomputed: a later change gives another
--     correction ('correction:<item_id>:<n>').
--   * an item settled in kind (no FX rate: a line in its own currency, fx_derivation in_kind)
--     whose rate arrives after its period closed: the in-kind line is reversed in its own
--     currency and the item re-booked converted (at the rate of its day, as it now converts),
--     both on the period open at this run as corrections naming the item ('correction:
--     <item_id>:<n>' and '<n+1>'); later corrections to it follow the converted line.
{%- set columns = [
    'line_id', 'item_id', 'statement_id', 'merchant_id', 'settlement_cycle', 'period_start',
    'period_end', 'currency', 'line_type', 'item_type', 'is_late', 'is_correction',
    'natural_period_start', 'payment_id', 'refund_id', 'payout_id', 'adjustment_id',
    'psp_line_id', 'occurred_at', 'txn_currency', 'txn_gross_minor', 'txn_fee_minor',
    'fx_rate_id', 'fx_rate', 'fx_derivation', 'gross_minor', 'fee_minor', 'net_minor',
    'description', 'created_by', 'frozen_as_of'] %}

with closing as (
    select l.*, {{ settlement_as_of() }} as frozen_as_of
    from {{ ref('int_settlement_lines') }} as l
    where l.period_end < {{ settlement_as_of() }}
    {% if is_incremental() %}
      and not exists (select 1 from {{ this }} as f where f.line_id = l.line_id)
    {% endif %}
)

{% if is_incremental() %}
{#- a table frozen before corrections existed has neither column yet (dbt appends them after
    this query): then every booked line is an item's own line #}
{%- set existing = adapter.get_columns_in_relation(this) | map(attribute='name')
                   | map('lower') | list %}
{%- set booked_item = 'coalesce(item_id, line_id)' if 'item_id' in existing else 'line_id' %}
, booked as (
    -- per item: what the statements hold so far (its own line and earlier corrections)
    select {{ booked_item }} as item_id,
           sum(txn_gross_minor) as txn_gross_minor,
           sum(txn_fee_minor) as txn_fee_minor,
           sum(gross_minor) as gross_minor,
           sum(fee_minor) as fee_minor,
           {% if 'is_correction' in existing -%}
           count(case when is_correction then 1 end)
           {%- else %}0{% endif %} as corrections
    from {{ this }}
    group by {{ booked_item }}
),

basis as (
    -- per item, the booked line its corrections follow (where, in which currency, at which
    -- rate): its own line - or, once an in-kind item was re-booked converted, that line
    select * from (
        select f.*, {{ booked_item }} as basis_item_id,
               row_number() over (
                   partition by {{ booked_item }}
                   order by case when f.fx_derivation = 'in_kind' then 1 else 0 end,
                            case when f.line_id = {{ booked_item }} then 0 else 1 end,
                            f.line_id) as basis_nth
        from {{ this }} as f
    ) as ranked
    where basis_nth = 1
),

previous_runs as (
    {{ previous_runs() }}
),

changed as (
    select
        o.*,
        b.corrections,
        -- an in-kind item that converts now: reversed in kind, re-booked converted
        case when o.fx_derivation = 'in_kind' and i.fx_derivation <> 'in_kind'
                  and i.statement_currency <> o.currency then 1 else 0 end as converts,
        b.txn_gross_minor as booked_txn_gross_minor,
        b.txn_fee_minor as booked_txn_fee_minor,
        b.gross_minor as booked_gross_minor,
        b.fee_minor as booked_fee_minor,
        i.statement_currency as now_currency,
        i.txn_gross_minor as now_txn_gross_minor,
        i.txn_fee_minor as now_txn_fee_minor,
        i.gross_minor as now_gross_minor,
        i.fee_minor as now_fee_minor,
        i.fx_rate_id as now_fx_rate_id,
        i.fx_rate as now_fx_rate,
        i.fx_derivation as now_fx_derivation,
        cast(coalesce(i.txn_gross_minor, 0) - b.txn_gross_minor as {{ money_type() }})
            as delta_gross_minor,
        cast(coalesce(i.txn_fee_minor, 0) - b.txn_fee_minor as {{ money_type() }})
            as delta_fee_minor,
        coalesce(m.settlement_cycle, o.settlement_cycle) as open_cycle,
        {{ settlement_open_day('r.closed_through') }} as open_day,
        r.closed_through,
        b.item_id as correction_key,
        e_from.exponent as exp_from,
        e_to.exponent as exp_to
    from booked as b
    join basis as o on o.basis_item_id = b.item_id
    left join {{ ref('int_settlement_items') }} as i on i.item_id = b.item_id
    left join {{ ref('stg_clearhouse__merchants') }} as m on m.merchant_id = o.merchant_id
    left join {{ ref('ref_currencies') }} as e_from on e_from.code = o.txn_currency
    left join {{ ref('ref_currencies') }} as e_to on e_to.code = o.currency
    cross join previous_runs as r
    where coalesce(i.txn_gross_minor, 0) <> b.txn_gross_minor
       or coalesce(i.txn_fee_minor, 0) <> b.txn_fee_minor
       or (o.fx_derivation = 'in_kind' and i.fx_derivation <> 'in_kind'
           and i.statement_currency <> o.currency)
),

opening as (
    {{ correction_period('changed', 'merchant_id', ref('int_settlement_placements'),
                         'settlement_cycle') }}
),

placed as (
    select
        o.*,
        {{ statement_amount('o.delta_gross_minor', 'o.txn_currency', 'o.currency', 'o.fx_rate',
                            'o.exp_from', 'o.exp_to') }} as corr_gross_minor,
        {{ statement_amount('o.delta_fee_minor', 'o.txn_currency', 'o.currency', 'o.fx_rate',
                            'o.exp_from', 'o.exp_to') }} as corr_fee_minor
    from opening as o
),

-- One or two lines per changed item, `step`: 0, a correction by the difference (converted at
-- the rate the item was first booked with); an in-kind item converting instead gets 1, which
-- takes back everything booked for it in kind, and 2, which books it as it now stands,
-- converted. Line n + 1 (and n + 2) after the item's n corrections so far.
steps as (
    select p.*, s.step
    from placed as p
    inner join (select 0 as step union all select 1 union all select 2) as s
        on (p.converts = 0 and s.step = 0) or (p.converts = 1 and s.step > 0)
),

correction_amounts as (
    select
        p.*,
        case when p.step = 2 then p.now_currency else p.currency end as line_currency,
        cast(case p.step when 0 then p.delta_gross_minor when 1 then 0 - p.booked_txn_gross_minor
                  else p.now_txn_gross_minor end as {{ money_type() }}) as line_txn_gross_minor,
        cast(case p.step when 0 then p.delta_fee_minor when 1 then 0 - p.booked_txn_fee_minor
                  else p.now_txn_fee_minor end as {{ money_type() }}) as line_txn_fee_minor,
        cast(case p.step when 0 then p.corr_gross_minor when 1 then 0 - p.booked_gross_minor
                  else p.now_gross_minor end as {{ money_type() }}) as line_gross_minor,
        cast(case p.step when 0 then p.corr_fee_minor when 1 then 0 - p.booked_fee_minor
                  else p.now_fee_minor end as {{ money_type() }}) as line_fee_minor
    from steps as p
),

corrections as (
    select
        'correction:' || p.basis_item_id || ':'
            || cast(p.corrections + greatest(p.step, 1) as {{ dbt.type_string() }}) as line_id,
        p.basis_item_id as item_id,
        p.merchant_id || ':' || p.line_currency || ':' || {{ date_key('p.open_period_start') }}
            as statement_id,
        p.merchant_id,
        p.open_statement_cycle as settlement_cycle,
        p.open_period_start as period_start,
        p.open_period_end as period_end,
        p.line_currency as currency,
        'adjustment' as line_type,
        p.item_type,
        true as is_late,
        true as is_correction,
        p.natural_period_start,
        p.payment_id,
        p.refund_id,
        p.payout_id,
        p.adjustment_id,
        p.psp_line_id,
        p.occurred_at,
        p.txn_currency,
        p.line_txn_gross_minor as txn_gross_minor,
        p.line_txn_fee_minor as txn_fee_minor,
        case when p.step = 2 then p.now_fx_rate_id else p.fx_rate_id end as fx_rate_id,
        case when p.step = 2 then p.now_fx_rate else p.fx_rate end as fx_rate,
        case when p.step = 2 then p.now_fx_derivation else p.fx_derivation end as fx_derivation,
        p.line_gross_minor as gross_minor,
        p.line_fee_minor as fee_minor,
        cast(p.line_gross_minor - p.line_fee_minor as {{ money_type() }}) as net_minor,
        case p.step
            when 0 then 'correction to ' || p.item_type || ' ' || p.basis_item_id
                || ' of period ' || {{ date_key('p.natural_period_start') }} || ': gross '
                || cast(p.delta_gross_minor as {{ dbt.type_string() }}) || ', fee '
                || cast(p.delta_fee_minor as {{ dbt.type_string() }}) || ' ' || p.txn_currency
            when 1 then 'in-kind ' || p.item_type || ' ' || p.basis_item_id || ' of period '
                || {{ date_key('p.natural_period_start') }} || ' reversed: its rate arrived, '
                || 're-booked in ' || p.now_currency
            else 'in-kind ' || p.item_type || ' ' || p.basis_item_id || ' of period '
                || {{ date_key('p.natural_period_start') }} || ' converted at '
                || p.now_fx_rate_id || ': gross '
                || cast(p.now_gross_minor as {{ dbt.type_string() }}) || ', fee '
                || cast(p.now_fee_minor as {{ dbt.type_string() }}) || ' ' || p.now_currency
        end as description,
        cast(null as {{ dbt.type_string() }}) as created_by,
        {{ settlement_as_of() }} as frozen_as_of
    from correction_amounts as p
)
{% endif %}

select {{ columns | join(', ') }} from closing
{% if is_incremental() %}
union all
select {{ columns | join(', ') }} from corrections
{% endif %}
