{{ config(materialized='incremental', unique_key='line_id',
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
           {% if 'is_correction' in existing -%}
           count(case when is_correction then 1 end)
           {%- else %}0{% endif %} as corrections
    from {{ this }}
    group by {{ booked_item }}
),

previous_runs as (
    {{ previous_runs() }}
),

changed as (
    select
        o.*,
        b.corrections,
        cast(coalesce(i.txn_gross_minor, 0) - b.txn_gross_minor as {{ money_type() }})
            as delta_gross_minor,
        cast(coalesce(i.txn_fee_minor, 0) - b.txn_fee_minor as {{ money_type() }})
            as delta_fee_minor,
        coalesce(m.settlement_cycle, o.settlement_cycle) as open_cycle,
        {{ settlement_open_day('r.closed_through') }} as open_day,
        e_from.exponent as exp_from,
        e_to.exponent as exp_to
    from booked as b
    -- the item's own booked line: where, in which currency and at which rate it was booked
    join {{ this }} as o on o.line_id = b.item_id
    left join {{ ref('int_settlement_items') }} as i on i.item_id = b.item_id
    left join {{ ref('stg_clearhouse__merchants') }} as m on m.merchant_id = o.merchant_id
    left join {{ ref('ref_currencies') }} as e_from on e_from.code = o.txn_currency
    left join {{ ref('ref_currencies') }} as e_to on e_to.code = o.currency
    cross join previous_runs as r
    where coalesce(i.txn_gross_minor, 0) <> b.txn_gross_minor
       or coalesce(i.txn_fee_minor, 0) <> b.txn_fee_minor
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

corrections as (
    select
        'correction:' || p.line_id || ':' || cast(p.corrections + 1 as {{ dbt.type_string() }})
            as line_id,
        p.line_id as item_id,
        p.merchant_id || ':' || p.currency || ':' || {{ date_key('p.open_period_start') }}
            as statement_id,
        p.merchant_id,
        p.open_statement_cycle as settlement_cycle,
        p.open_period_start as period_start,
        p.open_period_end as period_end,
        p.currency,
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
        p.delta_gross_minor as txn_gross_minor,
        p.delta_fee_minor as txn_fee_minor,
        p.fx_rate_id,
        p.fx_rate,
        p.fx_derivation,
        cast(p.corr_gross_minor as {{ money_type() }}) as gross_minor,
        cast(p.corr_fee_minor as {{ money_type() }}) as fee_minor,
        cast(p.corr_gross_minor - p.corr_fee_minor as {{ money_type() }}) as net_minor,
        'correction to ' || p.item_type || ' ' || p.line_id || ' of period '
            || {{ date_key('p.natural_period_start') }} || ': gross '
            || cast(p.delta_gross_minor as {{ dbt.type_string() }}) || ', fee '
            || cast(p.delta_fee_minor as {{ dbt.type_string() }}) || ' ' || p.txn_currency
            as description,
        cast(null as {{ dbt.type_string() }}) as created_by,
        {{ settlement_as_of() }} as frozen_as_of
    from placed as p
)
{% endif %}

select {{ columns | join(', ') }} from closing
{% if is_incremental() %}
union all
select {{ columns | join(', ') }} from corrections
{% endif %}
