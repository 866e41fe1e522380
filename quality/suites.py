"""Great Expectations suites for the raw ledger tables, the PSP file lines and the finance marts.

Each `SuiteSpec` names a warehouse table, the SQL columns derived for it and a builder that
returns a GX Core 1.x `ExpectationSuite`. great_expectations is imported inside `build_suite`
only: the API and the Dagster definitions import this module without paying for GX.

Money is never compared as a float. The reader (`quality/run.py`) loads every DECIMAL/NUMERIC
column and every `*_minor` column as its exact decimal text (`CAST(x AS VARCHAR)`), so:
- signs and ranges are regular expressions over that text (`^[1-9][0-9]*$` is "a positive
  integer"), and an example shows the offending amount as the warehouse holds it;
- arithmetic invariants are evaluated by the warehouse on DECIMAL(38,0)/NUMERIC(38,0) as a
  residual (`closing - (opening + net_activity - payouts)`), cast to text, and expected to be
  exactly '0'; a NULL operand gives 'missing' (fails, as the dbt `expression_is_true` does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ingest.files.schema import PSP_LINES
from ingest.raw_schema import RAW_TABLES
from serving.services.state_machine import TRANSITIONS

# The API's payment statuses: every state of the state machine, read from it (one place).
PAYMENT_STATUSES = tuple(sorted({s for s in TRANSITIONS if s} | set().union(*TRANSITIONS.values())))
# Refunds are written 'succeeded' by serving/services/payments.py; 'pending' and 'failed' are
# the states reconciliation already reads (int_recon_refunds) for asynchronous channel refunds.
REFUND_STATUSES = ("pending", "succeeded", "failed")
# The kinds post_transaction is called with (serving/services: payments, withdrawals, wallets,
# x402 booking).
LEDGER_KINDS = ("capture", "refund", "payout", "wallet_spend", "wallet_spend_refund")
PSP_RECORD_TYPES = ("payment", "refund", "chargeback", "fee_adjustment", "payout", "other")
STATEMENT_STATUSES = ("open", "closed")

CURRENCY = r"^[A-Z]{3,5}$"
POSITIVE = r"^[1-9][0-9]*$"
NON_NEGATIVE = r"^(?:0|[1-9][0-9]*)$"
ZERO = "0"

# "Once captured payments exist" (a mart that is empty then is broken, not quiet).
CAPTURED_PAYMENTS_EXIST = (
    "SELECT CASE WHEN EXISTS (SELECT 1 FROM raw.payments WHERE captured_at IS NOT NULL) "
    "THEN 1 ELSE 0 END")


def residual(expr: str) -> str:
    """SQL: the exact decimal residual of a money identity as text, 'missing' on a NULL."""
    return f"coalesce(CAST({expr} AS VARCHAR), 'missing')"


@dataclass(frozen=True)
class Derived:
    """A column the warehouse computes for the suite; added only when `needs` are present (a
    missing input column fails the schema expectation instead of the query)."""

    name: str
    sql: str
    needs: tuple[str, ...]


@dataclass(frozen=True)
class SuiteSpec:
    name: str  # the table, schema-qualified: also the suite's name
    key: str  # primary key: shown with every unexpected example
    columns: tuple[str, ...]  # must be present
    blocking: bool  # a failure stops the assets downstream (Dagster blocking check)
    expectations: Callable[[], list] = field(repr=False)
    derived: tuple[Derived, ...] = ()
    # SQL returning one integer: the minimum row count (evaluated on the same connection)
    min_rows_sql: str | None = None
    description: str = ""

    @property
    def schema(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def table(self) -> str:
        return self.name.split(".", 1)[1]


def _raw_columns(table: str) -> tuple[str, ...]:
    return tuple(next(t for t in RAW_TABLES if t.name == table).column_names)


# Builders: called inside build_suite, after great_expectations is imported. `g` is the
# great_expectations.expectations module.

def _common(g, spec_key: str, columns: tuple[str, ...]) -> list:
    return [
        g.ExpectTableColumnsToMatchSet(column_set=list(columns), exact_match=False,
                                       description="every column the models read is present"),
        g.ExpectColumnValuesToNotBeNull(column=spec_key, description="the id is never NULL"),
        g.ExpectColumnValuesToBeUnique(column=spec_key, description="one row per id"),
    ]


def _not_null(g, *columns: str) -> list:
    return [g.ExpectColumnValuesToNotBeNull(column=c) for c in columns]


def _currency(g) -> list:
    return [g.ExpectColumnValuesToNotBeNull(column="currency"),
            g.ExpectColumnValuesToMatchRegex(column="currency", regex=CURRENCY,
                                             description="3 to 5 upper-case letters")]


def _zero(g, column: str, description: str) -> object:
    return g.ExpectColumnValuesToBeInSet(column=column, value_set=[ZERO], description=description)


def _payments(g) -> list:
    return [
        *_common(g, "id", PAYMENTS.columns),
        *_not_null(g, "merchant_id", "status", "amount_minor", "refunded_minor"),
        g.ExpectColumnValuesToBeInSet(column="status", value_set=list(PAYMENT_STATUSES),
                                      description="a state of the payment state machine"),
        g.ExpectColumnValuesToMatchRegex(column="amount_minor", regex=POSITIVE,
                                         description="amount_minor > 0"),
        g.ExpectColumnValuesToMatchRegex(column="refunded_minor", regex=NON_NEGATIVE,
                                         description="refunded_minor >= 0"),
        g.ExpectColumnValuesToMatchRegex(column="unrefunded_minor", regex=NON_NEGATIVE,
                                         description="refunded_minor <= amount_minor"),
        *_currency(g),
    ]


def _refunds(g) -> list:
    return [
        *_common(g, "id", REFUNDS.columns),
        *_not_null(g, "payment_id", "merchant_id", "status", "amount_minor"),
        g.ExpectColumnValuesToBeInSet(column="status", value_set=list(REFUND_STATUSES)),
        g.ExpectColumnValuesToMatchRegex(column="amount_minor", regex=POSITIVE,
                                         description="amount_minor > 0"),
        *_currency(g),
    ]


def _ledger_entries(g) -> list:
    return [
        *_common(g, "id", LEDGER_ENTRIES.columns),
        *_not_null(g, "transaction_id", "kind", "merchant_id", "account", "amount_minor",
                   "effective_at"),
        g.ExpectColumnValuesToBeInSet(column="kind", value_set=list(LEDGER_KINDS),
                                      description="a kind the API posts"),
        _zero(g, "transaction_balance_minor",
              "the legs of a transaction sum to zero per currency"),
        *_currency(g),
    ]


def _psp_lines(g) -> list:
    return [
        *_common(g, "psp_line_id", PSP_LINES_SUITE.columns),
        *_not_null(g, "file_id", "record_type", "channel"),
        g.ExpectColumnValuesToBeInSet(column="record_type", value_set=list(PSP_RECORD_TYPES)),
        _zero(g, "net_residual_minor", "net_minor = gross_minor - fee_minor"),
        *_currency(g),
    ]


def _settlement_statements(g) -> list:
    amounts = ("gross_minor", "refunds_minor", "chargebacks_minor", "payouts_minor")
    return [
        *_common(g, "statement_id", SETTLEMENT_STATEMENTS.columns),
        *_not_null(g, "merchant_id", "period_start", "period_end", "opening_balance_minor",
                   "closing_balance_minor", "net_activity_minor", "fees_minor",
                   "adjustments_minor", *amounts),
        g.ExpectColumnValuesToBeInSet(column="status", value_set=list(STATEMENT_STATUSES)),
        _zero(g, "closing_residual_minor",
              "closing = opening + net_activity - payouts"),
        _zero(g, "net_activity_residual_minor",
              "net_activity = gross - refunds - chargebacks - fees - adjustments"),
        *(g.ExpectColumnValuesToMatchRegex(column=c, regex=NON_NEGATIVE,
                                           description=f"{c} >= 0") for c in amounts),
        *_currency(g),
    ]


def _platform_revenue(g) -> list:
    return [
        *_common(g, "event_id", PLATFORM_REVENUE.columns),
        *_not_null(g, "merchant_fee_minor", "channel_cost_minor", "platform_net_minor",
                   "agent_commission_minor"),
        _zero(g, "conservation_residual_minor",
              "merchant_fee = channel_cost + platform_net + agent_commission"),
        *_currency(g),
    ]


PAYMENTS = SuiteSpec(
    "raw.payments", "id", _raw_columns("payments"), blocking=True, expectations=_payments,
    derived=(Derived("unrefunded_minor", residual("amount_minor - refunded_minor"),
                     ("amount_minor", "refunded_minor")),),
    description="The API's payments as extracted: ids, statuses, positive amounts, currencies.")
REFUNDS = SuiteSpec(
    "raw.refunds", "id", _raw_columns("refunds"), blocking=True, expectations=_refunds,
    description="The API's refunds as extracted: ids, statuses, positive amounts, currencies.")
LEDGER_ENTRIES = SuiteSpec(
    "raw.ledger_entries", "id", _raw_columns("ledger_entries"), blocking=True,
    expectations=_ledger_entries,
    derived=(Derived("transaction_balance_minor", residual(
        "sum(amount_minor) OVER (PARTITION BY transaction_id, currency)"),
        ("amount_minor", "transaction_id", "currency")),),
    description="The double-entry ledger as extracted: every transaction balances.")
PSP_LINES_SUITE = SuiteSpec(
    "raw.psp_lines", "psp_line_id", tuple(PSP_LINES.column_names), blocking=False,
    expectations=_psp_lines,
    derived=(Derived("net_residual_minor", residual("net_minor - (gross_minor - fee_minor)"),
                     ("net_minor", "gross_minor", "fee_minor")),),
    description="PSP settlement lines: record types, net = gross - fee. Warn only: a complete "
    "file whose figures disagree still loads, because reconciliation has to show the break.")
SETTLEMENT_STATEMENTS = SuiteSpec(
    "analytics.fct_settlement_statements", "statement_id",
    ("statement_id", "merchant_id", "settlement_cycle", "period_start", "period_end", "status",
     "currency", "opening_balance_minor", "gross_minor", "refunds_minor", "chargebacks_minor",
     "fees_minor", "adjustments_minor", "net_activity_minor", "payouts_minor",
     "closing_balance_minor"),
    blocking=True, expectations=_settlement_statements,
    derived=(
        Derived("closing_residual_minor", residual(
            "closing_balance_minor - (opening_balance_minor + net_activity_minor - payouts_minor)"),
            ("closing_balance_minor", "opening_balance_minor", "net_activity_minor",
             "payouts_minor")),
        Derived("net_activity_residual_minor", residual(
            "net_activity_minor - (gross_minor - refunds_minor - chargebacks_minor - fees_minor"
            " - adjustments_minor)"),
            ("net_activity_minor", "gross_minor", "refunds_minor", "chargebacks_minor",
             "fees_minor", "adjustments_minor")),
    ),
    min_rows_sql=CAPTURED_PAYMENTS_EXIST,
    description="Merchant statements: the balance identities to the minor unit.")
PLATFORM_REVENUE = SuiteSpec(
    "analytics.fct_platform_revenue", "event_id",
    ("event_id", "event_kind", "payment_id", "merchant_id", "currency", "merchant_fee_minor",
     "channel_cost_minor", "agent_commission_minor", "platform_net_minor"),
    blocking=False, expectations=_platform_revenue,
    derived=(Derived("conservation_residual_minor", residual(
        "merchant_fee_minor - (channel_cost_minor + platform_net_minor + agent_commission_minor)"),
        ("merchant_fee_minor", "channel_cost_minor", "platform_net_minor",
         "agent_commission_minor")),),
    min_rows_sql=CAPTURED_PAYMENTS_EXIST,
    description="Where each fee went: conservation on every row. Warn only: dbt's own "
    "conservation and tie-out tests already fail the dbt step.")

SUITES: dict[str, SuiteSpec] = {s.name: s for s in (
    PAYMENTS, REFUNDS, LEDGER_ENTRIES, PSP_LINES_SUITE, SETTLEMENT_STATEMENTS, PLATFORM_REVENUE)}


def build_suite(spec: SuiteSpec, *, min_rows: int = 0):
    """The GX ExpectationSuite for `spec` (imports great_expectations)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    expectations = spec.expectations(gxe)
    if min_rows:
        expectations.append(gxe.ExpectTableRowCountToBeBetween(
            min_value=min_rows, description="not empty once captured payments exist"))
    return gx.ExpectationSuite(name=spec.name, expectations=expectations,
                               meta={"table": spec.name, "blocking": spec.blocking})
