{#-
  Money arithmetic for the warehouse: the ONE place where SQL does money maths
  (shared/spec/money.md points 4, 5 and 8). Every macro is adapter-dispatched.

  Amounts are integer counts of minor units, stored as money_type(): DECIMAL(38,0) on DuckDB,
  NUMERIC(38,0) on Postgres. Rounding is half away from zero (ROUND_HALF_UP), exactly as
  warehouse.money.div_round_half_up / fee_minor / prorate in Python.

  DuckDB: `/` and even `//` on DECIMAL fall into DOUBLE, so the arithmetic runs on HUGEINT
  (128-bit) with integer `//` and `%` (which truncate toward zero; we work on absolute values
  and put the sign back). An intermediate product above 2^127 - 1 (~1.7e38) raises DuckDB's
  "Overflow" error: the build fails loudly, it never returns a wrong figure. Postgres NUMERIC has
  no such limit.

  Callers pass SQL expressions (column names, literals); the macros parenthesise them.
-#}

{# ---- money_type(): the physical type of an amount column ---------------------------- #}
{% macro money_type() -%}
    {{ return(adapter.dispatch('money_type', 'clearhouse')()) }}
{%- endmacro %}

{% macro default__money_type() -%}numeric(38,0){%- endmacro %}
{% macro duckdb__money_type() -%}decimal(38,0){%- endmacro %}
{% macro postgres__money_type() -%}numeric(38,0){%- endmacro %}


{# ---- money_int(x): x as the exact integer type arithmetic runs on ---------------------- #}
{% macro money_int(x) -%}
    {{ return(adapter.dispatch('money_int', 'clearhouse')(x)) }}
{%- endmacro %}

{% macro default__money_int(x) -%}cast(({{ x }}) as numeric){%- endmacro %}
{% macro duckdb__money_int(x) -%}cast(({{ x }}) as hugeint){%- endmacro %}


{# ---- round_half_up_div(num, den): num / den rounded half away from zero, exactly ------ #}
{#   = sign(num) * sign(den) * (|num| div |den| + (1 if 2 * (|num| mod |den|) >= |den|))
     which equals sign(num) * ((|num| * 2 + |den|) div (2 * |den|)) but never doubles |num|,
     so it keeps twice the headroom on HUGEINT. #}
{% macro round_half_up_div(num, den) -%}
    {{ return(adapter.dispatch('round_half_up_div', 'clearhouse')(num, den)) }}
{%- endmacro %}

{% macro default__round_half_up_div(num, den) -%}
    {%- set n = clearhouse.money_int(num) -%}
    {%- set d = clearhouse.money_int(den) -%}
    cast(
        sign({{ n }}) * sign({{ d }})
        * (div(abs({{ n }}), abs({{ d }}))
           + case when 2 * mod(abs({{ n }}), abs({{ d }})) >= abs({{ d }}) then 1 else 0 end)
    as {{ clearhouse.money_type() }})
{%- endmacro %}

{% macro duckdb__round_half_up_div(num, den) -%}
    {%- set n = clearhouse.money_int(num) -%}
    {%- set d = clearhouse.money_int(den) -%}
    cast(
        sign({{ n }}) * sign({{ d }})
        * ((abs({{ n }}) // abs({{ d }}))
           + case when 2 * (abs({{ n }}) % abs({{ d }})) >= abs({{ d }}) then 1 else 0 end)
    as {{ clearhouse.money_type() }})
{%- endmacro %}


{# ---- fee_minor(amount, rate_bps, fixed_minor): money.md point 5 ----------------------- #}
{#   round_half_up(amount * rate_bps / 10000) + fixed_minor #}
{% macro fee_minor(amount, rate_bps, fixed_minor='0') -%}
    {{ return(adapter.dispatch('fee_minor', 'clearhouse')(amount, rate_bps, fixed_minor)) }}
{%- endmacro %}

{% macro default__fee_minor(amount, rate_bps, fixed_minor) -%}
    cast(
        {{ clearhouse.round_half_up_div(
            clearhouse.money_int(amount) ~ ' * ' ~ clearhouse.money_int(rate_bps), '10000') }}
        + cast(({{ fixed_minor }}) as {{ clearhouse.money_type() }})
    as {{ clearhouse.money_type() }})
{%- endmacro %}


{# ---- prorate(amount, part, whole): round_half_up(amount * part / whole) ---------------- #}
{#   When part = whole the answer is amount itself: returned without the multiplication, so a
     full refund of a very large payment never needs the amount * part intermediate. #}
{% macro prorate(amount, part, whole) -%}
    {{ return(adapter.dispatch('prorate', 'clearhouse')(amount, part, whole)) }}
{%- endmacro %}

{% macro default__prorate(amount, part, whole) -%}
    case
        when ({{ part }}) = ({{ whole }}) and ({{ whole }}) <> 0
            then cast(({{ amount }}) as {{ clearhouse.money_type() }})
        else {{ clearhouse.round_half_up_div(
            clearhouse.money_int(amount) ~ ' * ' ~ clearhouse.money_int(part),
            clearhouse.money_int(whole)) }}
    end
{%- endmacro %}


{# ---- ratio_decimal(num, den, scale): num / den as an exact DECIMAL(9+, scale) ---------- #}
{#   round_half_up(num * 10^scale / den) * 10^-scale, with no DOUBLE on the way (DuckDB's
     DECIMAL * DECIMAL stays exact). NULL when den = 0. #}
{% macro ratio_decimal(num, den, scale=6, precision=9) -%}
    {{ return(adapter.dispatch('ratio_decimal', 'clearhouse')(num, den, scale, precision)) }}
{%- endmacro %}

{% macro default__ratio_decimal(num, den, scale, precision) -%}
    {%- set unit = '1' if scale == 0 else '0.' ~ ('0' * (scale - 1)) ~ '1' -%}
    case when ({{ den }}) = 0 then null else
    cast(
        {{ clearhouse.round_half_up_div(
            clearhouse.money_int(num) ~ ' * ' ~ (10 ** scale), den) }}
        * cast({{ unit }} as decimal({{ scale + 1 }}, {{ scale }}))
    as decimal({{ precision }}, {{ scale }})) end
{%- endmacro %}


{# ---- date_key(d): a date as 'YYYY-MM-DD' text, independent of Postgres' DateStyle ----- #}
{% macro date_key(d) -%}
    {{ return(adapter.dispatch('date_key', 'clearhouse')(d)) }}
{%- endmacro %}

{% macro default__date_key(d) -%}to_char(({{ d }}), 'YYYY-MM-DD'){%- endmacro %}
{% macro duckdb__date_key(d) -%}strftime(({{ d }}), '%Y-%m-%d'){%- endmacro %}
