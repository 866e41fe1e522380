"""What every file parser returns: normalised, typed records, one shape per kind of source.

Parsers live in `ingest/files/formats/`, one module per format family. Each exposes

    FORMAT: str                      # e.g. "camt", "mt940", "bai2", "psp_csv", "wechat", ...
    def sniff(head: bytes, name: str) -> bool   # cheap: do these first 4 KiB look like mine?
    def parse(source: bytes | Path, name: str | None = None) -> ParsedFile
    def render(parsed: ParsedFile, ...) -> bytes  # the inverse, for the demo's channels and bench
                                                  # (all but Alipay, which we only read)

`source` is the file's bytes or its path (big files: parsers may stream from the path, see
`open_source`); `name` is the file name (some formats carry facts in it, e.g. the PSP CSV's
channel and day).

`parse` never guesses: a file it cannot read completely raises `ParseError` with a machine-readable
reason and where it failed (line number or XML element path); the loader quarantines the file with
that reason and goes on with the next one. Problems that do not stop the file from being read (a
statement whose own arithmetic does not hold, a bill whose trailer disagrees with its rows) are
`warnings` on the parsed file; the loader records them and flags the rows - never silently accepts.

Amounts are integer minor units of the record's currency (exponent from `warehouse.money`),
converted exactly from the decimal text in the file: never through float. A file amount with more
decimals than the currency allows raises `ParseError("amount_precision", ...)` unless the format
documents that the extra digits are zeros.
"""

from __future__ import annotations

import codecs
import datetime as dt
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


def open_source(source: bytes | Path) -> IO[bytes]:
    """A binary file object over bytes or a path (the caller closes it)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(source)
    return open(source, "rb")  # noqa: SIM115 - returned to the caller


def read_source(source: bytes | Path) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    return Path(source).read_bytes()


class ParseError(Exception):
    """The file cannot be read; the loader quarantines it with `reason` and `location`."""

    def __init__(self, reason: str, message: str, location: str | None = None):
        super().__init__(f"{reason}: {message}" + (f" (at {location})" if location else ""))
        self.reason = reason  # machine-readable, snake_case: "xml_syntax", "missing_field", ...
        self.message = message  # for a human
        self.location = location  # "line 17" or "/Document/BkToCstmrStmt/Stmt[2]/Ntry[4]/Amt"


def refuse_nul(data: bytes | str) -> None:
    """A NUL is never part of a text file's data (a damaged or binary file), and a Postgres text
    column cannot hold one: ParseError("bad_character") at its line."""
    at = data.find(b"\x00") if isinstance(data, bytes) else data.find("\x00")
    if at >= 0:
        lines = data.count(b"\n", 0, at) if isinstance(data, bytes) else data.count("\n", 0, at)
        raise ParseError("bad_character", f"a NUL byte at offset {at}: the file is damaged or "
                         "not text", f"line {lines + 1}")


_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_XML_DECLARED_ENCODING = re.compile(r"""^(\s*<\?xml[^>]*?\bencoding\s*=\s*["'])[^"']*(["'])""")


def as_utf8(data: bytes, *, head: bool = False) -> bytes:
    """A text file saved as UTF-16 with its byte-order mark (Windows' "Unicode" exports, some
    banks' XML) as the UTF-8 every parser reads, an XML declaration's encoding rewritten to
    match; any other file unchanged. `head`: `data` is the file's first bytes only (for sniff),
    so a character cut at the end is dropped. The file's identity stays the hash of its bytes."""
    if not data.startswith(_UTF16_BOMS):
        return data
    try:  # "utf-16" takes the byte order from the mark and drops it
        text = data.decode("utf-16", errors="ignore" if head else "strict")
    except UnicodeDecodeError as err:
        raise ParseError("encoding", "the file starts with a UTF-16 byte-order mark but is not "
                         f"UTF-16: {err.reason} at byte {err.start}", f"byte {err.start}") from err
    return _XML_DECLARED_ENCODING.sub(r"\1UTF-8\2", text, count=1).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Warning_:
    code: str  # "balance_mismatch", "trailer_total_mismatch", "record_count_mismatch", ...
    message: str
    statement_index: int | None = None  # which statement of the file, when it is about one


# --- bank statements: camt.052/053/054, MT940/MT942, BAI2 -------------------------------------

@dataclass(slots=True)
class Statement:
    index: int  # position in the file, 0-based
    message_type: str  # "camt.053" | "camt.052" | "camt.054" | "mt940" | "mt942" | "bai2"
    account_id: str  # IBAN when the file has one, else the account number as written
    statement_id: str | None  # camt Stmt/Id, MT940 :20:, BAI2 file id + account
    sequence_number: str | None  # camt ElctrncSeqNb / LglSeqNb, MT940 :28C:, BAI2 file seq
    currency: str | None  # account currency
    servicer_bic: str | None = None
    account_name: str | None = None
    created_at: dt.datetime | None = None
    from_date: dt.date | None = None
    to_date: dt.date | None = None
    opening_balance_minor: int | None = None  # booked opening (camt OPBD/PRCD, MT940 :60F:/:60M:)
    opening_date: dt.date | None = None
    closing_balance_minor: int | None = None  # booked closing (camt CLBD, MT940 :62F:/:62M:)
    closing_date: dt.date | None = None
    # Each balance's own currency, which its minor units count: camt gives every balance its
    # Amt/@Ccy, which may differ from the account's (then balance_check is "mismatch" and a
    # warning says so); MT940 and BAI2 balances are in the statement's currency.
    opening_currency: str | None = None
    closing_currency: str | None = None
    # Control figures the file states about itself (BAI2 trailers, camt TxsSummry), for checks.
    control_total_minor: int | None = None
    control_count: int | None = None
    # "ok" (opening + sum(lines) == closing), "mismatch" (a warning is raised too), or
    # "not_applicable" (no opening/closing in this message type, e.g. camt.054, MT942).
    balance_check: str = "not_applicable"


@dataclass(slots=True)
class StatementLine:
    statement_index: int
    line_number: int  # 0-based within its statement
    booking_date: dt.date | None
    value_date: dt.date | None
    amount_minor: int  # signed: credits positive, debits negative
    currency: str
    status: str = "booked"  # "booked" | "pending" | "info"
    bank_reference: str | None = None  # camt AcctSvcrRef, MT940 bank ref, BAI2 bank ref
    customer_reference: str | None = None  # MT940 customer ref, BAI2 customer ref
    end_to_end_id: str | None = None  # camt Refs/EndToEndId
    remittance: str | None = None  # camt RmtInf/Ustrd (joined), MT940 :86:, BAI2 text
    counterparty_name: str | None = None
    counterparty_account: str | None = None
    transaction_code: str | None = None  # camt BkTxCd (Domn/Fmly/SubFmly or Prtry), MT940 code,
    #                                      BAI2 type code
    # Detail lines (camt TxDtls) of a batched entry are separate lines sharing entry_reference.
    entry_reference: str | None = None


# --- PSP bills: Clearhouse PSP CSV, WeChat Pay trade/fund-flow bills, Alipay bills ------------

@dataclass(slots=True)
class PspLine:
    line_number: int  # 1-based physical line in the file, for tracing
    record_type: str  # "payment" | "refund" | "chargeback" | "fee_adjustment" | "payout" | "other"
    channel: str | None  # e.g. "card_stripe" from the file name, "wechat_pay", "alipay"
    channel_reference: str | None  # the PSP's transaction id
    merchant_reference: str | None  # the platform's payment/refund id as sent to the PSP
    transaction_at: dt.datetime | None  # UTC, naive
    currency: str
    gross_minor: int  # signed: refunds and chargebacks negative
    fee_minor: int  # signed
    net_minor: int  # gross_minor - fee_minor
    payout_id: str | None = None
    payout_date: dt.date | None = None
    status: str | None = None  # the PSP's own status word (e.g. WeChat "SUCCESS", "REFUND")
    description: str | None = None


@dataclass(slots=True)
class PspSummary:
    """A bill's own totals (WeChat/Alipay trailers), checked against the rows by the parser."""

    row_count: int | None = None
    gross_minor: int | None = None
    refund_minor: int | None = None
    fee_minor: int | None = None
    net_minor: int | None = None


# --- chain: ERC-20 Transfer logs in eth_getLogs shape ------------------------------------------

@dataclass(slots=True)
class ChainLog:
    network: str  # CAIP-2, e.g. "eip155:1", "eip155:84532"; from the file, else the landing dir
    block_number: int
    block_hash: str | None
    block_timestamp: dt.datetime | None  # when the file has it
    transaction_hash: str  # 0x-prefixed lowercase
    log_index: int
    token_address: str  # the log's `address`, lowercase
    from_address: str  # decoded from topics[1], lowercase 0x + 40 hex
    to_address: str  # topics[2]
    value: int  # uint256, exact (may exceed 2^63; the loader stores it as decimal text too)
    removed: bool


# --- FX: ECB euro reference rates --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FxRate:
    rate_date: dt.date
    base_currency: str  # "EUR" for the ECB
    quote_currency: str
    rate: str  # exact decimal text as published: 1 base = rate quote ("1.1172")
    source: str  # "ecb"


# --- fraud reports: chargebacks and issuer/customer fraud reports (late fraud labels) ---------

@dataclass(frozen=True, slots=True)
class FraudReport:
    line_number: int  # 1-based physical line in the file (the header is line 1)
    report_id: str  # the report's own id; a later file with the same id supersedes this row
    payment_id: str  # the Clearhouse payment id
    merchant_id: str
    kind: str  # card_testing | account_takeover | mule_cash_out | friendly_fraud | stolen_card
    #            | other
    source: str  # chargeback | issuer_report | customer_claim | internal_review
    reported_at: dt.datetime  # UTC, naive
    amount_minor: int | None  # disputed amount, minor units of `currency`; None when not given
    currency: str | None  # required when amount_minor is given


@dataclass(slots=True)
class ParsedFile:
    format: str  # the parser's FORMAT
    kind: str  # "bank_statement" | "psp_bill" | "chain_logs" | "fx_rates" | "fraud_reports"
    statements: list[Statement] = field(default_factory=list)
    statement_lines: list[StatementLine] = field(default_factory=list)
    # Big camt files read by the fast lane come back columnar instead: an Arrow table whose
    # columns are exactly StatementLine's fields (amounts int64, dates date32).
    statement_table: Any = None
    psp_lines: list[PspLine] = field(default_factory=list)
    psp_summary: PspSummary | None = None
    # Big PSP files may come back columnar instead of as psp_lines: an Arrow table whose columns
    # are exactly PspLine's fields (amounts int64, dates date32, times timestamp[us]).
    psp_table: Any = None
    chain_logs: list[ChainLog] = field(default_factory=list)
    # network -> the newest block the node had seen when the file was written (confirmations
    # are counted against it); empty when the file does not say.
    chain_heads: dict[str, int] = field(default_factory=dict)
    fx_rates: list[FxRate] = field(default_factory=list)
    fraud_reports: list[FraudReport] = field(default_factory=list)
    warnings: list[Warning_] = field(default_factory=list)
    # A PSP bill's identity from its content (WeChat trade bill: variant, merchant ids and
    # Beijing day; consumer export: account and period): a re-send under another name with
    # other bytes supersedes the earlier file. None: the file's name identifies it.
    bill_key: str | None = None

    def lines(self) -> list[StatementLine]:
        """The statement lines as records, whichever way the parser returned them."""
        if self.statement_table is None:
            return self.statement_lines
        return [StatementLine(**row) for row in self.statement_table.to_pylist()]

    @property
    def row_count(self) -> int:
        psp_rows = self.psp_table.num_rows if self.psp_table is not None else len(self.psp_lines)
        statement_rows = (self.statement_table.num_rows if self.statement_table is not None
                          else len(self.statement_lines))
        return (statement_rows + psp_rows + len(self.chain_logs) + len(self.fx_rates)
                + len(self.fraud_reports))
