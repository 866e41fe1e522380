-- depends_on: {{ ref('int_fx__rates') }} (the rate lookup is the applicable_fx_rates macro)
-- Per merchant, UTC day of the payment's creation, channel, payment method and currency: a
-- cohort view of the payments created that day (how many were captured, for how much, how much
-- of them has been refunded so far, whenever the refund succeeded), in the payment's currency
-- and in the merchant's settlement currency.
--   success_rate       = captured_count / payment_count
--   refund_rate        = refunded_payment_count / captured_count (payments with a succeeded
--                        refund, partial or full, among those captured)
--   refund_amount_rate = refunded_minor / captured_minor
-- all exact DECIMAL(9,6), half-up, computed on integers (no DOUBLE); NULL when the denominator
-- is 0. average_ticket_minor = captured_minor / captured_count, half up.
-- Settlement currency (money.md 6): each payment and each of its refunds is converted with the
-- ECB rate of the row's day (the latest on or before it, USDC/USDT at par with USD), half up per
-- line, then summed; fx_rate_id / fx_rate name the rate (NULL when no conversion was needed).
-- With no rate for the pair the settlement figures are NULL (never guessed) and fx_rate_id is
-- NULL; the statement then settles the item in kind.

with payments as (
    select * from {{ ref('fct_payments') }}
),

merchants as (
    select merchant_id, settlement_currency from {{ ref('stg_clearhouse__merchants') }}
),

refunds as (
    select payment_id, refund_id, amount_minor
    from {{ ref('stg_clearhouse__refunds') }}
    where status = 'succeeded'
      and succeeded_at is not null
),

base as (
    select
        p.*,
        cast(p.created_at as date) as day,
        m.settlement_currency,
        {{ fx_anchor('p.currency') }} as fx_from,
        {{ fx_anchor('m.settlement_currency') }} as fx_to
    from payments as p
    join merchants as m on m.merchant_id = p.merchant_id
),

needed as (
    select distinct fx_from, fx_to, day from base where fx_from <> fx_to
),

rated as (
    {{ applicable_fx_rates('needed', 'day') }}
),

with_rate as (
    select
        b.*,
        {{ applied_fx_rate_id('b', 'r') }} as fx_rate_id,
        {{ applied_fx_rate('b', 'r') }} as fx_rate,
        e_from.exponent as exp_from,
        e_to.exponent as exp_to
    from base as b
    left join rated as r
        on r.fx_from = b.fx_from and r.fx_to = b.fx_to and r.day = b.day and r.nth = 1
    left join {{ ref('ref_currencies') }} as e_from on e_from.code = b.currency
    left join {{ ref('ref_currencies') }} as e_to on e_to.code = b.settlement_currency
),

payment_refunds as (
    select
        w.payment_id,
        count(*) as refund_count,
        cast(sum(rf.amount_minor) as {{ money_type() }}) as refunded_minor,
        cast(sum({{ statement_amount('rf.amount_minor', 'w.currency', 'w.settlement_currency',
                                     'w.fx_rate', 'w.exp_from', 'w.exp_to') }})
             as {{ money_type() }}) as refunded_settlement_minor
    from refunds as rf
    join with_rate as w on w.payment_id = rf.payment_id
    group by w.payment_id
),

daily as (
    select
        w.merchant_id,
        w.day,
        w.channel_id,
        w.payment_method_type,
        w.currency,
        w.settlement_currency,
        w.fx_rate_id,
        w.fx_rate,
        count(*) as payment_count,
        count(case when w.is_captured then 1 end) as captured_count,
        cast(coalesce(sum(case when w.is_captured then w.amount_minor end), 0)
             as {{ money_type() }}) as captured_minor,
        cast(coalesce(sum(case when w.is_captured then
             {{ statement_amount('w.amount_minor', 'w.currency', 'w.settlement_currency',
                                 'w.fx_rate', 'w.exp_from', 'w.exp_to') }} end), 0)
             as {{ money_type() }}) as captured_settlement_minor,
        cast(coalesce(sum(pr.refunded_minor), 0) as {{ money_type() }}) as refunded_minor,
        cast(coalesce(sum(pr.refunded_settlement_minor), 0) as {{ money_type() }})
            as refunded_settlement_minor,
        coalesce(sum(pr.refund_count), 0) as refund_count,
        count(pr.payment_id) as refunded_payment_count
    from with_rate as w
    left join payment_refunds as pr on pr.payment_id = w.payment_id
    group by w.merchant_id, w.day, w.channel_id, w.payment_method_type, w.currency,
        w.settlement_currency, w.fx_rate_id, w.fx_rate
)

select
    merchant_id,
    day,
    channel_id,
    payment_method_type,
    currency,
    cast(payment_count as bigint) as payment_count,
    cast(captured_count as bigint) as captured_count,
    {{ ratio_decimal('captured_count', 'payment_count', 6, 9) }} as success_rate,
    captured_minor,
    refunded_minor,
    cast(refund_count as bigint) as refund_count,
    cast(refunded_payment_count as bigint) as refunded_payment_count,
    {{ ratio_decimal('refunded_payment_count', 'captured_count', 6, 9) }} as refund_rate,
    {{ ratio_decimal('refunded_minor', 'captured_minor', 6, 9) }} as refund_amount_rate,
    case when captured_count > 0
         then {{ round_half_up_div('captured_minor', 'captured_count') }}
    end as average_ticket_minor,
    settlement_currency,
    case when fx_rate is not null then captured_settlement_minor end
        as captured_settlement_minor,
    case when fx_rate is not null then refunded_settlement_minor end
        as refunded_settlement_minor,
    case when fx_rate is not null and captured_count > 0
         then {{ round_half_up_div('captured_settlement_minor', 'captured_count') }}
    end as average_ticket_settlement_minor,
    fx_rate_id,
    fx_rate
from daily
