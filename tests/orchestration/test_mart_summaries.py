"""The markdown tables on the marts' materializations: amounts in major units of the row's own
currency, by the money core (exact, 18 decimals included), never summed across currencies."""

from __future__ import annotations

from orchestration.defs.dbt.metadata import SUMMARIES, markdown_table


def test_amounts_show_in_their_rows_currency():
    table = markdown_table(
        ["day", "currency", "settlement_currency", "captured_minor",
         "captured_settlement_minor", "payments"],
        [("2026-12-05", "JPY", "USD", "12345", "8210", 3),
         ("2026-12-05", "ETH", "USD", "1000000000000000001", None, 1)])
    lines = table.splitlines()
    assert lines[0] == ("| day | currency | settlement_currency | captured | "
                        "captured_settlement | payments |")
    assert lines[2] == "| 2026-12-05 | JPY | USD | 12345 JPY | 82.10 USD | 3 |"
    assert lines[3] == "| 2026-12-05 | ETH | USD | 1.000000000000000001 ETH |  | 1 |"


def test_a_minor_column_without_a_currency_stays_as_it_is():
    assert markdown_table(["kind", "amount_minor"], [("x", "5")]).splitlines()[2] == "| x | 5 |"


def test_every_summary_that_sums_money_groups_by_currency():
    for mart, (_title, sql) in SUMMARIES.items():
        if "sum(" in sql and "_minor" in sql:
            assert "GROUP BY" in sql and "currency" in sql.split("GROUP BY")[-1], mart
