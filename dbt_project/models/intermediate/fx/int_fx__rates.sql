{{ config(materialized='view') }}
-- Every currency pair on every ECB date, derived through EUR (the ECB publishes 1 EUR = r X):
--   rate(base -> quote) = r_quote / r_base, rounded half-up to 16 decimal places, exactly
-- (money.md: at least 10 significant digits, also for rates below 0.01 such as KRW -> USD)
-- (ingest/files/formats/ecb.py cross_rate is the same rule in Python; tests compare them).
-- EUR itself counts as r = 1. `derivation` says which rates were used: 'published' (EUR -> X,
-- the ECB figure itself), 'inverse' (X -> EUR) or 'cross' (X -> Y through EUR).
with published as (
    select rate_date, quote_currency as currency, rate, fx_rate_id
    from {{ ref('stg_files__fx_rates') }}
    where source = 'ecb' and base_currency = 'EUR'
),

with_euro as (
    select rate_date, currency, rate, fx_rate_id from published
    union all
    select distinct rate_date, 'EUR', cast(1 as decimal(28, 12)), cast(null as varchar(100))
    from published
),

-- rates as exact integers of 10^-16 units: the DECIMAL(38,16) text always has 16 decimals, so
-- dropping the point is exact (multiplying would leave DuckDB's DECIMAL range)
scaled as (
    select rate_date, currency, fx_rate_id,
           {{ rate_units('rate') }} as units
    from with_euro
)

select
    'ecb:' || {{ date_key('q.rate_date') }} || ':' || b.currency || ':' || q.currency as fx_rate_id,
    q.rate_date,
    b.currency as base_currency,
    q.currency as quote_currency,
    {{ ratio_decimal('q.units', 'b.units', scale=16, precision=38) }} as rate,
    case
        when b.currency = 'EUR' then 'published'
        when q.currency = 'EUR' then 'inverse'
        else 'cross'
    end as derivation,
    b.fx_rate_id as base_rate_id,
    q.fx_rate_id as quote_rate_id
from scaled q
join scaled b on b.rate_date = q.rate_date and b.currency <> q.currency
