{{ config(materialized='table') }}
-- commission.md: one row per captured payment and agent on its chain, from the merchant's
-- direct agent (level 1) up to the top agent, with the tree, models and prices in force at the
-- payment's captured_at (valid_from inclusive, valid_to exclusive).
--   up_prev_minor: what reaches this agent from below (up_{i-1}; F at level 1)
--   markup:      commission = up_{i-1} - fee(cost_i), up_i = fee(cost_i)
--   percentage:  commission = round_half_up(amount * pct_bps / 10000), up_i = up_{i-1}
--   fixed:       commission = fixed_minor,                             up_i = up_{i-1}
-- An agent with no model in force, or a markup agent with no cost price in force, earns 0 and
-- passes up what it received (flagged by has_model / has_cost_price; see the yml tests).
-- The walk stops at 32 levels, so a cycle in bad data cannot recurse forever.

{#- The model and the cost price in force for chain row c's agent (used twice below). -#}
{% set agent_terms %}
left join models as cm
        on  cm.agent_id = c.agent_id
        and cm.currency = c.currency
        and {{ in_force('cm', 'c.captured_at') }}
    left join cost_prices as cp
        on  cp.subject_id = c.agent_id
        and cp.currency = c.currency
        and {{ in_force('cp', 'c.captured_at') }}
{%- endset %}

with recursive

fees as (
    select f.payment_id, f.merchant_id, f.currency, f.amount_minor, f.captured_at, f.fee_minor
    from {{ ref('int_payment_fees') }} as f
    where f.fee_minor is not null
),

merchants as (
    select merchant_id, agent_id from {{ ref('stg_clearhouse__merchants') }}
),

parents as (
    select * from {{ ref('stg_clearhouse__agent_parents') }}
),

models as (
    select * from {{ ref('stg_clearhouse__commission_models') }}
),

cost_prices as (
    select * from {{ ref('stg_clearhouse__prices') }} where subject_type = 'agent'
),

chain as (
    select
        f.payment_id,
        f.captured_at,
        f.currency,
        f.amount_minor,
        1 as level,
        m.agent_id,
        cast(f.fee_minor as {{ money_type() }}) as up_prev_minor
    from fees as f
    inner join merchants as m on m.merchant_id = f.merchant_id
    where m.agent_id is not null

    union all

    select
        c.payment_id,
        c.captured_at,
        c.currency,
        c.amount_minor,
        c.level + 1 as level,
        ap.parent_agent_id as agent_id,
        cast(case
            when cm.model = 'markup' and cp.price_id is not null
                then {{ fee_minor('c.amount_minor', 'cp.rate_bps', 'coalesce(cp.fixed_minor, 0)') }}
            else c.up_prev_minor
        end as {{ money_type() }}) as up_prev_minor
    from chain as c
    inner join parents as ap
        on  ap.agent_id = c.agent_id
        and {{ in_force('ap', 'c.captured_at') }}
        and ap.parent_agent_id is not null
    {{ agent_terms }}
    where c.level < 32
),

levels as (
    select
        c.payment_id,
        c.captured_at,
        c.currency,
        c.amount_minor,
        c.level,
        c.agent_id,
        c.up_prev_minor,
        cm.commission_model_id,
        cm.model,
        cm.pct_bps,
        cm.fixed_minor as model_fixed_minor,
        cp.price_id as cost_price_id,
        cp.rate_bps as cost_rate_bps,
        cast(coalesce(cp.fixed_minor, 0) as {{ money_type() }}) as cost_fixed_minor,
        case when cm.model = 'markup' and cp.price_id is not null
             then {{ fee_minor('c.amount_minor', 'cp.rate_bps', 'coalesce(cp.fixed_minor, 0)') }}
        end as cost_fee_minor
    from chain as c
    {{ agent_terms }}
)

select
    payment_id,
    captured_at,
    currency,
    amount_minor,
    level,
    agent_id,
    commission_model_id,
    model,
    pct_bps,
    model_fixed_minor,
    cost_price_id,
    cost_rate_bps,
    cost_fixed_minor,
    cost_fee_minor,
    up_prev_minor,
    cast(case when cost_fee_minor is not null then cost_fee_minor else up_prev_minor end
         as {{ money_type() }}) as up_minor,
    cast(case
        when model = 'markup' and cost_fee_minor is not null then up_prev_minor - cost_fee_minor
        when model = 'percentage' then {{ fee_minor('amount_minor', 'pct_bps') }}
        when model = 'fixed' then coalesce(model_fixed_minor, 0)
        else 0
    end as {{ money_type() }}) as commission_minor,
    commission_model_id is not null as has_model,
    model <> 'markup' or cost_price_id is not null as has_cost_price
from levels
