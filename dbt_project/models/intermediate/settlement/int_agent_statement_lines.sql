-- Every placed commission row as a line of its agent's commission statement, with today's
-- amount. Lines of closed periods are taken from int_agent_statement_frozen_lines instead
-- (fct_agent_commission_statement_lines). A late row is an 'adjustment' line naming its
-- payment or refund and its natural period; the others are 'commission' lines, which the mart
-- sums per model and level.
select
    p.commission_id as line_id,
    p.commission_id,
    p.agent_id || ':' || c.currency || ':' || {{ date_key('p.period_start') }} as statement_id,
    p.agent_id,
    p.statement_cycle,
    p.period_start,
    p.period_end,
    c.currency,
    case when p.is_late then 'adjustment' else 'commission' end as line_type,
    c.event_kind,
    c.event_id,
    c.payment_id,
    c.model,
    c.level,
    p.is_late,
    false as is_correction,
    p.natural_period_start,
    c.occurred_at,
    c.amount_minor,
    case when p.is_late then 'late ' || c.event_kind || ' ' || c.event_id || ' of period '
                             || {{ date_key('p.natural_period_start') }} end as description
from {{ ref('int_agent_statement_placements') }} as p
inner join {{ ref('fct_commissions') }} as c on c.commission_id = p.commission_id
