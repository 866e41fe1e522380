-- Merchant statement lines (settlement.md): one per payment, refund, chargeback, payout and
-- manual adjustment, each linked to what it came from (payment_id, refund_id, payout_id =
-- withdrawal id, adjustment_id, psp_line_id), on the statement of its merchant's cycle period
-- (daily, weekly from Monday, monthly) in the statement currency, with the FX rate it used.
-- Lines of closed periods come frozen (int_settlement_frozen_lines); open periods are live,
-- apart from corrections to items of closed periods (is_correction), booked when first seen.
-- Signs: net_minor = gross_minor - fee_minor is the line's effect on the merchant's balance.
{%- set columns = 'line_id, item_id, statement_id, merchant_id, settlement_cycle, period_start,
    period_end, currency, line_type, item_type, is_late, is_correction, natural_period_start,
    payment_id, refund_id, payout_id, adjustment_id, psp_line_id, occurred_at, txn_currency,
    txn_gross_minor, txn_fee_minor, fx_rate_id, fx_rate, fx_derivation, gross_minor, fee_minor,
    net_minor, description, created_by' %}
{#- lines frozen before corrections existed carry NULL in the two newer columns #}
{%- set frozen_columns = columns
    | replace('line_id, item_id,', 'line_id, coalesce(item_id, line_id) as item_id,')
    | replace('is_correction,', 'coalesce(is_correction, false) as is_correction,') %}
with frozen as (
    select * from {{ ref('int_settlement_frozen_lines') }}
),

live as (
    select l.*
    from {{ ref('int_settlement_lines') }} as l
    where not exists (select 1 from frozen as f where f.line_id = l.line_id)
)

select {{ frozen_columns }}, true as is_frozen
from frozen
union all
select {{ columns }}, false
from live
