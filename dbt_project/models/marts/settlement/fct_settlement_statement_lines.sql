-- One line per captured payment and per succeeded refund, each linked to its merchant's daily
-- statement (settlement.md). Daily cycle: the statement day is the UTC date of captured_at
-- (payments) or succeeded_at (refunds). Amounts in the transaction currency (no FX yet).
-- Signs: gross_minor refunds negative; fee_minor charged positive, reversal negative;
-- net_minor = gross_minor - fee_minor.

with payment_lines as (
    select
        'payment:' || payment_id as line_id,
        merchant_id,
        currency,
        'payment' as line_type,
        payment_id,
        cast(null as {{ dbt.type_string() }}) as refund_id,
        captured_at as occurred_at,
        cast(captured_at as date) as period_start,
        cast(amount_minor as {{ money_type() }}) as gross_minor,
        -- captured but unpriced: no fee on the statement (int_payment_fees warns about it)
        cast(coalesce(fee_minor, 0) as {{ money_type() }}) as fee_minor
    from {{ ref('int_payment_fees') }}
),

refund_lines as (
    select
        'refund:' || refund_id as line_id,
        merchant_id,
        currency,
        'refund' as line_type,
        payment_id,
        refund_id,
        succeeded_at as occurred_at,
        cast(succeeded_at as date) as period_start,
        cast(0 - refund_minor as {{ money_type() }}) as gross_minor,
        cast(0 - coalesce(fee_reversed_minor, 0) as {{ money_type() }}) as fee_minor
    from {{ ref('int_refund_fee_reversals') }}
),

lines as (
    select * from payment_lines
    union all
    select * from refund_lines
)

select
    line_id,
    merchant_id,
    merchant_id || ':' || currency || ':' || {{ date_key('period_start') }} as statement_id,
    'daily' as settlement_cycle,
    period_start,
    period_start as period_end,
    currency,
    line_type,
    payment_id,
    refund_id,
    occurred_at,
    gross_minor,
    fee_minor,
    cast(gross_minor - fee_minor as {{ money_type() }}) as net_minor
from lines
