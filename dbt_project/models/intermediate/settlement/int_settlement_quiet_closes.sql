{{ config(materialized='incremental', unique_key='statement_id', full_refresh=false) }}
-- The quiet statements (periods without a line, settlement_quiet_candidates) that have closed,
-- each written at the first run that sees it closed and never updated or removed: a later
-- cycle change, or a statement of the new cycle that starts earlier, cannot make a closed
-- statement disappear (settlement.md: a closed statement never changes). Closed as
-- fct_settlement_statements' status says: its last day before the day periods are open from.
with previous as (
    select merchant_id, currency, settlement_cycle, period_start, period_end
    {% if is_incremental() -%}
    from {{ this }}
    {%- else -%}
    from {{ ref('int_settlement_frozen_lines') }} where 1 = 0
    {%- endif %}
),

runs as (
    select max(as_of_date) as closed_through from {{ ref('int_settlement_runs') }}
),

candidates as (
    {{ settlement_quiet_candidates('previous') }}
)

select c.*, {{ settlement_as_of() }} as closed_as_of
from candidates as c
cross join runs as r
where c.period_end < {{ settlement_open_day('r.closed_through') }}
