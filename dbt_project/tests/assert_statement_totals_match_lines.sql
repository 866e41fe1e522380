{{ config(meta={'dagster': {'ref': {'name': 'fct_settlement_statements'}}}) }}
-- Every statement total is the sum of its lines (each line links back to what it came from),
-- and the statement's own arithmetic holds (settlement.md). A statement without lines (a quiet
-- period) shows no activity: nothing in between, opening = closing.

with statement_lines as (
    select statement_id, line_type, gross_minor, net_minor, fee_minor
    from {{ ref('fct_settlement_statement_lines') }}
    union all
    -- a quiet statement counts as one line of nothing, so it is held to zero activity
    select statement_id, 'none', 0, 0, 0
    from {{ ref('fct_settlement_statements') }} as s
    where not exists (select 1 from {{ ref('fct_settlement_statement_lines') }} as l
                      where l.statement_id = s.statement_id)
),

line_totals as (
    select
        statement_id,
        sum(case when line_type = 'payment' then gross_minor else 0 end) as gross_minor,
        0 - sum(case when line_type = 'refund' then gross_minor else 0 end) as refunds_minor,
        0 - sum(case when line_type = 'chargeback' then net_minor else 0 end) as chargebacks_minor,
        sum(case when line_type in ('payment', 'refund') then fee_minor else 0 end) as fees_minor,
        0 - sum(case when line_type = 'adjustment' then net_minor else 0 end) as adjustments_minor,
        0 - sum(case when line_type = 'payout' then net_minor else 0 end) as payouts_minor,
        sum(net_minor) as net_minor,
        count(case when line_type = 'payment' then 1 end) as payment_count,
        count(case when line_type = 'refund' then 1 end) as refund_count
    from statement_lines
    group by statement_id
)

select s.statement_id
from {{ ref('fct_settlement_statements') }} as s
full outer join line_totals as l
    on l.statement_id = s.statement_id
where s.statement_id is null
   or l.statement_id is null
   or s.gross_minor <> l.gross_minor
   or s.refunds_minor <> l.refunds_minor
   or s.chargebacks_minor <> l.chargebacks_minor
   or s.fees_minor <> l.fees_minor
   or s.adjustments_minor <> l.adjustments_minor
   or s.payouts_minor <> l.payouts_minor
   or s.net_activity_minor <> s.opening_balance_minor + l.net_minor + s.payouts_minor
   or s.closing_balance_minor <> s.opening_balance_minor + l.net_minor
   or s.payment_count <> l.payment_count
   or s.refund_count <> l.refund_count
