{#-
  Money arithmetic for the warehouse: the ONE place where SQL does money maths
  (shared/spec/money.md points 4, 5 and 8). The arithmetic primitives are adapter-dispatched;
  the refund-reversal helpers are plain SQL over them.

  Amounts are integer counts of minor units, stored as money_type(): DECIMAL(38,0) on DuckDB,
  NUMERIC(38,0) on Postgres. Rounding is half away from zero (ROUND_HALF_UP), exactly as
  warehouse.money.div_round_half_up / fee_minor / prorate in Python.

  DuckDB: `/` and even `//` on DECIMAL fall into DOUBLE, so the arithmetic runs on HUGEINT
  (128-bit) with integer `//` and `%` (which truncate toward zero; we work on absolute values
  and put the sign back). fee_minor's product amount * rate_bps must stay below 2^127 (~1.7e38,
  i.e. amounts below ~1.7e34 minor units at any rate); prorate avoids forming its product (see
  duckdb__prorate). Past those limits DuckDB raises an "Overflow" error: the build fails loudly,
  it never returns a wrong figure. Postgres NUMERIC has no such limit.

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
     On DuckDB the same in one division: (|num| + |den| div 2) div |den| adds 1 exactly when
     the remainder r has r + floor(|den| / 2) >= |den|, i.e. 2r >= |den|. It never doubles |num|
     (the headroom on HUGEINT stays 2^127 - |den| / 2), and HUGEINT division is what costs:
     one instead of two (a DECIMAL-to-HUGEINT cast costs about as much again). #}
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
        sign({{ n }}) * sign({{ d }}) * ((abs({{ n }}) + abs({{ d }}) // 2) // abs({{ d }}))
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


{# ---- refund_reversal(total, share, shares_before, completes) ---------------------------- #}
{#   What one refund reverses of `total` (a fee or a commission the capture earned), as
     warehouse.money.refund_reversals: `share` = prorate(total, refund, captured), commission.md's
     round_half_up(commission * refunded / captured) on the refund's own amount;
     `shares_before` = the sum of the shares of the payment's earlier refunds (a window);
     `completes` = this refund brings the refunded total to the captured amount, and then
     reverses what is left of the total (a full refund reverses exactly). The running total of
     partial reversals stops at the total. #}
{% macro refund_reversal(total, share, shares_before, completes) -%}
    cast(case
        when {{ completes }}
            then ({{ total }}) - {{ clearhouse._capped_at(total, shares_before) }}
        else {{ clearhouse._capped_at(total, '(' ~ shares_before ~ ') + (' ~ share ~ ')') }}
             - {{ clearhouse._capped_at(total, shares_before) }}
    end as {{ clearhouse.money_type() }})
{%- endmacro %}

{# The sum of the shares of a payment's earlier refunds (`partition_by` names the payment, and the
   beneficiary for commissions), refunds ordered by (succeeded_at, refund_id): `shares_before`
   of refund_reversal. #}
{% macro refund_shares_before(share, partition_by) -%}
    cast(coalesce(sum({{ share }}) over (
        partition by {{ partition_by }}
        order by succeeded_at, refund_id
        rows between unbounded preceding and 1 preceding
    ), 0) as {{ clearhouse.money_type() }})
{%- endmacro %}

{% macro _capped_at(total, running) -%}
    (case when ({{ total }}) >= 0 then least({{ running }}, {{ total }})
          else greatest({{ running }}, {{ total }}) end)
{%- endmacro %}


{# ---- prorate(amount, part, whole): round_half_up(amount * part / whole) ---------------- #}
{#   When part = whole the answer is amount itself (returned as is: a full refund never needs
     the product). Postgres: plain NUMERIC. DuckDB: see duckdb__prorate. #}
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

{#   DuckDB: amount * part can pass 2^127 for 18-decimal assets (the fee of a 1000 ETH payment
     times a 400 ETH refund is ~1e39), so the product is never formed. With a = |amount|,
     b = |part|, c = |whole| and S = 10^10, split b = b1 * S + b0 (long division, one step):
         X = a * b1                 = q1 * c + r1
         Y = r1 * S + a * b0        = q2 * c + r2
         a * b = (q1 * S + q2) * c + r2
     so floor(a * b / c) = q1 * S + q2 and the half-up step is 2 * r2 >= c. Every intermediate
     stays below 2^127 while a * b < 1.7e48 and a + c < 1.7e28 (amounts up to ~1.7e10 ETH in
     wei). Same result as default__prorate, exactly. #}
{% macro duckdb__prorate(amount, part, whole) -%}
    {%- set a = 'abs(' ~ clearhouse.money_int(amount) ~ ')' -%}
    {%- set b = 'abs(' ~ clearhouse.money_int(part) ~ ')' -%}
    {%- set c = 'abs(' ~ clearhouse.money_int(whole) ~ ')' -%}
    {%- set s = 'cast(10000000000 as hugeint)' -%}
    {%- set x = '(' ~ a ~ ' * (' ~ b ~ ' // ' ~ s ~ '))' -%}
    {%- set y = '((' ~ x ~ ' % ' ~ c ~ ') * ' ~ s ~ ' + ' ~ a ~ ' * (' ~ b ~ ' % ' ~ s ~ '))' -%}
    case
        when ({{ part }}) = ({{ whole }}) and ({{ whole }}) <> 0
            then cast(({{ amount }}) as {{ clearhouse.money_type() }})
        else cast(
            sign({{ clearhouse.money_int(amount) }}) * sign({{ clearhouse.money_int(part) }})
            * sign({{ clearhouse.money_int(whole) }})
            * (({{ x }} // {{ c }}) * {{ s }} + ({{ y }} // {{ c }})
               + case when 2 * ({{ y }} % {{ c }}) >= {{ c }} then 1 else 0 end)
        as {{ clearhouse.money_type() }})
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


{# ---- in_force(alias, at): an effective-dated row in force at `at` --------------------- #}
{#   valid_from inclusive, valid_to exclusive (NULL = open), as every dated table here. #}
{% macro in_force(alias, at) -%}
    {{ alias }}.valid_from <= {{ at }} and ({{ alias }}.valid_to is null or {{ at }} < {{ alias }}.valid_to)
{%- endmacro %}
