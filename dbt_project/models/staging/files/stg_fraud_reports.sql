-- Fraud labels, one row per report_id. The loader marks a report's earlier row superseded when a
-- later file repeats its report_id (docs/fraud-reports.md); the row_number below applies the same
-- rule (latest load wins, then the later line) to rows that reached raw some other way.
with current_rows as (
    select
        *,
        row_number() over (
            partition by report_id
            order by _loaded_at desc, file_id desc, line_number desc
        ) as version_rank
    from {{ source('files', 'fraud_reports') }}
    where superseded_by is null
)

select
    report_id,
    payment_id,
    merchant_id,
    kind,
    source,
    reported_at,
    cast(amount_minor as {{ money_type() }}) as amount_minor,
    currency,
    file_id,
    line_number,
    fraud_report_line_id,
    _loaded_at as loaded_at
from current_rows
where version_rank = 1
