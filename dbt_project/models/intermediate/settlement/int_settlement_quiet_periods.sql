-- A table, not a view: the candidates are computed once per build, not again for each test.
{{ config(materialized='table') }}
-- Every quiet statement period (settlement.md: a statement "for each merchant and cycle
-- period", also one without a line): the closed ones as they were recorded when they closed
-- (int_settlement_quiet_closes), and the open ones as the statements of this run leave them.
with closed as (
    select statement_id, merchant_id, currency, settlement_cycle, period_start, period_end
    from {{ ref('int_settlement_quiet_closes') }}
),

still_open as (
    {{ settlement_quiet_candidates('closed') }}
)

select * from closed
union all
select * from still_open
