-- depends_on: {{ ref('fct_platform_revenue') }}
-- The money macros are exact on both engines, far above 2^63 (9223372036854775808), and round
-- half away from zero. Expected values computed with warehouse.money (Python ints).
-- Returns the failing cases (none = pass). It reads no model: the depends_on line above attaches
-- it to the fees it guards, as a Dagster asset check (a test of no model was run unattached).

with cases as (

    -- fee_minor: 123456789012345678901 * 25 bps = 308641972530864197.2525
    select 'fee 25bps > 2^63' as case_name,
           {{ fee_minor("cast('123456789012345678901' as " ~ money_type() ~ ")", '25', '0') }} as got,
           cast('308641972530864197' as {{ money_type() }}) as expected
    union all
    select 'fee 25bps > 2^63, negative',
           {{ fee_minor("cast('-123456789012345678901' as " ~ money_type() ~ ")", '25', '0') }},
           cast('-308641972530864197' as {{ money_type() }})
    -- .5 exactly: 123456789012345678901 * 5000 / 10000 = 61728394506172839450.5
    union all
    select 'fee .5 away from zero, big',
           {{ fee_minor("cast('123456789012345678901' as " ~ money_type() ~ ")", '5000', '0') }},
           cast('61728394506172839451' as {{ money_type() }})
    union all
    select 'fee .5 away from zero, big, negative',
           {{ fee_minor("cast('-123456789012345678901' as " ~ money_type() ~ ")", '5000', '0') }},
           cast('-61728394506172839451' as {{ money_type() }})
    -- with a fixed part
    union all
    select 'fee 150 * 100bps + 30 = 1.5 -> 2 + 30',
           {{ fee_minor("cast(150 as " ~ money_type() ~ ")", '100', "cast(30 as " ~ money_type() ~ ")") }},
           cast(32 as {{ money_type() }})
    union all
    select 'fee 50 * 100bps = 0.5 -> 1',
           {{ fee_minor("cast(50 as " ~ money_type() ~ ")", '100', '0') }},
           cast(1 as {{ money_type() }})
    union all
    select 'fee -50 * 100bps = -0.5 -> -1',
           {{ fee_minor("cast(-50 as " ~ money_type() ~ ")", '100', '0') }},
           cast(-1 as {{ money_type() }})
    union all
    select 'fee 49 * 100bps = 0.49 -> 0',
           {{ fee_minor("cast(49 as " ~ money_type() ~ ")", '100', '0') }},
           cast(0 as {{ money_type() }})
    -- 10^37 * 3 bps: product 3e37 still fits HUGEINT; result has 34 digits
    union all
    select 'fee 10^37 * 3bps + 7',
           {{ fee_minor("cast('10000000000000000000000000000000000000' as " ~ money_type() ~ ")", '3', '7') }},
           cast('3000000000000000000000000000000007' as {{ money_type() }})

    -- round_half_up_div: the .5 cases and truncation
    union all
    select 'div 5/10', {{ round_half_up_div('5', '10') }}, cast(1 as {{ money_type() }})
    union all
    select 'div -5/10', {{ round_half_up_div('-5', '10') }}, cast(-1 as {{ money_type() }})
    union all
    select 'div 15/10', {{ round_half_up_div('15', '10') }}, cast(2 as {{ money_type() }})
    union all
    select 'div -15/10', {{ round_half_up_div('-15', '10') }}, cast(-2 as {{ money_type() }})
    union all
    select 'div 25/10', {{ round_half_up_div('25', '10') }}, cast(3 as {{ money_type() }})
    union all
    select 'div -25/10', {{ round_half_up_div('-25', '10') }}, cast(-3 as {{ money_type() }})
    union all
    select 'div 14/10', {{ round_half_up_div('14', '10') }}, cast(1 as {{ money_type() }})
    union all
    select 'div -14/10', {{ round_half_up_div('-14', '10') }}, cast(-1 as {{ money_type() }})
    union all
    select 'div 7/-2', {{ round_half_up_div('7', '-2') }}, cast(-4 as {{ money_type() }})
    union all
    select 'div 0/7', {{ round_half_up_div('0', '7') }}, cast(0 as {{ money_type() }})
    -- odd and even divisors other than 10: 2.33 -> 2, 2.67 -> 3, 1.5 -> 2
    union all
    select 'div 7/3', {{ round_half_up_div('7', '3') }}, cast(2 as {{ money_type() }})
    union all
    select 'div 8/3', {{ round_half_up_div('8', '3') }}, cast(3 as {{ money_type() }})
    union all
    select 'div -8/3', {{ round_half_up_div('-8', '3') }}, cast(-3 as {{ money_type() }})
    union all
    select 'div 3/-2', {{ round_half_up_div('3', '-2') }}, cast(-2 as {{ money_type() }})
    union all
    select 'div 9/6', {{ round_half_up_div('9', '6') }}, cast(2 as {{ money_type() }})
    union all
    select 'div -9/6', {{ round_half_up_div('-9', '6') }}, cast(-2 as {{ money_type() }})
    union all
    select 'div (10^37 + 3)/7',
           {{ round_half_up_div("cast('10000000000000000000000000000000000003' as " ~ money_type() ~ ")", '7') }},
           cast('1428571428571428571428571428571428572' as {{ money_type() }})
    union all
    select 'div -(10^37 + 4)/7',
           {{ round_half_up_div("cast('-10000000000000000000000000000000000004' as " ~ money_type() ~ ")", '7') }},
           cast('-1428571428571428571428571428571428572' as {{ money_type() }})

    -- prorate of big numbers: F = 308641972530864197 of amount 123456789012345678901
    union all
    select 'prorate F * (amount-1)/2 / amount',
           {{ prorate("cast('308641972530864197' as " ~ money_type() ~ ")",
                      "cast('61728394506172839450' as " ~ money_type() ~ ")",
                      "cast('123456789012345678901' as " ~ money_type() ~ ")") }},
           cast('154320986265432098' as {{ money_type() }})
    union all
    select 'prorate -F * (amount-1)/2 / amount',
           {{ prorate("cast('-308641972530864197' as " ~ money_type() ~ ")",
                      "cast('61728394506172839450' as " ~ money_type() ~ ")",
                      "cast('123456789012345678901' as " ~ money_type() ~ ")") }},
           cast('-154320986265432098' as {{ money_type() }})
    union all
    select 'prorate F * 1/2 = ...098.5 -> ...099',
           {{ prorate("cast('308641972530864197' as " ~ money_type() ~ ")", '1', '2') }},
           cast('154320986265432099' as {{ money_type() }})
    union all
    select 'prorate -F * 1/2 = -...098.5 -> -...099',
           {{ prorate("cast('-308641972530864197' as " ~ money_type() ~ ")", '1', '2') }},
           cast('-154320986265432099' as {{ money_type() }})
    union all
    select 'prorate full part = whole gives amount',
           {{ prorate("cast('308641972530864197' as " ~ money_type() ~ ")",
                      "cast('123456789012345678901' as " ~ money_type() ~ ")",
                      "cast('123456789012345678901' as " ~ money_type() ~ ")") }},
           cast('308641972530864197' as {{ money_type() }})
    union all
    select 'prorate zero part',
           {{ prorate("cast('308641972530864197' as " ~ money_type() ~ ")", '0',
                      "cast('123456789012345678901' as " ~ money_type() ~ ")") }},
           cast(0 as {{ money_type() }})
    -- prorate whose product passes 2^127 (3.0e40): 1234 ETH payment, fee at 250 bps, 987 ETH
    -- refunded. DuckDB must not form the product (duckdb__prorate).
    union all
    select 'prorate product > 2^127',
           {{ prorate("cast('30864197253086419725' as " ~ money_type() ~ ")",
                      "cast('987654321098765432101' as " ~ money_type() ~ ")",
                      "cast('1234567890123456789012' as " ~ money_type() ~ ")") }},
           cast('24691358027469135802' as {{ money_type() }})
    union all
    select 'prorate product > 2^127, negative',
           {{ prorate("cast('-30864197253086419725' as " ~ money_type() ~ ")",
                      "cast('987654321098765432101' as " ~ money_type() ~ ")",
                      "cast('1234567890123456789012' as " ~ money_type() ~ ")") }},
           cast('-24691358027469135802' as {{ money_type() }})
    -- 12345678901234567891 wei (> 2^63) at 150 bps
    union all
    select 'fee ETH wei > 2^63 at 150bps',
           {{ fee_minor("cast('12345678901234567891' as " ~ money_type() ~ ")", '150', '0') }},
           cast('185185183518518518' as {{ money_type() }})
)

select case_name, got, expected
from cases
where got is null or got <> expected
