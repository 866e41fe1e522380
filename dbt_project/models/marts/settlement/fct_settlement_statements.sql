-- Merchant settlement statements (settlement.md): one per merchant, cycle period and statement
-- currency (the settlement currency; another only for items settled in kind, having no FX
-- rate): every period from the merchant's first line on, a quiet one (no line) included with
-- opening = closing and nothing in between (int_settlement_quiet_periods).
--     opening + gross - refunds - chargebacks - fees - adjustments = net_activity
--     net_activity - payouts = closing  (= the next statement's opening)
-- as settlement.md lays it out: net_activity is the running total after the adjustments, so it
-- includes the opening balance (closing - opening is the period's own movement).
-- Statements chain in order of their last day (then first day): after a cycle change
-- mid-period, a new-cycle statement that ends first does not carry the old cycle's still-open
-- one, so a closed statement's opening only depends on statements closed before it.
-- Every column is a positive amount that the formula subtracts, so adjustments_minor is
-- negative when the adjustments credit the merchant (a late capture, a goodwill credit).
-- status: 'closed' once the period's last day is before the settlement_as_of day of this run
-- or of any earlier one (then every line is frozen and the statement never changes: replaying
-- an older day does not reopen it), else 'open' (provisional).
-- settles_on = period_end + the merchant's settlement_delay_days (T+N): the payout date; for a
-- closed statement the N in force when it closed (int_settlement_statement_closes), so a later
-- change of the merchant's T+N never moves it.

with lines as (
    select * from {{ ref('fct_settlement_statement_lines') }}
),

closed_through as (
    select max(as_of_date) as closed_before from {{ ref('int_settlement_runs') }}
),

merchants as (
    select merchant_id, settlement_delay_days from {{ ref('stg_clearhouse__merchants') }}
),

closes as (
    select statement_id, settlement_delay_days from {{ ref('int_settlement_statement_closes') }}
),

activity as (
    select
        statement_id,
        merchant_id,
        settlement_cycle,
        period_start,
        period_end,
        currency,
        cast(sum(case when line_type = 'payment' then gross_minor else 0 end)
             as {{ money_type() }}) as gross_minor,
        cast(0 - sum(case when line_type = 'refund' then gross_minor else 0 end)
             as {{ money_type() }}) as refunds_minor,
        cast(0 - sum(case when line_type = 'chargeback' then net_minor else 0 end)
             as {{ money_type() }}) as chargebacks_minor,
        cast(sum(case when line_type in ('payment', 'refund') then fee_minor else 0 end)
             as {{ money_type() }}) as fees_minor,
        cast(0 - sum(case when line_type = 'adjustment' then net_minor else 0 end)
             as {{ money_type() }}) as adjustments_minor,
        cast(0 - sum(case when line_type = 'payout' then net_minor else 0 end)
             as {{ money_type() }}) as payouts_minor,
        count(case when line_type = 'payment' then 1 end) as payment_count,
        count(case when line_type = 'refund' then 1 end) as refund_count,
        count(case when line_type = 'chargeback' then 1 end) as chargeback_count,
        count(case when line_type = 'adjustment' then 1 end) as adjustment_count,
        count(case when line_type = 'payout' then 1 end) as payout_count
    from lines
    group by statement_id, merchant_id, settlement_cycle, period_start, period_end, currency
    union all
    select
        statement_id, merchant_id, settlement_cycle, period_start, period_end, currency,
        cast(0 as {{ money_type() }}), cast(0 as {{ money_type() }}),
        cast(0 as {{ money_type() }}), cast(0 as {{ money_type() }}),
        cast(0 as {{ money_type() }}), cast(0 as {{ money_type() }}),
        0, 0, 0, 0, 0
    from {{ ref('int_settlement_quiet_periods') }}
),

movement as (
    select
        *,
        cast(gross_minor - refunds_minor - chargebacks_minor - fees_minor - adjustments_minor
             - payouts_minor as {{ money_type() }}) as movement_minor
    from activity
),

balanced as (
    select
        *,
        cast(coalesce(sum(movement_minor) over (
            partition by merchant_id, currency
            order by period_end, period_start
            rows between unbounded preceding and 1 preceding
        ), 0) as {{ money_type() }}) as opening_balance_minor
    from movement
)

select
    b.statement_id,
    b.merchant_id,
    b.settlement_cycle,
    b.period_start,
    b.period_end,
    {{ add_days('b.period_end',
                'coalesce(cl.settlement_delay_days, m.settlement_delay_days, 0)') }} as settles_on,
    case when b.period_end < {{ settlement_open_day('c.closed_before') }}
         then 'closed' else 'open' end as status,
    b.currency,
    b.opening_balance_minor,
    b.gross_minor,
    b.refunds_minor,
    b.chargebacks_minor,
    b.fees_minor,
    b.adjustments_minor,
    cast(b.opening_balance_minor + b.movement_minor + b.payouts_minor
         as {{ money_type() }}) as net_activity_minor,
    b.payouts_minor,
    cast(b.opening_balance_minor + b.movement_minor
         as {{ money_type() }}) as closing_balance_minor,
    cast(b.payment_count as bigint) as payment_count,
    cast(b.refund_count as bigint) as refund_count,
    cast(b.chargeback_count as bigint) as chargeback_count,
    cast(b.adjustment_count as bigint) as adjustment_count,
    cast(b.payout_count as bigint) as payout_count
from balanced as b
left join merchants as m on m.merchant_id = b.merchant_id
left join closes as cl on cl.statement_id = b.statement_id
cross join closed_through as c
