-- depends_on: {{ ref('int_fx__rates') }} (the rate lookup is the applicable_fx_rates macro)
{{ config(materialized='table') }}
-- Everything that moves a merchant's settlement balance (settlement.md), one row per item, at
-- the time it happened, in its own currency and converted to the merchant's settlement currency:
--   payment    captured (gross +amount, fee F charged)
--   refund     succeeded (gross -amount, fee reversed pro rata: negative)
--   chargeback the channel's chargeback rows on its PSP settlement files (gross = its amount,
--              negative; the fee is not given back). A row repeating an earlier one exactly
--              (same channel, channel reference, gross, currency and transaction_at: the same
--              chargeback re-sent on a later file, whose line is a new psp_line_id) is the same
--              chargeback and counts once, as its first line (earliest settlement day, then
--              line: the order reconciliation ranks a repeated channel line by). Then every
--              chargeback of a payment counts (a second one after a representment takes money
--              too) as long as together they take back at most the payment's amount: a row
--              beyond that repeats an earlier one in another guise (re-sent with another
--              time, say) and is left out
--   payout     a merchant withdrawal paid out (gross -amount), dated when it was marked paid,
--              on the statements of its own currency (the balance it was paid from)
--   adjustment a manual adjustment finance posted (signed: + credits the merchant)
--   token_spend on the BUYER's statement, an agent payment token's call: the call is a payment
--              of the seller (above), paid out of the balance of the merchant that issued the
--              token (serving/x402/booking.py: the capture debits the buyer's merchant_payable),
--              so the buyer's statement takes it off (gross -amount), and a refund of it gives
--              it back (+amount); no fee. Shown as adjustment lines naming the payment.
-- net_minor = gross_minor - fee_minor is the item's effect on the balance.
--
-- FX (money.md point 6): converted with the ECB rate of the item's day, or the latest before it
-- (weekends, holidays); USDC/USDT at par with USD. Gross and fee are converted separately and
-- net is their difference, so a line always adds up. With no rate at all for the pair the item
-- settles in kind: it stays in its own currency, on a statement in that currency.

with merchants as (
    select merchant_id, settlement_currency, settlement_cycle, settlement_delay_days
    from {{ ref('stg_clearhouse__merchants') }}
),

payments as (
    select
        'payment:' || payment_id as item_id, 'payment' as item_type, merchant_id,
        payment_id, cast(null as {{ dbt.type_string() }}) as refund_id,
        cast(null as {{ dbt.type_string() }}) as payout_id,
        cast(null as {{ dbt.type_string() }}) as adjustment_id,
        cast(null as {{ dbt.type_string() }}) as psp_line_id,
        captured_at as occurred_at, currency,
        cast(amount_minor as {{ money_type() }}) as txn_gross_minor,
        -- captured but unpriced: no fee (int_payment_fees warns about it)
        cast(coalesce(fee_minor, 0) as {{ money_type() }}) as txn_fee_minor,
        cast(null as {{ dbt.type_string() }}) as reason,
        cast(null as {{ dbt.type_string() }}) as created_by
    from {{ ref('int_payment_fees') }}
),

refunds as (
    select
        'refund:' || refund_id, 'refund', merchant_id, payment_id, refund_id, null, null, null,
        succeeded_at, currency,
        cast(0 - refund_minor as {{ money_type() }}),
        cast(0 - coalesce(fee_reversed_minor, 0) as {{ money_type() }}),
        null, null
    from {{ ref('int_refund_fee_reversals') }}
),

-- the payment a chargeback row names, as reconciliation reads it: its channel_reference on the
-- line's channel, else the platform's payment id in merchant_reference (reconciliation.md "Keys")
chargeback_rows as (
    select
        l.psp_line_id, l.transaction_at, l.currency, l.gross_minor,
        coalesce(pay_ref.payment_id, pay_id.payment_id) as payment_id,
        coalesce(pay_ref.merchant_id, pay_id.merchant_id) as merchant_id,
        coalesce(pay_ref.amount_minor, pay_id.amount_minor) as payment_minor,
        -- the same chargeback on several lines (a later file re-sending it): the first line
        -- is the chargeback, the others repeat it. First as reconciliation ranks a channel
        -- line settled twice (int_recon_psp_payment_lines): earliest settlement day, then line
        row_number() over (
            partition by coalesce(pay_ref.payment_id, pay_id.payment_id), l.channel,
                         l.channel_reference, l.gross_minor, l.currency, l.transaction_at
            order by l.settlement_date, l.line_number, l.psp_line_id) as repeat_rank
    from {{ ref('stg_files__psp_lines') }} as l
    {{ recon_name_joins(ref('stg_clearhouse__payments'), 'payment_id', 'pay') }}
    where l.record_type = 'chargeback'
      and coalesce(pay_ref.payment_id, pay_id.payment_id) is not null
),

-- a payment's chargebacks, each once, in the order the channel booked them, with what they
-- take back so far: the first keeps the item id `chargeback:<payment id>`, a later one adds
-- its PSP line
chargeback_order as (
    select
        r.*,
        row_number() over (partition by payment_id order by transaction_at, psp_line_id) as nth,
        sum(0 - gross_minor) over (partition by payment_id
                                   order by transaction_at, psp_line_id
                                   rows between unbounded preceding and current row)
            as taken_minor
    from chargeback_rows as r
    where r.repeat_rank = 1
),

chargeback_items as (
    select * from chargeback_order where taken_minor <= payment_minor or nth = 1
),

chargebacks as (
    select
        case when nth = 1 then 'chargeback:' || payment_id
             else 'chargeback:' || payment_id || ':' || psp_line_id end,
        'chargeback', merchant_id, payment_id, null, null, null,
        psp_line_id, transaction_at, currency,
        cast(gross_minor as {{ money_type() }}), cast(0 as {{ money_type() }}), null, null
    from chargeback_items
),

payouts as (
    select
        'payout:' || withdrawal_id, 'payout', owner_id, null, null, withdrawal_id, null, null,
        paid_at, currency,
        cast(0 - amount_minor as {{ money_type() }}), cast(0 as {{ money_type() }}),
        null, decided_by
    from {{ ref('stg_clearhouse__withdrawals') }}
    where owner_type = 'merchant' and status = 'paid'
),

adjustments as (
    select
        'adjustment:' || adjustment_id, 'adjustment', merchant_id, null, null, null,
        adjustment_id, null, effective_at, currency,
        cast(amount_minor as {{ money_type() }}), cast(0 as {{ money_type() }}),
        reason, created_by
    from {{ ref('stg_clearhouse__settlement_adjustments') }}
),

-- the merchant whose balance paid each agent-token payment: its capture's debit leg
token_buyers as (
    select p.payment_id, p.merchant_id as seller_id,
           substring(l.account, {{ 'merchant_payable:' | length + 1 }}) as buyer_id
    from {{ ref('stg_clearhouse__payments') }} as p
    join {{ ref('stg_clearhouse__ledger_entries') }} as l
        on  l.payment_id = p.payment_id
        and l.kind = 'capture'
        and l.account like 'merchant_payable:%'
        and l.amount_minor > 0
    where p.channel_id = '{{ var("agent_token_channel_id") }}'
),

token_spends as (
    select
        'token_spend:' || f.payment_id, 'token_spend', b.buyer_id, f.payment_id, null, null,
        null, null, f.captured_at, f.currency,
        cast(0 - f.amount_minor as {{ money_type() }}), cast(0 as {{ money_type() }}),
        'agent payment token: paid ' || b.seller_id || ' (payment ' || f.payment_id || ')',
        null
    from {{ ref('int_payment_fees') }} as f
    join token_buyers as b on b.payment_id = f.payment_id
),

token_refunds as (
    select
        'token_spend:' || r.refund_id, 'token_spend', b.buyer_id, r.payment_id, r.refund_id,
        null, null, null, r.succeeded_at, r.currency,
        cast(r.refund_minor as {{ money_type() }}), cast(0 as {{ money_type() }}),
        'agent payment token: refund ' || r.refund_id || ' by ' || b.seller_id
            || ' (payment ' || r.payment_id || ')',
        null
    from {{ ref('int_refund_fee_reversals') }} as r
    join token_buyers as b on b.payment_id = r.payment_id
),

items as (
    select * from payments
    union all select * from refunds
    union all select * from chargebacks
    union all select * from payouts
    union all select * from adjustments
    union all select * from token_spends
    union all select * from token_refunds
),

-- A payout pays out the balance of its own currency (the API lets a merchant withdraw only
-- from its settled balance in that currency: the settlement currency, one it settled in before
-- a change, or one kept in kind): it goes on that currency's statements, never converted.
targets as (
    select
        i.*,
        case when i.item_type = 'payout' then i.currency else m.settlement_currency end
            as settlement_currency,
        m.settlement_cycle,
        m.settlement_delay_days
    from items as i
    join merchants as m on m.merchant_id = i.merchant_id
),

placed as (
    select
        t.*,
        cast(t.occurred_at as date) as occurred_on,
        {{ fx_anchor('t.currency') }} as fx_from,
        {{ fx_anchor('t.settlement_currency') }} as fx_to
    from targets as t
),

-- the latest ECB rate on or before each (pair, day) needed: looked up once per pair and day
needed as (
    select distinct fx_from, fx_to, occurred_on from placed where fx_from <> fx_to
),

rated as (
    {{ applicable_fx_rates('needed', 'occurred_on') }}
),

with_rate as (
    select
        p.*,
        case
            when p.currency = p.settlement_currency then 'none'
            when p.fx_from = p.fx_to then 'peg'
            when r.fx_rate_id is null then 'in_kind'
            else r.derivation
                 || case when p.fx_from <> p.currency or p.fx_to <> p.settlement_currency
                         then '+peg' else '' end
        end as fx_derivation,
        {{ applied_fx_rate_id('p', 'r') }} as fx_rate_id,
        {{ applied_fx_rate('p', 'r') }} as fx_rate
    from placed as p
    left join rated as r
        on  r.fx_from = p.fx_from and r.fx_to = p.fx_to and r.occurred_on = p.occurred_on
        and r.nth = 1
),

converted as (
    select
        w.*,
        case when w.fx_derivation = 'in_kind' then w.currency else w.settlement_currency end
            as statement_currency,
        e_from.exponent as exp_from,
        e_to.exponent as exp_to
    from with_rate as w
    left join {{ ref('ref_currencies') }} as e_from on e_from.code = w.currency
    left join {{ ref('ref_currencies') }} as e_to on e_to.code = w.settlement_currency
)

select
    item_id,
    item_type,
    merchant_id,
    payment_id,
    refund_id,
    payout_id,
    adjustment_id,
    psp_line_id,
    occurred_at,
    occurred_on,
    settlement_cycle,
    settlement_delay_days,
    {{ cycle_period_start('settlement_cycle', 'occurred_on') }} as natural_period_start,
    currency as txn_currency,
    txn_gross_minor,
    txn_fee_minor,
    cast(txn_gross_minor - txn_fee_minor as {{ money_type() }}) as txn_net_minor,
    statement_currency,
    fx_rate_id,
    fx_rate,
    fx_derivation,
    gross_minor,
    fee_minor,
    cast(gross_minor - fee_minor as {{ money_type() }}) as net_minor,
    reason,
    created_by
from (
    select
        c.*,
        {{ statement_amount('c.txn_gross_minor', 'c.currency', 'c.statement_currency',
                            'c.fx_rate', 'c.exp_from', 'c.exp_to') }} as gross_minor,
        {{ statement_amount('c.txn_fee_minor', 'c.currency', 'c.statement_currency',
                            'c.fx_rate', 'c.exp_from', 'c.exp_to') }} as fee_minor
    from converted as c
) as amounts
