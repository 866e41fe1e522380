{{ config(materialized='incremental', unique_key='commission_id', full_refresh=false) }}
-- Which commission statement period each commission row (fct_commissions: a payment's or a
-- refund's share for one agent) goes on, decided once, when the row is first seen, and never
-- changed (settlement.md: a closed period never changes) - as int_settlement_placements does
-- for merchants' items, with the agent's statement_cycle.
--   A row first seen while its own period is still open (or closes in this very run) goes on
--   its own period.
--   A row first seen after its period was closed by an earlier run - a late capture or refund,
--   an agent put under a merchant retroactively - goes on the agent's period open at this run's
--   day, as an adjustment that names it (is_late).
{% set new_rows %}
    select
        c.commission_id,
        c.beneficiary_id as agent_id,
        a.statement_cycle,
        {{ cycle_period_start('a.statement_cycle', 'cast(c.occurred_at as date)') }}
            as natural_period_start,
        cast(c.occurred_at as date) as occurred_on
    from {{ ref('fct_commissions') }} as c
    inner join {{ ref('stg_clearhouse__agents') }} as a on a.agent_id = c.beneficiary_id
    {% if is_incremental() %}
    where not exists (select 1 from {{ this }} as p where p.commission_id = c.commission_id)
    {% endif %}
{% endset %}

{{ place_new_items('(' ~ new_rows ~ ')', 'commission_id', 'agent_id', 'statement_cycle') }}
