{{ config(materialized='incremental', unique_key='item_id') }}
-- Which statement period each settlement item goes on, decided once, when the item is first
-- seen, and never changed (settlement.md: a closed period never changes).
--   An item first seen while its own period is still open (or closes in this very run) goes on
--   its own period.
--   An item first seen after its period was closed by an earlier run - a late capture, a
--   chargeback or an FX rate that arrived late - goes on the period open at this run's day, as
--   an adjustment that names it (is_late).
with previous_runs as (
    select max(as_of_date) as closed_through
    from {{ ref('int_settlement_runs') }}
    where invocation_id <> '{{ invocation_id }}'
),

new_items as (
    select i.item_id, i.merchant_id, i.settlement_cycle, i.natural_period_start
    from {{ ref('int_settlement_items') }} as i
    {% if is_incremental() %}
    where not exists (select 1 from {{ this }} as p where p.item_id = i.item_id)
    {% endif %}
),

flagged as (
    select
        n.*,
        coalesce({{ cycle_period_end('n.settlement_cycle', 'n.natural_period_start') }}
                 < r.closed_through, false) as is_late,
        {{ cycle_period_start('n.settlement_cycle', settlement_open_day('r.closed_through')) }}
            as open_period_start
    from new_items as n
    cross join previous_runs as r
)

select
    item_id,
    merchant_id,
    settlement_cycle,
    natural_period_start,
    case when is_late then open_period_start else natural_period_start end as period_start,
    {{ cycle_period_end('settlement_cycle',
                        'case when is_late then open_period_start else natural_period_start end') }}
        as period_end,
    is_late,
    {{ settlement_as_of() }} as placed_as_of,
    cast('{{ invocation_id }}' as {{ dbt.type_string() }}) as placed_by_invocation
from flagged
