select
    fx_rate_id,
    file_id,
    source,
    rate_date,
    base_currency,
    quote_currency,
    rate_text,
    rate
from {{ source('files', 'fx_rates') }}
