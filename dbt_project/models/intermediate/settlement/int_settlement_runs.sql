{{ config(materialized='incremental', unique_key='invocation_id', full_refresh=false) }}
-- One row per dbt invocation that built settlement: the day it closed periods to. The previous
-- runs' latest day tells int_settlement_placements which periods were already closed (and so
-- frozen) before this run. Never rebuilt (full_refresh=false: `dbt build --full-refresh` leaves
-- it as it is; rebuilt, it would forget the closes).
select
    cast('{{ invocation_id }}' as {{ dbt.type_string() }}) as invocation_id,
    {{ settlement_as_of() }} as as_of_date,
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}' as timestamp) as run_started_at
