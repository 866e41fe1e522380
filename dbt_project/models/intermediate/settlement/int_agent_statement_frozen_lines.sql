{{ config(materialized='incremental', unique_key='line_id', full_refresh=false) }}
-- depends_on: {{ ref('int_settlement_runs') }}, {{ ref('stg_clearhouse__agents') }}, {{ ref('fct_commissions') }}
-- depends_on: {{ ref('int_agent_statement_placements') }}
-- The booked lines of agents' commission statements, written once and never updated
-- (settlement.md: a closed statement never changes silently), as int_settlement_frozen_lines
-- does for merchants:
--   * lines of periods that closed (their last day before the run's settlement_as_of day), as
--     they stood at the close;
--   * corrections: when a commission row already booked on a closed statement has changed since
--     (a retroactive price, model or tree change, a payment that is no longer captured), the
--     difference - what the row is now minus everything booked for it so far - is booked once,
--     on the agent's period open at this run, as an 'adjustment' line naming the row
--     ('correction:<commission_id>:<n>'). Booked as soon as it is seen, never recomputed.
{%- set columns = [
    'line_id', 'commission_id', 'statement_id', 'agent_id', 'statement_cycle', 'period_start',
    'period_end', 'currency', 'line_type', 'event_kind', 'event_id', 'payment_id', 'model',
    'level', 'is_late', 'is_correction', 'natural_period_start', 'occurred_at', 'amount_minor',
    'description', 'frozen_as_of'] %}

with closing as (
    select l.*, {{ settlement_as_of() }} as frozen_as_of
    from {{ ref('int_agent_statement_lines') }} as l
    where l.period_end < {{ settlement_as_of() }}
    {% if is_incremental() %}
      and not exists (select 1 from {{ this }} as f where f.line_id = l.line_id)
    {% endif %}
)

{% if is_incremental() %}
, booked as (
    -- per commission row: what the statements hold so far (its own line and corrections)
    select commission_id,
           sum(amount_minor) as amount_minor,
           count(case when is_correction then 1 end) as corrections
    from {{ this }}
    group by commission_id
),

previous_runs as (
    {{ previous_runs() }}
),

changed as (
    select
        o.*,
        b.corrections,
        cast(coalesce(c.amount_minor, 0) - b.amount_minor as {{ money_type() }}) as delta_minor,
        coalesce(a.statement_cycle, o.statement_cycle) as open_cycle,
        {{ settlement_open_day('r.closed_through') }} as open_day,
        r.closed_through,
        b.commission_id as correction_key
    from booked as b
    -- the row's own booked line: which agent, currency, model and natural period
    inner join {{ this }} as o on o.line_id = b.commission_id
    left join {{ ref('fct_commissions') }} as c on c.commission_id = b.commission_id
    left join {{ ref('stg_clearhouse__agents') }} as a on a.agent_id = o.agent_id
    cross join previous_runs as r
    where coalesce(c.amount_minor, 0) <> b.amount_minor
),

placed as (
    {{ correction_period('changed', 'agent_id', ref('int_agent_statement_placements'),
                         'statement_cycle') }}
),

corrections as (
    select
        'correction:' || p.commission_id || ':'
            || cast(p.corrections + 1 as {{ dbt.type_string() }}) as line_id,
        p.commission_id,
        p.agent_id || ':' || p.currency || ':' || {{ date_key('p.open_period_start') }}
            as statement_id,
        p.agent_id,
        p.open_statement_cycle as statement_cycle,
        p.open_period_start as period_start,
        p.open_period_end as period_end,
        p.currency,
        'adjustment' as line_type,
        p.event_kind,
        p.event_id,
        p.payment_id,
        p.model,
        p.level,
        true as is_late,
        true as is_correction,
        p.natural_period_start,
        p.occurred_at,
        p.delta_minor as amount_minor,
        'correction to commission ' || p.commission_id || ' (' || p.event_kind || ' '
            || p.event_id || ') of period ' || {{ date_key('p.natural_period_start') }} || ': '
            || cast(p.delta_minor as {{ dbt.type_string() }}) || ' ' || p.currency
            as description,
        {{ settlement_as_of() }} as frozen_as_of
    from placed as p
)
{% endif %}

select {{ columns | join(', ') }} from closing
{% if is_incremental() %}
union all
select {{ columns | join(', ') }} from corrections
{% endif %}
