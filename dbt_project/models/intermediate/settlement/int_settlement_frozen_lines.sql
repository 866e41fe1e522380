{{ config(materialized='incremental', unique_key='line_id') }}
-- Statement lines as they stood when their period closed (its last day before the run's
-- settlement_as_of day), written once and never updated: later rates, prices or merchant
-- settings cannot change a closed statement (settlement.md).
select l.*, {{ settlement_as_of() }} as frozen_as_of
from {{ ref('int_settlement_lines') }} as l
where l.period_end < {{ settlement_as_of() }}
{% if is_incremental() %}
  and not exists (select 1 from {{ this }} as f where f.line_id = l.line_id)
{% endif %}
