{#-
  Every model lands in the target's schema (`analytics` on DuckDB and Postgres), not in
  dbt's default `<target_schema>_<custom_schema>`. A custom schema, if one is ever set, is
  used as is.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema | trim }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
