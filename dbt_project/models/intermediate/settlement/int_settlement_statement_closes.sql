{{ config(materialized='incremental', unique_key='statement_id', full_refresh=false) }}
-- settlement.md: "A statement for a closed period never changes silently." Its lines are frozen
-- (int_settlement_frozen_lines); the one figure of its head taken from the merchant rather than
-- from its lines is the settlement delay N of T+N (settles_on = period_end + N). This keeps the
-- N in force when the statement closed, so a later change of the merchant's T+N (PATCH
-- /merchants/{id}) moves the payout date of open statements only, never of one already closed
-- (and paid). One row per statement (a quiet one included), written at the first run that sees it closed, never
-- updated. Closed: its last day is before the day periods are open from (as
-- fct_settlement_statements' status says), so replaying an older day records nothing new.
with runs as (
    select max(as_of_date) as closed_through from {{ ref('int_settlement_runs') }}
),

statements as (
    select distinct statement_id, merchant_id, period_end
    from {{ ref('int_settlement_frozen_lines') }}
    union
    select statement_id, merchant_id, period_end
    from {{ ref('int_settlement_quiet_closes') }}
)

select
    s.statement_id,
    s.merchant_id,
    cast(coalesce(m.settlement_delay_days, 0) as integer) as settlement_delay_days,
    {{ settlement_as_of() }} as closed_as_of
from statements as s
cross join runs as r
left join {{ ref('stg_clearhouse__merchants') }} as m on m.merchant_id = s.merchant_id
where s.period_end < {{ settlement_open_day('r.closed_through') }}
{% if is_incremental() %}
  and not exists (select 1 from {{ this }} as c where c.statement_id = s.statement_id)
{% endif %}
