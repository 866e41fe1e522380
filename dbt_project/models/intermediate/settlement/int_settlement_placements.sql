{{ config(materialized='incremental', unique_key='item_id', full_refresh=false) }}
-- Which statement period each settlement item goes on, decided once, when the item is first
-- seen, and never changed (settlement.md: a closed period never changes).
--   An item first seen while its own period is still open (or closes in this very run) goes on
--   its own period.
--   An item first seen after its period was closed by an earlier run - a late capture or
--   chargeback - goes on the period open at this run's day, as an adjustment that names it
--   (is_late). (An item settled in kind whose FX rate arrives late is not new: its in-kind
--   line is reversed and the item re-booked converted by int_settlement_frozen_lines.)
{% set new_items %}
    select i.item_id, i.merchant_id, i.settlement_cycle, i.natural_period_start, i.occurred_on
    from {{ ref('int_settlement_items') }} as i
    {% if is_incremental() %}
    where not exists (select 1 from {{ this }} as p where p.item_id = i.item_id)
    {% endif %}
{% endset %}

{{ place_new_items('(' ~ new_items ~ ')', 'item_id', 'merchant_id', 'settlement_cycle') }}
