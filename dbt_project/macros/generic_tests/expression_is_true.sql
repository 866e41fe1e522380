{#-
  Model-level generic test: every row must satisfy `expression`.
  Stricter than dbt_utils: a row where the expression is NULL fails too (a NULL amount must not
  slip through a money invariant). Use `where:` in the test config to restrict the rows.
-#}
{% test expression_is_true(model, expression) %}

select *
from {{ model }}
where not coalesce(({{ expression }}), false)

{% endtest %}
