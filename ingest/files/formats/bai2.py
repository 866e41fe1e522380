"""BAI2 (BAI Cash Management Balance Reporting Specifications, version 2).

A file is `01` header, groups (`02` .. `98`) of accounts (`03` .. `49`) with `16` transaction
details, `88` continuations of any record, and the `99` trailer. Each `03` account becomes one
`Statement`, each `16` a `StatementLine`. Our own line scanner reads it (a path is streamed); the
`bai2` library is the oracle in the tests: it stops at the first trailer mismatch without saying
where, rejects type codes it does not list and reads ~40k records/s here.

Choices a reader should know about:
- Amounts are integers already in the currency's minor units (BAI2 implies the decimal point from
  the currency: 10000 USD is 100.00), so they are read as integers, never scaled. Balances and
  summaries may carry a sign, detail amounts may not. A blank trailer total counts as 0, as the
  library and its `account_trailer_amount_blank` sample do.
- Currency: the `03` account's, else the `02` group's, else USD (the BAI2 default).
- Direction of a `16` by type code: 100-399 and 920-959 credit, 400-699 and 960-999 debit, plus
  the loan codes the spec signs (706, 708, 720-728 credit; 760 debit). Anything else (890
  "non-monetary information", the other 7xx-9xx) is status "info" with the amount as written and
  stays out of the balance check.
- Quarantine (`ParseError`): no `01` header; version other than 2; records out of order (a `16`
  outside an account, a missing trailer); malformed numbers, dates or funds types; an unknown
  currency; no `99` trailer (truncated); and a `99` whose control total, group count or record
  count differs from the file's records. The trailer is the file's checksum: a mismatch means
  records were lost or altered, and a payments operator does not book a file whose own total does
  not hold.
- Warnings: a `49` or `98` trailer that disagrees with its own records while the `99` holds
  (`trailer_total_mismatch`, `record_count_mismatch`): the bank's subtotal is wrong, not the data.
  `balance_mismatch` when opening ledger (010) + details != closing ledger (015); without both,
  balance_check is "not_applicable". `group_status` for test-only (4) or deletion (2) groups.
- Every total is recomputed from the records, not from the trailers below it, so a wrong `49`
  cannot hide a wrong `16`.
- `16` text: the rest of the record after the customer reference, commas included; `88` text
  continuations join with one space (as in the library). Times 2400 and 9999 mean end of day.
- statement_id is "<file id>:<account>", sequence_number the file id; value_date is set only for
  value-dated funds (funds type V), booking_date is the group's as-of date.

`render` writes a file that `parse` reads back to the same figures: one group per as-of date and
currency, `03` with 010/015 when known, `16` with bank and customer references and text (wrapped
into `88` records at 80 characters), and trailers computed from the records.
"""

from __future__ import annotations

import datetime as dt
import gc
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ingest.files.amounts import AmountError, currency_exponent
from ingest.files.records import (
    ParsedFile,
    ParseError,
    Statement,
    StatementLine,
    Warning_,
    open_source,
)

FORMAT = "bai2"

_DEFAULT_CURRENCY = "USD"
_OPENING_LEDGER, _CLOSING_LEDGER = "010", "015"
_RECORD_WIDTH = 80  # what render writes; the parser reads records of any length
_BLOCK_BYTES = 1 << 22
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 13)) + b"\x7f"
_BIC_RE = re.compile(r"[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?")
_TIME_RE = re.compile(r"(\d\d):?(\d\d)(?::?(\d\d))?")
_FUNDS_TYPES = frozenset({"", "0", "1", "2", "Z", "S", "V", "D"})
_GROUP_STATUS = {"2": "deletion", "4": "test only"}

# What a 16 record does to the balance, by type code.
_CREDIT, _DEBIT, _INFO = 1, -1, 0


def _direction(code: int) -> int:
    if 100 <= code <= 399 or 920 <= code <= 959 or code in (706, 708) or 720 <= code <= 728:
        return _CREDIT
    if 400 <= code <= 699 or 960 <= code <= 999 or code == 760:
        return _DEBIT
    return _INFO


_DIRECTIONS = {f"{code:03d}": _direction(code) for code in range(1000)}
# The record that may follow each record (88 continuations aside).
_NEXT = {
    None: {"01"}, "01": {"02", "99"}, "02": {"03", "98"}, "03": {"16", "49"},
    "16": {"16", "49"}, "49": {"03", "98"}, "98": {"02", "99"}, "99": set(),
}


# --- sniff and parse ----------------------------------------------------------------------------

def sniff(head: bytes, name: str) -> bool:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"01,")


def parse(source: bytes | Path, name: str | None = None) -> ParsedFile:
    # Millions of objects and no reference cycles: keep the cyclic collector out of the way.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with open_source(source) as stream:
            reader = _Reader()
            for line_no, line in _lines(stream):
                reader.physical(line_no, line)
            return reader.finish()
    finally:
        if gc_was_enabled:
            gc.enable()


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, str]]:
    """(line number, right-trimmed text) of each non-blank line, decoded a block at a time."""
    line_no = 0
    carry = b""
    while True:
        chunk = stream.read(_BLOCK_BYTES)
        if chunk:
            chunk = carry + chunk
            cut = chunk.rfind(b"\n") + 1
            carry = chunk[cut:]
            if not cut:
                continue
            chunk = chunk[:cut - 1]  # the block's last line break ends its last line
        elif carry:
            chunk, carry = carry, b""
        else:
            return
        for line in _decode(chunk, line_no == 0):
            line_no += 1
            line = line.rstrip()
            if line:
                yield line_no, line


def _decode(chunk: bytes, first: bool) -> list[str]:
    if first and chunk.startswith(b"\xef\xbb\xbf"):
        chunk = chunk[3:]
    chunk = chunk.translate(None, _CONTROL_BYTES).replace(b"\r\n", b"\n")
    try:
        return chunk.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return [_decode_line(raw) for raw in chunk.split(b"\n")]


def _decode_line(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


class _Account:
    """An open 03 .. 49 section."""

    __slots__ = ("computed_total", "lines", "records", "statement")

    def __init__(self, statement: Statement, computed_total: int, records: int) -> None:
        self.statement = statement
        self.computed_total = computed_total  # every amount in the section, as the trailer sums
        self.records = records  # physical records so far, 88s included
        self.lines: list[StatementLine] = []


class _Group:
    """An open 02 .. 98 section."""

    __slots__ = ("accounts", "as_of", "currency", "index", "originator", "records", "total")

    def __init__(self, index: int, as_of: dt.date, currency: str, originator: str,
                 records: int) -> None:
        self.index = index
        self.as_of = as_of
        self.currency = currency
        self.originator = originator
        self.records = records
        self.total = 0
        self.accounts = 0


class _Reader:
    """Assembles physical lines into records (88 continues the record before it) and reads them."""

    def __init__(self) -> None:
        self.parsed = ParsedFile(format=FORMAT, kind="bank_statement")
        self.pending_code: str | None = None  # the record being assembled from its lines
        self.pending_data = ""
        self.pending_line = 0
        self.pending_rows = 0
        self.last_code: str | None = None
        self.file_id = ""
        self.created_at: dt.datetime | None = None
        self.file_records = 0
        self.file_total = 0
        self.groups = 0
        self.group: _Group | None = None
        self.account: _Account | None = None
        self.handlers = {
            "01": self._file_header, "02": self._group_header, "03": self._account_header,
            "16": self._detail, "49": self._account_trailer, "98": self._group_trailer,
            "99": self._file_trailer,
        }

    # physical lines -> records ---------------------------------------------------------------

    def physical(self, line_no: int, line: str) -> None:
        code = line[:2]
        if self.last_code is None and not line.startswith("01,"):
            raise ParseError("not_bai2", "a BAI2 file starts with its 01 file header",
                             f"line {line_no}")
        if code == "88" and line[2:3] == ",":
            data = self.pending_data
            # After a "/" the record goes on with new fields; else the text field goes on.
            self.pending_data = (data[:-1] + "," if data.endswith("/") else data + " ") + line[3:]
            self.pending_rows += 1
            return
        if self.pending_code is not None:
            self._record()
        if line[2:3] != "," and line != code:
            raise ParseError("bad_record", f"{line[:20]!r} is not a BAI2 record "
                             "(two-digit code and a comma)", f"line {line_no}")
        if code not in self.handlers:
            raise ParseError("bad_record", f"unknown record code {code!r}", f"line {line_no}")
        if code not in _NEXT[self.last_code]:
            self._out_of_order(code, line_no)
        self.last_code = code
        self.pending_code, self.pending_data = code, line[3:]
        self.pending_line = line_no
        self.pending_rows = 1

    def finish(self) -> ParsedFile:
        if self.pending_code is not None:
            self._record()
        if self.last_code is None:
            raise ParseError("not_bai2", "the file is empty", "line 1")
        if self.last_code != "99":
            raise ParseError("truncated", "the file ends without its 99 file trailer",
                             f"line {self.pending_line}")
        return self.parsed

    def _out_of_order(self, code: str, line_no: int) -> None:
        expected = ", ".join(sorted(_NEXT[self.last_code])) or "nothing"
        raise ParseError("unexpected_record", f"a {code} record after {self.last_code} "
                         f"(expected {expected})", f"line {line_no}")

    def _record(self) -> None:
        code, data, rows = self.pending_code, self.pending_data, self.pending_rows
        assert code is not None  # called only with a record pending
        self.pending_code = None
        if data.endswith("/"):
            data = data[:-1]
        # Count the records into the sections open around this one (its own, if a header, is
        # opened by the handler with these rows).
        self.file_records += rows
        if self.group is not None:
            self.group.records += rows
        if self.account is not None:
            self.account.records += rows
        self.handlers[code](data.split(","), rows)

    # records ---------------------------------------------------------------------------------

    def _file_header(self, fields: list[str], rows: int) -> None:
        _need(fields, 8, "01 file header", self.pending_line)
        if fields[7].strip() != "2":
            raise ParseError("unsupported_version", f"BAI version {fields[7]!r}; only 2 is "
                             "supported", self._where())
        self.file_id = fields[4].strip()
        created = self._date(fields[2])
        self.created_at = dt.datetime.combine(created, self._time(fields[3]))

    def _group_header(self, fields: list[str], rows: int) -> None:
        _need(fields, 6, "02 group header", self.pending_line)
        status = fields[2].strip()
        currency = self._currency(fields[5]) or _DEFAULT_CURRENCY
        self.group = _Group(self.groups, self._date(fields[3]), currency, fields[1].strip(), rows)
        self.groups += 1
        if status in _GROUP_STATUS:
            self.parsed.warnings.append(Warning_(
                "group_status", f"group {self.group.index + 1} is marked "
                f"{_GROUP_STATUS[status]} (status {status})"))

    def _account_header(self, fields: list[str], rows: int) -> None:
        group = self._group()
        _need(fields, 1, "03 account identifier", self.pending_line)
        account_number = fields[0].strip()
        if not account_number:
            raise ParseError("missing_field", "the 03 record has no account number",
                             self._where())
        currency = self._currency(fields[1] if len(fields) > 1 else "") or group.currency
        summaries, total = self._summaries(fields[2:])
        index = len(self.parsed.statements)
        originator = group.originator
        statement = Statement(
            index=index, message_type="bai2", account_id=account_number,
            statement_id=f"{self.file_id}:{account_number}", sequence_number=self.file_id or None,
            currency=currency, servicer_bic=originator if _BIC_RE.fullmatch(originator) else None,
            created_at=self.created_at, from_date=group.as_of, to_date=group.as_of,
            opening_balance_minor=summaries.get(_OPENING_LEDGER),
            closing_balance_minor=summaries.get(_CLOSING_LEDGER))
        if statement.opening_balance_minor is not None:
            statement.opening_date, statement.opening_currency = group.as_of, currency
        if statement.closing_balance_minor is not None:
            statement.closing_date, statement.closing_currency = group.as_of, currency
        self.account = _Account(statement, total, rows)
        group.accounts += 1

    def _summaries(self, fields: list[str]) -> tuple[dict[str, int], int]:
        """Summary/status items: (amount by type code, sum of all their amounts)."""
        found: dict[str, int] = {}
        total = 0
        at = 0
        while at < len(fields):
            code = fields[at].strip()
            if not code:  # banks differ on the comma before "/": an empty field is no item
                at += 1
                continue
            if len(code) != 3 or not code.isdigit():
                raise ParseError("bad_field", f"{code!r} is not a BAI2 type code", self._where())
            amount = self._amount(fields[at + 1] if at + 1 < len(fields) else "", signed=True)
            at = self._skip_funds(fields, at + 4)  # amount, item count, funds type (+ details)
            if amount is not None:
                found.setdefault(code, amount)
                total += amount
        return found, total

    def _detail(self, fields: list[str], rows: int) -> None:
        account = self._account()
        if len(fields) < 3:
            fields = fields + [""] * (3 - len(fields))
        code = fields[0].strip()
        direction = _DIRECTIONS.get(code)
        if direction is None:
            raise ParseError("bad_field", f"{code!r} is not a BAI2 type code", self._where())
        amount = self._amount(fields[1], signed=False)
        if amount is None:
            raise ParseError("missing_field", "the 16 record has no amount", self._where())
        value_date = None
        funds = fields[2].strip()
        at = 3
        if funds:
            if funds == "V" and len(fields) > 3 and fields[3].strip():
                value_date = self._date(fields[3])
            at = self._skip_funds(fields, 3)
        bank = fields[at].strip() if at < len(fields) else ""
        customer = fields[at + 1].strip() if at + 1 < len(fields) else ""
        text = ",".join(fields[at + 2:]).strip()
        account.computed_total += amount
        statement = account.statement
        line = StatementLine(
            statement.index, len(account.lines), self._group().as_of, value_date,
            amount * direction if direction else amount,
            statement.currency or _DEFAULT_CURRENCY,  # the 03 record always sets it
            "booked" if direction else "info", bank or None, customer or None, None,
            text or None, None, None, code)
        account.lines.append(line)

    def _account_trailer(self, fields: list[str], rows: int) -> None:
        account = self._account()
        group = self._group()
        _need(fields, 2, "49 account trailer", self.pending_line)
        stated_total = self._amount(fields[0], signed=True) or 0
        stated_records = self._count(fields[1])
        statement = account.statement
        statement.control_total_minor = stated_total
        statement.control_count = stated_records
        where = f"account {statement.account_id} (49 at {self._where()})"
        if stated_total != account.computed_total:
            self._warn("trailer_total_mismatch", f"{where} states a control total of "
                       f"{stated_total}, its records add up to {account.computed_total}",
                       statement.index)
        if stated_records != account.records:
            self._warn("record_count_mismatch", f"{where} states {stated_records} records, it "
                       f"has {account.records}", statement.index)
        self._check_balance(statement, account.lines)
        self.parsed.statements.append(statement)
        self.parsed.statement_lines.extend(account.lines)
        group.total += account.computed_total
        self.account = None

    def _group_trailer(self, fields: list[str], rows: int) -> None:
        group = self._group()
        _need(fields, 3, "98 group trailer", self.pending_line)
        stated_total = self._amount(fields[0], signed=True) or 0
        stated_accounts = self._count(fields[1])
        stated_records = self._count(fields[2])
        where = f"group {group.index + 1} (98 at {self._where()})"
        if stated_total != group.total:
            self._warn("trailer_total_mismatch", f"{where} states a control total of "
                       f"{stated_total}, its records add up to {group.total}")
        if stated_accounts != group.accounts:
            self._warn("record_count_mismatch", f"{where} states {stated_accounts} accounts, "
                       f"it has {group.accounts}")
        if stated_records != group.records:
            self._warn("record_count_mismatch", f"{where} states {stated_records} records, it "
                       f"has {group.records}")
        self.file_total += group.total
        self.group = None

    def _file_trailer(self, fields: list[str], rows: int) -> None:
        _need(fields, 3, "99 file trailer", self.pending_line)
        stated_total = self._amount(fields[0], signed=True) or 0
        stated_groups = self._count(fields[1])
        stated_records = self._count(fields[2])
        if stated_total != self.file_total:
            raise ParseError("trailer_total_mismatch", f"the file trailer states a control "
                             f"total of {stated_total}, the records add up to {self.file_total}",
                             self._where())
        if stated_groups != self.groups:
            raise ParseError("record_count_mismatch", f"the file trailer states {stated_groups} "
                             f"groups, the file has {self.groups}", self._where())
        if stated_records != self.file_records:
            raise ParseError("record_count_mismatch", f"the file trailer states {stated_records} "
                             f"records, the file has {self.file_records}", self._where())
        if not self.groups:
            raise ParseError("missing_field", "the file has no groups", self._where())

    # checks and helpers ----------------------------------------------------------------------

    def _check_balance(self, statement: Statement, lines: list[StatementLine]) -> None:
        opening, closing = statement.opening_balance_minor, statement.closing_balance_minor
        if opening is None or closing is None:
            return
        total = sum(line.amount_minor for line in lines if line.status == "booked")
        if opening + total == closing:
            statement.balance_check = "ok"
            return
        statement.balance_check = "mismatch"
        self._warn("balance_mismatch", f"account {statement.account_id}: opening ledger {opening} "
                   f"+ details {total} = {opening + total}, but the closing ledger is {closing} "
                   f"({statement.currency} minor units)", statement.index)

    def _warn(self, code: str, message: str, statement_index: int | None = None) -> None:
        self.parsed.warnings.append(Warning_(code, message, statement_index))

    def _where(self) -> str:
        return f"line {self.pending_line}"

    def _group(self) -> _Group:
        assert self.group is not None  # guaranteed by the record order check
        return self.group

    def _account(self) -> _Account:
        assert self.account is not None
        return self.account

    def _skip_funds(self, fields: list[str], at: int) -> int:
        """Index after a funds type at `at - 1` and its availability fields."""
        funds = fields[at - 1].strip() if at - 1 < len(fields) else ""
        if funds not in _FUNDS_TYPES:
            raise ParseError("bad_field", f"{funds!r} is not a BAI2 funds type", self._where())
        if funds == "S":  # immediate, one-day, two-or-more-day amounts
            for offset in range(3):
                self._amount(_field(fields, at + offset), signed=True)
            return at + 3
        if funds == "V":  # value date, value time
            return at + 2
        if funds == "D":  # count, then (days, amount) pairs
            count = self._count(_field(fields, at))
            for pair in range(count):
                self._amount(_field(fields, at + 2 + 2 * pair), signed=True)
            return at + 1 + 2 * count
        return at

    def _amount(self, text: str, *, signed: bool) -> int | None:
        text = text.strip()
        if not text:
            return None
        digits = text[1:] if signed and text[0] in "+-" else text
        if not digits.isdigit() or not digits.isascii() or len(digits) > 38:
            raise ParseError("bad_amount", f"{text!r} is not a BAI2 amount (integer minor units)",
                             self._where())
        return int(text)

    def _count(self, text: str) -> int:
        text = text.strip()
        if not text.isdigit() or not text.isascii():
            raise ParseError("bad_field", f"{text!r} is not a count", self._where())
        return int(text)

    def _currency(self, text: str) -> str | None:
        code = text.strip()
        if not code:
            return None
        try:
            currency_exponent(code)
        except AmountError as err:
            raise ParseError(err.reason, str(err), self._where()) from None
        return code

    def _date(self, text: str) -> dt.date:
        text = text.strip()
        day = _DATES.get(text)
        if day is None:
            if len(text) != 6 or not text.isdigit() or not text.isascii():
                raise ParseError("bad_date", f"{text!r} is not a YYMMDD date", self._where())
            yy = int(text[:2])
            try:
                day = dt.date(yy + (2000 if yy < 69 else 1900), int(text[2:4]), int(text[4:]))
            except ValueError:
                raise ParseError("bad_date", f"{text!r} is not a date", self._where()) from None
            if len(_DATES) < 50_000:  # real files have a handful of dates; hostile ones are bounded
                _DATES[text] = day
        return day

    def _time(self, text: str) -> dt.time:
        text = text.strip()
        if not text or text in ("2400", "9999"):  # end of day
            return dt.time.max if text else dt.time()
        match = _TIME_RE.fullmatch(text)
        try:
            if match is None:
                raise ValueError(text)
            hour, minute, second = match.groups()
            return dt.time(int(hour), int(minute), int(second or 0))
        except ValueError:
            raise ParseError("bad_date", f"{text!r} is not a time", self._where()) from None


_DATES: dict[str, dt.date] = {}


def _field(fields: list[str], at: int) -> str:
    return fields[at] if at < len(fields) else ""


def _need(fields: list[str], count: int, what: str, line_no: int) -> None:
    if len(fields) < count:
        raise ParseError("missing_field", f"the {what} has {len(fields)} fields, needs {count}",
                         f"line {line_no}")


# --- render -------------------------------------------------------------------------------------

def render(parsed: ParsedFile, *, sender_id: str | None = None,
           receiver_id: str = "CLEARHOUSE", file_id: str | None = None,
           created_at: dt.datetime | None = None) -> bytes:
    """A BAI2 file of `parsed`'s statements with trailers computed from its records."""
    statements = parsed.statements
    if not statements:
        raise ValueError("a BAI2 file needs at least one account")
    by_statement: dict[int, list[StatementLine]] = {}
    for line in parsed.statement_lines:
        by_statement.setdefault(line.statement_index, []).append(line)
    first = statements[0]
    sender = sender_id or first.servicer_bic or "BANK"
    file_id = file_id or first.sequence_number or "1"
    created = created_at or first.created_at or dt.datetime.combine(_as_of(first), dt.time())
    for value in (sender, receiver_id, file_id):
        _check_field(value)
    out = [f"01,{sender},{receiver_id},{created:%y%m%d},{created:%H%M},{file_id},,,2/"]
    total = 0
    groups = 0
    for group in _groups(statements):
        records, group_total = _render_group(group, by_statement, sender, receiver_id)
        out.extend(records)
        total += group_total
        groups += 1
    out.append(f"99,{total},{groups},{len(out) + 1}/")
    out.append("")
    return "\n".join(out).encode("utf-8")


def _groups(statements: list[Statement]) -> Iterator[list[Statement]]:
    """Consecutive statements sharing an as-of date and currency form one 02 group."""
    group: list[Statement] = []
    for statement in statements:
        if group and (_as_of(group[0]), group[0].currency) != (_as_of(statement),
                                                               statement.currency):
            yield group
            group = []
        group.append(statement)
    if group:
        yield group


def _render_group(statements: list[Statement], by_statement: dict[int, list[StatementLine]],
                  sender: str, receiver: str) -> tuple[list[str], int]:
    first = statements[0]
    currency = first.currency or _DEFAULT_CURRENCY
    out = [f"02,{receiver},{sender},1,{_as_of(first):%y%m%d},2400,{currency},2/"]
    total = 0
    for statement in statements:
        records, account_total = _render_account(statement, by_statement.get(statement.index, []))
        out.extend(records)
        total += account_total
    out.append(f"98,{total},{len(statements)},{len(out) + 1}/")
    return out, total


def _render_account(statement: Statement, lines: list[StatementLine]) -> tuple[list[str], int]:
    currency = statement.currency or _DEFAULT_CURRENCY
    currency_exponent(currency)  # an unknown currency fails here, not in the reader
    _check_field(statement.account_id)
    summaries = ""
    total = 0
    for code, amount in ((_OPENING_LEDGER, statement.opening_balance_minor),
                         (_CLOSING_LEDGER, statement.closing_balance_minor)):
        if amount is not None:
            summaries += f",{code},{amount},,"
            total += amount
    out = [f"03,{statement.account_id},{currency}{summaries}/"]
    for line in lines:
        out.extend(_render_detail(line))
        total += abs(line.amount_minor)
    out.append(f"49,{total},{len(out) + 1}/")
    return out, total


def _render_detail(line: StatementLine) -> list[str]:
    code = _type_code(line)
    bank = _one_line(line.bank_reference) or ""
    customer = _one_line(line.customer_reference) or ""
    _check_field(bank)
    _check_field(customer)
    funds = f"V,{line.value_date:%y%m%d}," if line.value_date else ""  # value-dated funds
    head = f"16,{code},{abs(line.amount_minor)},{funds},{bank},{customer}"
    text = _one_line(line.remittance) or ""
    if not text:
        return [head + "/"]
    ending = "/" if text.endswith("/") else ""  # a final "/" is a delimiter: double it
    if len(head) + 1 + len(text) + len(ending) <= _RECORD_WIDTH:
        return [f"{head},{text}{ending}"]
    chunks = _wrap_text(text, _RECORD_WIDTH - 3)
    return [head + "/", *(f"88,{chunk}" for chunk in chunks[:-1]), f"88,{chunks[-1]}{ending}"]


def _type_code(line: StatementLine) -> str:
    """The line's own type code when it says what the amount's sign says, else a generic one."""
    code = line.transaction_code or ""
    direction = _DIRECTIONS.get(code)
    if line.status == "info":
        return code if direction == _INFO else "890"
    if line.amount_minor < 0:
        return code if direction == _DEBIT else "699"
    return code if direction == _CREDIT else "399"


def _wrap_text(text: str, width: int) -> list[str]:
    """Chunks that the reader joins back (with one space each) to exactly `text`."""
    chunks: list[str] = []
    rest = text
    while len(rest) > width:
        cut = next((at for at in range(width, 0, -1)
                    if rest[at] == " " and rest[at - 1] not in " /" and rest[at + 1:at + 2] != " "
                    and rest[at + 1:].strip()), None)
        if cut is None:
            break
        chunks.append(rest[:cut])
        rest = rest[cut + 1:]
    chunks.append(rest)
    return chunks if " ".join(chunks) == text else [text]


def _as_of(statement: Statement) -> dt.date:
    for day in (statement.to_date, statement.closing_date, statement.opening_date,
                statement.from_date):
        if day is not None:
            return day
    raise ValueError(f"statement {statement.index} has no date to report it as of")


def _one_line(text: str | None) -> str | None:
    if text is None:
        return None
    return " ".join(text.split()) if ("\n" in text or "\r" in text) else text.strip()


def _check_field(value: str) -> None:
    if "," in value or "\n" in value:
        raise ValueError(f"a BAI2 field may not contain a comma or a line break: {value!r}")
