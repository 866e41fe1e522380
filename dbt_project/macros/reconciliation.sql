{# The day reconciliation counts ages and windows to: var recon_as_of, else the run's UTC date. #}
{% macro recon_as_of() -%}
    cast('{{ var("recon_as_of", run_started_at.strftime("%Y-%m-%d")) }}' as date)
{%- endmacro %}
