{{ config(meta={'dagster': {'ref': {'name': 'stg_clearhouse__x402_usage'}}}) }}
-- Every settled x402 call is a captured payment of the same merchant, amount and currency,
-- whose channel reference is the chain transaction (exact) or the usage id (token).
select u.usage_id
from {{ ref('stg_clearhouse__x402_usage') }} as u
left join {{ ref('stg_clearhouse__payments') }} as p on p.payment_id = u.payment_id
where u.status = 'settled'
  and (p.payment_id is null
       or p.merchant_id <> u.merchant_id
       or p.amount_minor <> u.amount_minor
       or p.currency <> u.currency
       or p.status not in ('success', 'partially_refunded', 'refunded')
       or p.channel_reference <> coalesce(u.tx_hash, u.usage_id))
