"""Great Expectations suites for the raw ledger tables, the raw file sources (PSP lines, bank
statements, chain logs, FX rates, fraud reports), the finance marts and the fraud scores.

Each `SuiteSpec` names a warehouse table, the SQL columns derived for it and a builder that
returns a GX Core 1.x `ExpectationSuite`. great_expectations is imported inside `build_suite`
only: the API and the Dagster definitions import this module without paying for GX.

Money is never compared as a float. The reader (`quality/run.py`) loads every DECIMAL/NUMERIC
column and every `*_minor` column as its exact decimal text (`CAST(x AS VARCHAR)`), so:
- signs and ranges are regular expressions over that text (`^[1-9][0-9]*$` is "a positive
  integer"), and an example shows the offending amount as the warehouse holds it;
- arithmetic invariants are evaluated by the warehouse on DECIMAL(38,0)/NUMERIC(38,0) as a
  residual (`closing - (net_activity - payouts)`), cast to text, and expected to be
  exactly '0'; a NULL operand gives 'missing' (fails, as the dbt `expression_is_true` does).
A derived column may read another table (a tie-out between two marts); it is added only when that
table exists, else its expectation fails as a missing column.

File tables whose rows a re-sent file supersedes are checked on their current rows
(`superseded_by IS NULL`, what staging reads), so "unique" means one current row per id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

from ingest.files.formats.fraud_reports import KINDS as FRAUD_KINDS
from ingest.files.formats.fraud_reports import SOURCES as FRAUD_SOURCES
from ingest.files.schema import (
    BANK_STATEMENT_LINES,
    BANK_STATEMENTS,
    CHAIN_LOGS,
    FRAUD_REPORTS,
    FX_RATES,
    PSP_LINES,
)
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
# ingest/files/records.py: StatementLine.status and Statement.message_type / balance_check.
BANK_LINE_STATUSES = ("booked", "pending", "info")
BANK_MESSAGE_TYPES = ("camt.052", "camt.053", "camt.054", "mt940", "mt942", "bai2")
BALANCE_CHECKS = ("ok", "mismatch", "not_applicable")
# dbt_project/models/marts: the accepted values its own tests name.
STATEMENT_LINE_TYPES = ("payment", "refund", "chargeback", "payout", "adjustment")
# what a line came from: a line's type, or an agent token's spend (an adjustment line)
STATEMENT_ITEM_TYPES = (*STATEMENT_LINE_TYPES, "token_spend")
FX_DERIVATIONS = ("none", "peg", "published", "inverse", "cross", "published+peg",
                  "inverse+peg", "cross+peg", "in_kind")
COMMISSION_EVENT_KINDS = ("payment", "refund")
COMMISSION_MODELS = ("markup", "percentage", "fixed")  # commission.md "Models"
MATCH_TYPES = ("exact_reference", "payout_batch", "chain", "fuzzy")  # reconciliation.md
BREAK_TYPES = ("missing_in_channel", "missing_in_ledger", "amount_mismatch", "currency_mismatch",
               "fee_mismatch", "duplicate_in_channel", "status_mismatch", "payout_mismatch",
               "chain_unconfirmed", "chain_reorged", "recipient_mismatch", "ambiguous")
BREAK_STATUSES = ("open", "resolved")
FRAUD_DECISIONS = ("approve", "review", "block")  # ml/batch.py, serving/fraud

CURRENCY = r"^[A-Z]{3,5}$"
POSITIVE = r"^[1-9][0-9]*$"
NON_NEGATIVE = r"^(?:0|[1-9][0-9]*)$"
INTEGER = r"^(?:0|-?[1-9][0-9]*)$"
# a positive exact decimal as the warehouse prints a DECIMAL(28,12) (1.117200000000)
POSITIVE_DECIMAL = r"^(?:[1-9][0-9]*(?:\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*)$"
DECIMAL_TEXT = r"^[0-9]+(?:\.[0-9]+)?$"  # an exact decimal as published: digits, one point
HASH = r"^0x[0-9a-f]{64}$"  # the loader lower-cases chain hashes and addresses
ADDRESS = r"^0x[0-9a-f]{40}$"
CAIP2 = r"^[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}$"  # a CAIP-2 chain id: eip155:84532
ZERO = "0"
EQUAL = "equal"

# "Once captured payments exist" (a mart that is empty then is broken, not quiet).
CAPTURED_PAYMENTS_EXIST = (
    "SELECT CASE WHEN EXISTS (SELECT 1 FROM raw.payments WHERE captured_at IS NOT NULL) "
    "THEN 1 ELSE 0 END")


def residual(expr: str) -> str:
    """SQL: the exact decimal residual of a money identity as text, 'missing' on a NULL."""
    return f"coalesce(CAST({expr} AS VARCHAR), 'missing')"


def when(condition: str, expr: str) -> str:
    """SQL: `expr` on the rows where `condition` holds, NULL elsewhere (GX skips NULLs in a
    column's value expectations, so the expectation covers just those rows)."""
    return f"CASE WHEN {condition} THEN {expr} END"


def text(expr: str) -> str:
    return f"CAST({expr} AS VARCHAR)"


def _strip_decimal(expr: str) -> str:
    """SQL: a decimal's text without leading zeros, trailing fractional zeros and a bare point,
    so the stored DECIMAL(28,12) '1.117200000000' compares equal to the published '1.1172'."""
    return f"ltrim(rtrim(rtrim({expr}, '0'), '.'), '0')"


@dataclass(frozen=True)
class Derived:
    """A column the warehouse computes for the suite; added only when `needs` are present (a
    missing input column fails the schema expectation instead of the query)."""

    name: str
    sql: str
    needs: tuple[str, ...]
    tables: tuple[str, ...] = ()  # other tables the SQL reads (schema.table): must exist


@dataclass(frozen=True)
class SuiteSpec:
    name: str  # the table, schema-qualified: also the suite's name
    key: str  # primary key: shown with every unexpected example
    columns: tuple[str, ...]  # must be present
    blocking: bool  # a failure stops the assets downstream (Dagster blocking check)
    expectations: Callable[[ModuleType], list] = field(repr=False)  # takes the gxe module
    derived: tuple[Derived, ...] = ()
    # SQL returning one integer: the minimum row count (evaluated on the same connection)
    min_rows_sql: str | None = None
    min_rows_description: str = "not empty once captured payments exist"
    # tables min_rows_sql reads besides its own: the bound is skipped when one is missing (the
    # suite's tie-out to that table then fails as a missing column)
    min_rows_tables: tuple[str, ...] = ()
    description: str = ""
    # a file table whose re-sent files supersede rows: check the current ones only
    current_only: bool = False

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
        _zero(g, "closing_residual_minor", "closing = net_activity - payouts"),
        _zero(g, "net_activity_residual_minor",
              "net_activity = opening + gross - refunds - chargebacks - fees - adjustments"),
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


def _not_null_where(g, column: str, condition: str, description: str) -> object:
    """`column` is not NULL on the rows where `condition` (a pandas query) holds."""
    return g.ExpectColumnValuesToNotBeNull(column=column, row_condition=condition,
                                           condition_parser="pandas", description=description)


def _bank_statements(g) -> list:
    return [
        *_common(g, "statement_uid", BANK_STATEMENTS_SUITE.columns),
        *_not_null(g, "file_id", "format", "message_type", "account_id", "balance_check",
                   "line_count"),
        g.ExpectColumnValuesToBeInSet(column="message_type", value_set=list(BANK_MESSAGE_TYPES)),
        g.ExpectColumnValuesToBeInSet(column="balance_check", value_set=list(BALANCE_CHECKS)),
        _zero(g, "balance_residual_minor",
              "a statement marked ok: closing = opening + its booked lines"),
        g.ExpectColumnValuesToMatchRegex(column="currency", regex=CURRENCY,
                                         description="3 to 5 upper-case letters"),
    ]


def _bank_statement_lines(g) -> list:
    return [
        *_common(g, "statement_line_id", BANK_STATEMENT_LINES_SUITE.columns),
        *_not_null(g, "statement_uid", "file_id", "account_id", "amount_minor", "status"),
        g.ExpectColumnValuesToBeInSet(column="status", value_set=list(BANK_LINE_STATUSES)),
        g.ExpectColumnValuesToMatchRegex(column="amount_minor", regex=INTEGER,
                                         description="an exact integer amount (signed)"),
        _not_null_where(g, "booking_date", 'status == "booked"',
                        "a booked line has its booking date"),
        g.ExpectColumnValuesToBeInSet(column="statement_is_current", value_set=["yes"],
                                      description="the line's statement is loaded and current "
                                      "(staging joins them: an orphan line would vanish)"),
        *_currency(g),
    ]


def _chain_logs(g) -> list:
    return [
        *_common(g, "chain_log_id", CHAIN_LOGS_SUITE.columns),
        *_not_null(g, "file_id", "network", "block_number", "transaction_hash", "log_index",
                   "token_address", "from_address", "to_address", "value_text", "removed"),
        g.ExpectColumnValuesToBeInSet(column="removed", value_set=[True, False],
                                      description="a boolean: true on a reorg's removal"),
        g.ExpectColumnValuesToMatchRegex(column="network", regex=CAIP2,
                                         description="a CAIP-2 chain id"),
        g.ExpectColumnValuesToMatchRegex(column="transaction_hash", regex=HASH),
        *(g.ExpectColumnValuesToMatchRegex(column=c, regex=ADDRESS)
          for c in ("token_address", "from_address", "to_address")),
        g.ExpectColumnValuesToBeBetween(column="block_number", min_value=0),
        g.ExpectColumnValuesToBeBetween(column="log_index", min_value=0),
        g.ExpectColumnValuesToMatchRegex(column="value_text", regex=NON_NEGATIVE,
                                         description="the uint256 value as exact integer text"),
        g.ExpectColumnValuesToBeInSet(column="value_minor_matches_text", value_set=[EQUAL],
                                      description="value_minor = value_text exactly (NULL only "
                                      "above 38 digits)"),
    ]


def _fx_rates(g) -> list:
    return [
        *_common(g, "fx_rate_id", FX_RATES_SUITE.columns),
        *_not_null(g, "file_id", "source", "rate_date", "base_currency", "quote_currency",
                   "rate_text", "rate"),
        g.ExpectColumnValuesToMatchRegex(column="rate", regex=POSITIVE_DECIMAL,
                                         description="rate > 0"),
        g.ExpectColumnValuesToMatchRegex(column="rate_text", regex=DECIMAL_TEXT,
                                         description="the published rate as exact decimal text"),
        g.ExpectColumnValuesToBeInSet(column="rate_matches_text", value_set=[EQUAL],
                                      description="rate = rate_text exactly (nothing rounded "
                                      "on load)"),
        *(g.ExpectColumnValuesToMatchRegex(column=c, regex=CURRENCY,
                                           description="3 to 5 upper-case letters")
          for c in ("base_currency", "quote_currency")),
    ]


def _fraud_reports(g) -> list:
    return [
        *_common(g, "fraud_report_line_id", FRAUD_REPORTS_SUITE.columns),
        *_not_null(g, "file_id", "report_id", "payment_id", "merchant_id", "kind", "source",
                   "reported_at"),
        g.ExpectColumnValuesToBeUnique(column="report_id",
                                       description="one current row per report"),
        g.ExpectColumnValuesToBeInSet(column="kind", value_set=list(FRAUD_KINDS)),
        g.ExpectColumnValuesToBeInSet(column="source", value_set=list(FRAUD_SOURCES)),
        g.ExpectColumnValuesToMatchRegex(column="amount_minor", regex=NON_NEGATIVE,
                                         description="amount_minor >= 0 when given"),
        _not_null_where(g, "currency", "amount_minor.notna()",
                        "a currency wherever an amount is given"),
        g.ExpectColumnValuesToMatchRegex(column="currency", regex=CURRENCY,
                                         description="3 to 5 upper-case letters"),
    ]


def _commissions(g) -> list:
    return [
        *_common(g, "commission_id", COMMISSIONS.columns),
        *_not_null(g, "event_id", "event_kind", "payment_id", "merchant_id", "beneficiary_id",
                   "level", "model", "amount_minor"),
        g.ExpectColumnValuesToBeInSet(column="event_kind", value_set=list(COMMISSION_EVENT_KINDS)),
        g.ExpectColumnValuesToBeInSet(column="model", value_set=list(COMMISSION_MODELS)),
        g.ExpectColumnValuesToBeBetween(column="level", min_value=1,
                                        description="1 = the merchant's direct agent"),
        _not_null_where(g, "rate_bps", 'model == "markup"', "markup: the cost rate used"),
        _not_null_where(g, "pct_bps", 'model == "percentage"', "percentage: the rate used"),
        _not_null_where(g, "fixed_minor", 'model == "fixed"', "fixed: the amount used"),
        g.ExpectColumnValuesToMatchRegex(
            column="platform_paid_direction_minor", regex=NON_NEGATIVE,
            description="percentage and fixed commissions earn >= 0 and refunds reverse them "
            "(<= 0); only a markup spread may be negative (negative_margin)"),
        _zero(g, "revenue_tie_residual_minor",
              "an event's commission rows sum to its agent_commission_minor in "
              "fct_platform_revenue"),
        *_currency(g),
    ]


def _reconciliation_matches(g) -> list:
    return [
        *_common(g, "match_id", RECONCILIATION_MATCHES.columns),
        *_not_null(g, "match_type", "amount_minor", "matched_on"),
        g.ExpectColumnValuesToBeInSet(column="match_type", value_set=list(MATCH_TYPES)),
        _not_null_where(g, "payment_id", 'match_type in ["exact_reference", "chain", "fuzzy"]',
                        "a payment match names its payment"),
        _not_null_where(g, "statement_line_id", 'match_type == "payout_batch"',
                        "a payout match names its bank line"),
        _not_null_where(g, "chain_tx_hash", 'match_type == "chain"',
                        "a chain match names its transaction"),
        g.ExpectColumnValuesToMatchRegex(column="amount_minor", regex=INTEGER,
                                         description="an exact integer amount (signed)"),
        *_currency(g),
    ]


def _reconciliation_breaks(g) -> list:
    return [
        *_common(g, "break_id", RECONCILIATION_BREAKS.columns),
        *_not_null(g, "break_type", "status", "first_seen", "age_days"),
        g.ExpectColumnValuesToBeInSet(column="break_type", value_set=list(BREAK_TYPES),
                                      description="exactly the names of reconciliation.md"),
        g.ExpectColumnValuesToBeInSet(column="status", value_set=list(BREAK_STATUSES)),
        _zero(g, "delta_residual_minor",
              "delta = channel - ledger; NULL when a side has no amount"),
        g.ExpectColumnValuesToNotBeInSet(
            column="mismatch_delta_minor", value_set=[ZERO, "missing"],
            description="an amount or payout mismatch with both sides has a non-zero delta"),
        _not_null_where(g, "resolved_at", 'status == "resolved"', "a resolved break says when"),
        _not_null_where(g, "resolved_by", 'status == "resolved"',
                        "a resolved break says by what"),
        g.ExpectColumnValuesToBeNull(column="resolved_at", row_condition='status == "open"',
                                     condition_parser="pandas",
                                     description="an open break is not resolved"),
        _not_null_where(g, "candidates", 'break_type == "ambiguous"',
                        "an ambiguous break lists its candidates"),
        g.ExpectColumnValuesToBeBetween(column="age_days", min_value=0),
        g.ExpectColumnValuesToMatchRegex(column="currency", regex=CURRENCY,
                                         description="3 to 5 upper-case letters"),
    ]


def _settlement_statement_lines(g) -> list:
    links = {"payment": "payment_id", "refund": "refund_id", "chargeback": "psp_line_id",
             "payout": "payout_id", "adjustment": "adjustment_id", "token_spend": "payment_id"}
    return [
        *_common(g, "line_id", SETTLEMENT_STATEMENT_LINES.columns),
        *_not_null(g, "statement_id", "merchant_id", "period_start", "period_end", "line_type",
                   "item_type", "gross_minor", "fee_minor", "net_minor"),
        g.ExpectColumnValuesToBeInSet(column="line_type", value_set=list(STATEMENT_LINE_TYPES)),
        g.ExpectColumnValuesToBeInSet(column="item_type", value_set=list(STATEMENT_ITEM_TYPES)),
        g.ExpectColumnValuesToBeInSet(column="fx_derivation", value_set=list(FX_DERIVATIONS)),
        _zero(g, "net_residual_minor", "net_minor = gross_minor - fee_minor"),
        g.ExpectColumnValuesToMatchRegex(
            column="item_gross_minor", regex=POSITIVE,
            description="gross > 0 on a payment, < 0 on a refund, chargeback or payout"),
        g.ExpectColumnValuesToMatchRegex(
            column="item_fee_minor", regex=NON_NEGATIVE,
            description="fee >= 0 on a payment, <= 0 on a refund (reversed)"),
        _zero(g, "other_fee_minor", "no fee on a chargeback, payout, adjustment or token spend"),
        *(_not_null_where(g, column, f'item_type == "{item}"',
                          f"a {item} line links back to its {item}")
          for item, column in links.items()),
        _zero(g, "statement_tie_residual_minor",
              "a statement's lines sum (net) to its closing - opening balance"),
        *_currency(g),
    ]


def _agent_commission_statements(g) -> list:
    money = ("opening_balance_minor", "earned_minor", "reversed_minor", "adjustments_minor",
             "net_minor", "closing_balance_minor")
    return [
        *_common(g, "statement_id", AGENT_COMMISSION_STATEMENTS.columns),
        *_not_null(g, "agent_id", "period_start", "period_end", *money),
        _zero(g, "closing_residual_minor", "closing = opening + net"),
        _zero(g, "net_residual_minor", "net = earned + reversed + adjustments"),
        _zero(g, "opening_residual_minor",
              "opening = the previous statement's closing (0 for the first)"),
        _zero(g, "commissions_tie_residual_minor",
              "the latest closing = the agent's commission rows summed (fct_commissions)"),
        *_currency(g),
    ]


def _fraud_scores(g) -> list:
    return [
        *_common(g, "payment_id", FRAUD_SCORES.columns),
        *_not_null(g, "merchant_id", "score", "decision", "model_version", "scored_at"),
        g.ExpectColumnValuesToBeBetween(column="score", min_value=0, max_value=99,
                                        description="a score 0-99"),
        g.ExpectColumnValuesToBeInSet(column="decision", value_set=list(FRAUD_DECISIONS)),
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
            "closing_balance_minor - (net_activity_minor - payouts_minor)"),
            ("closing_balance_minor", "net_activity_minor", "payouts_minor")),
        Derived("net_activity_residual_minor", residual(
            "net_activity_minor - (opening_balance_minor + gross_minor - refunds_minor"
            " - chargebacks_minor - fees_minor - adjustments_minor)"),
            ("net_activity_minor", "opening_balance_minor", "gross_minor", "refunds_minor",
             "chargebacks_minor", "fees_minor", "adjustments_minor")),
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

BANK_STATEMENTS_SUITE = SuiteSpec(
    "raw.bank_statements", "statement_uid", tuple(BANK_STATEMENTS.column_names), blocking=False,
    expectations=_bank_statements, current_only=True,
    derived=(Derived("balance_residual_minor", when("balance_check = 'ok'", residual(
        "closing_balance_minor - (opening_balance_minor + lines_total_minor)")),
        ("balance_check", "closing_balance_minor", "opening_balance_minor",
         "lines_total_minor")),),
    description="Bank statement headers (current files): ids, message types, an 'ok' balance "
    "check that holds. Warn only: reconciliation has to show what the bank sent.")
BANK_STATEMENT_LINES_SUITE = SuiteSpec(
    "raw.bank_statement_lines", "statement_line_id", tuple(BANK_STATEMENT_LINES.column_names),
    blocking=False, expectations=_bank_statement_lines, current_only=True,
    derived=(Derived("statement_is_current", (
        "CASE WHEN EXISTS (SELECT 1 FROM raw.bank_statements AS s WHERE s.statement_uid = "
        "bank_statement_lines.statement_uid AND s.superseded_by IS NULL) THEN 'yes' ELSE 'no' "
        "END"), ("statement_uid",), ("raw.bank_statements",)),),
    description="Bank statement lines (current files): ids, statuses, exact amounts, dates, "
    "currencies, each on a current statement. Warn only: reconciliation has to show a bank "
    "line even when it is odd (the payout it pays shows as a break).")
CHAIN_LOGS_SUITE = SuiteSpec(
    "raw.chain_logs", "chain_log_id", tuple(CHAIN_LOGS.column_names), blocking=False,
    expectations=_chain_logs,
    derived=(Derived("value_minor_matches_text", (
        "CASE WHEN value_minor IS NULL AND length(value_text) > 38 THEN 'equal' "
        "WHEN CAST(value_minor AS VARCHAR) = value_text THEN 'equal' "
        "ELSE coalesce('value_minor ' || CAST(value_minor AS VARCHAR), 'value_minor missing') "
        "END"), ("value_minor", "value_text")),),
    description="ERC-20 Transfer logs: ids, hashes and addresses, the removed flag, values as "
    "exact integers. Warn only: reconciliation has to show what the chain says.")



FX_RATES_SUITE = SuiteSpec(
    "raw.fx_rates", "fx_rate_id", tuple(FX_RATES.column_names), blocking=True,
    expectations=_fx_rates,
    derived=(Derived("rate_matches_text", (
        f"CASE WHEN {_strip_decimal('CAST(rate AS VARCHAR)')} = CASE WHEN rate_text LIKE '%.%' "
        f"THEN {_strip_decimal('rate_text')} ELSE ltrim(rate_text, '0') END THEN 'equal' "
        "ELSE coalesce('rate ' || CAST(rate AS VARCHAR), 'rate missing') END"),
        ("rate", "rate_text")),),
    description="ECB reference rates: one per source, day and pair, positive, stored exactly as "
    "published. Blocking: a bad rate would convert statement lines wrongly, and a closed "
    "period's lines are frozen with the rate they used.")
FRAUD_REPORTS_SUITE = SuiteSpec(
    "raw.fraud_reports", "fraud_report_line_id", tuple(FRAUD_REPORTS.column_names),
    blocking=False, expectations=_fraud_reports, current_only=True,
    description="Late fraud labels (current rows): one per report, kinds and sources, amounts. "
    "Warn only: labels train the fraud model and never move money.")

COMMISSIONS = SuiteSpec(
    "analytics.fct_commissions", "commission_id",
    ("commission_id", "event_id", "event_kind", "payment_id", "merchant_id", "beneficiary_id",
     "level", "model", "rate_bps", "pct_bps", "fixed_minor", "amount_minor", "currency",
     "captured_at"),
    blocking=False, expectations=_commissions,
    derived=(
        Derived("platform_paid_direction_minor", when(
            "model <> 'markup'", text(
                "CASE WHEN event_kind = 'refund' THEN 0 - amount_minor ELSE amount_minor END")),
            ("model", "event_kind", "amount_minor")),
        Derived("revenue_tie_residual_minor", residual(
            "sum(amount_minor) OVER (PARTITION BY event_id) - (SELECT r.agent_commission_minor "
            "FROM analytics.fct_platform_revenue AS r "
            "WHERE r.event_id = fct_commissions.event_id)"),
            ("amount_minor", "event_id"), ("analytics.fct_platform_revenue",)),
    ),
    description="One row per event and beneficiary agent: models, the rate used, signs, and "
    "every event's commissions tie to fct_platform_revenue. Warn only: nothing outside dbt "
    "reads it directly; what agents are paid is checked (blocking) on their statements.")
RECONCILIATION_MATCHES = SuiteSpec(
    "analytics.fct_reconciliation_matches", "match_id",
    ("match_id", "match_type", "channel", "currency", "payment_id", "channel_reference",
     "statement_line_id", "chain_tx_hash", "amount_minor", "matched_on"),
    blocking=False, expectations=_reconciliation_matches,
    description="Matches: stable ids, types, each names its evidence. Warn only: "
    "reconciliation is the exception report; it never stops statements.")
RECONCILIATION_BREAKS = SuiteSpec(
    "analytics.fct_reconciliation_breaks", "break_id",
    ("break_id", "break_type", "channel", "currency", "payment_id", "channel_reference",
     "statement_line_id", "chain_tx_hash", "ledger_amount_minor", "channel_amount_minor",
     "delta_minor", "first_seen", "age_days", "status", "resolved_at", "resolved_by",
     "candidates"),
    blocking=False, expectations=_reconciliation_breaks,
    derived=(
        Derived("delta_residual_minor", (
            "CASE WHEN ledger_amount_minor IS NULL OR channel_amount_minor IS NULL THEN "
            "CASE WHEN delta_minor IS NULL THEN '0' ELSE 'delta without both sides' END ELSE "
            + residual("delta_minor - (channel_amount_minor - ledger_amount_minor)") + " END"),
            ("ledger_amount_minor", "channel_amount_minor", "delta_minor")),
        Derived("mismatch_delta_minor", when(
            "break_type IN ('amount_mismatch', 'payout_mismatch') "
            "AND channel_amount_minor IS NOT NULL", residual("delta_minor")),
            ("break_type", "delta_minor", "channel_amount_minor")),
    ),
    description="Breaks: stable ids, the break types of reconciliation.md, delta = channel - "
    "ledger, open/resolved with when and by what. Warn only: the breaks are the report "
    "operations work from; a wrong row is shown, not hidden.")
SETTLEMENT_STATEMENT_LINES = SuiteSpec(
    "analytics.fct_settlement_statement_lines", "line_id",
    ("line_id", "statement_id", "merchant_id", "settlement_cycle", "period_start", "period_end",
     "currency", "line_type", "item_type", "is_late", "is_correction", "payment_id", "refund_id",
     "payout_id", "adjustment_id", "psp_line_id", "txn_currency", "txn_gross_minor", "txn_fee_minor",
     "fx_rate_id", "fx_rate", "fx_derivation", "gross_minor", "fee_minor", "net_minor"),
    blocking=True, expectations=_settlement_statement_lines,
    derived=(
        Derived("net_residual_minor", residual("net_minor - (gross_minor - fee_minor)"),
                ("net_minor", "gross_minor", "fee_minor")),
        Derived("item_gross_minor", (
            "CASE WHEN is_correction THEN NULL "
            "WHEN item_type = 'payment' THEN CAST(gross_minor AS VARCHAR) "
            "WHEN item_type IN ('refund', 'chargeback', 'payout') "
            "THEN CAST(0 - gross_minor AS VARCHAR) END"),
            ("item_type", "is_correction", "gross_minor")),
        Derived("item_fee_minor", (
            "CASE WHEN is_correction THEN NULL "
            "WHEN item_type = 'payment' THEN CAST(fee_minor AS VARCHAR) "
            "WHEN item_type = 'refund' THEN CAST(0 - fee_minor AS VARCHAR) END"),
            ("item_type", "is_correction", "fee_minor")),
        Derived("other_fee_minor", when(
            "item_type IN ('chargeback', 'payout', 'adjustment', 'token_spend')",
            residual("fee_minor")),
            ("item_type", "fee_minor")),
        Derived("statement_tie_residual_minor", residual(
            "sum(net_minor) OVER (PARTITION BY statement_id) - (SELECT s.closing_balance_minor "
            "- s.opening_balance_minor FROM analytics.fct_settlement_statements AS s "
            "WHERE s.statement_id = fct_settlement_statement_lines.statement_id)"),
            ("net_minor", "statement_id"), ("analytics.fct_settlement_statements",)),
    ),
    min_rows_sql=CAPTURED_PAYMENTS_EXIST,
    description="Merchant statement lines: line types, net = gross - fee, signs per item, each "
    "linked to its item, and a statement's lines sum to its balance movement.")
AGENT_COMMISSION_STATEMENTS = SuiteSpec(
    "analytics.fct_agent_commission_statements", "statement_id",
    ("statement_id", "agent_id", "currency", "period_start", "period_end", "settlement_cycle",
     "opening_balance_minor", "earned_minor", "reversed_minor", "adjustments_minor",
     "net_minor", "closing_balance_minor"),
    blocking=True, expectations=_agent_commission_statements,
    derived=(
        Derived("closing_residual_minor", residual(
            "closing_balance_minor - (opening_balance_minor + net_minor)"),
            ("closing_balance_minor", "opening_balance_minor", "net_minor")),
        Derived("net_residual_minor", residual(
            "net_minor - (earned_minor + reversed_minor + adjustments_minor)"),
            ("net_minor", "earned_minor", "reversed_minor", "adjustments_minor")),
        Derived("opening_residual_minor", residual(
            "opening_balance_minor - coalesce(lag(closing_balance_minor) OVER (PARTITION BY "
            "agent_id, currency ORDER BY period_end, period_start), 0)"),
            ("opening_balance_minor", "closing_balance_minor", "agent_id", "currency",
             "period_start", "period_end")),
        Derived("commissions_tie_residual_minor", when(
            "row_number() OVER (PARTITION BY agent_id, currency "
            "ORDER BY period_end DESC, period_start DESC) = 1",
            residual("closing_balance_minor - (SELECT sum(c.amount_minor) "
                     "FROM analytics.fct_commissions AS c WHERE c.beneficiary_id = "
                     "fct_agent_commission_statements.agent_id AND c.currency = "
                     "fct_agent_commission_statements.currency)")),
            ("closing_balance_minor", "agent_id", "currency", "period_start", "period_end"),
            ("analytics.fct_commissions",)),
    ),
    # Every agent and currency with commission rows has a statement: the rows here must be at
    # least this table's rows plus one per (agent, currency) of fct_commissions with none (the
    # per-row tie above cannot see an agent whose statement is missing, or an empty mart).
    min_rows_sql=(
        "SELECT (SELECT count(*) FROM analytics.fct_agent_commission_statements) + "
        "(SELECT count(*) FROM (SELECT DISTINCT c.beneficiary_id, c.currency "
        "FROM analytics.fct_commissions AS c WHERE NOT EXISTS (SELECT 1 FROM "
        "analytics.fct_agent_commission_statements AS s WHERE s.agent_id = c.beneficiary_id "
        "AND s.currency = c.currency)) AS unstated)"),
    min_rows_tables=("analytics.fct_commissions",),
    min_rows_description="one statement at least for every agent and currency with "
    "fct_commissions rows",
    description="Agents' commission statements: closing = opening + net, net = earned + "
    "reversed + adjustments, each opens at the previous closing, and the balance is the agent's commission "
    "rows summed.")
FRAUD_SCORES = SuiteSpec(
    "analytics.fct_fraud_scores", "payment_id",
    ("payment_id", "merchant_id", "created_at", "score", "decision", "reasons", "model_version",
     "scored_at"),
    blocking=False, expectations=_fraud_scores,
    description="Batch fraud scores: one per payment, 0-99, a known decision. Warn only: a "
    "score informs the risk team and never moves money.")

SUITES: dict[str, SuiteSpec] = {s.name: s for s in (
    PAYMENTS, REFUNDS, LEDGER_ENTRIES, PSP_LINES_SUITE, BANK_STATEMENTS_SUITE,
    BANK_STATEMENT_LINES_SUITE, CHAIN_LOGS_SUITE, FX_RATES_SUITE, FRAUD_REPORTS_SUITE,
    SETTLEMENT_STATEMENTS, SETTLEMENT_STATEMENT_LINES, PLATFORM_REVENUE, COMMISSIONS,
    AGENT_COMMISSION_STATEMENTS, RECONCILIATION_MATCHES, RECONCILIATION_BREAKS, FRAUD_SCORES)}


def build_suite(spec: SuiteSpec, *, min_rows: int = 0):
    """The GX ExpectationSuite for `spec` (imports great_expectations)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    expectations = spec.expectations(gxe)
    if min_rows:
        expectations.append(gxe.ExpectTableRowCountToBeBetween(
            min_value=min_rows, description=spec.min_rows_description))
    return gx.ExpectationSuite(name=spec.name, expectations=expectations,
                               meta={"table": spec.name, "blocking": spec.blocking})
