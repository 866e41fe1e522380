-- Every settlement item on the statement its placement chose, with today's amounts. Lines of
-- closed periods are taken from int_settlement_frozen_lines instead (fct_settlement_statement_lines).
-- A late item is an 'adjustment' line naming it: its own line_id, type and natural period.
select
    i.item_id as line_id,
    i.item_id,
    p.merchant_id || ':' || i.statement_currency || ':' || {{ date_key('p.period_start') }}
        as statement_id,
    p.merchant_id,
    p.settlement_cycle,
    p.period_start,
    p.period_end,
    i.statement_currency as currency,
    -- a late item, and an agent token's spend on the buyer's side, are adjustment lines
    case when p.is_late or i.item_type = 'token_spend' then 'adjustment' else i.item_type end
        as line_type,
    i.item_type,
    p.is_late,
    false as is_correction,
    p.natural_period_start,
    i.payment_id,
    i.refund_id,
    i.payout_id,
    i.adjustment_id,
    i.psp_line_id,
    i.occurred_at,
    i.txn_currency,
    i.txn_gross_minor,
    i.txn_fee_minor,
    i.fx_rate_id,
    i.fx_rate,
    i.fx_derivation,
    i.gross_minor,
    i.fee_minor,
    i.net_minor,
    case
        when p.is_late then 'late ' || i.item_type || ' ' || i.item_id || ' of period '
                            || {{ date_key('p.natural_period_start') }}
        when i.item_type in ('adjustment', 'token_spend') then i.reason
    end as description,
    i.created_by
from {{ ref('int_settlement_placements') }} as p
join {{ ref('int_settlement_items') }} as i on i.item_id = p.item_id
