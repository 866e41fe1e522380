"""SWIFT MT940 (customer statement) and MT942 (interim transaction report).

One module reads both: a file holds one or more messages, optionally wrapped in SWIFT blocks
(`{1:..}{2:O940..}{4:` ... `-}`), and every `:20:` starts a new `Statement`. The text is decoded
a few MiB at a time (a path is streamed) and one compiled regex matches each field with its
continuation lines; a well-formed `:61:` and its `:86:` match together, which is the hot path
(~100k lines/s on the 2-core dev box). The `mt-940` library is only the oracle in the tests: it
is several times slower and cannot read ASN's IBANs in the customer reference.

Fields read: `:20:` statement_id, `:25:`/`:25P:` account, `:28:`/`:28C:` sequence_number,
`:60F:`/`:60M:` opening, `:61:` lines with their `:86:`, `:62F:`/`:62M:` closing, and for MT942
`:34F:` (currency), `:13D:` (created_at) and `:90D:`/`:90C:` (entry counts and sums). `:21:`,
`:64:`, `:65:`, `:NS:` and an `:86:` that follows no `:61:` are skipped. A tag this module does
not know (`:26:` inside a wrapped `:86:`) is continuation text, as in the library.

Choices a reader should know about:
- Quarantine (`ParseError`): no MT940 tags at all; a statement without `:25:`; a statement whose
  lines have no currency (no `:60a:`/`:62a:`/`:34F:` before them); malformed balances or `:61:`
  lines; amounts with more decimals than the currency has; unknown or mixed currencies; a second
  `:25:`/`:60a:`/`:62a:` or a `:61:` after the closing balance (a garbled statement). Truncated
  snippets that lack `:20:` and `:25:` are therefore quarantined.
- An MT940 statement without its closing balance (`:62a:`, mandatory, the statement's end) is
  quarantined as `truncated` at its last field: a cut file must not load as if complete.
- Warnings: `balance_mismatch` (opening + lines != closing; many sample files are cut-down
  snippets that do not add up, they load flagged), `missing_balance` (an MT940 statement without
  its opening), `control_total_mismatch`/`control_count_mismatch` (MT942 `:90D:`/`:90C:`
  against the lines).
- Marks: `D` and `RC` (reversal of a credit) are debits, `C` and `RD` credits. The letter after
  the mark is the funds code (`CR300,` is a credit of 300 with funds code R).
- Dates: years 00-68 are 20xx, 69-99 19xx. A day 29-31 in February (banks' 30/360 interest
  closings write 30 Feb) becomes the last day of February, as the library does; any other
  impossible date is a `bad_date`. The entry date (MMDD) takes the year that puts it closest to
  the value date, so 1231 booked for a 0102 value date is the previous year; without an entry
  date the booking date is the value date (SWIFT: the entry date is given only when different).
- References: the customer reference runs to `//`, the bank reference after it. A reference
  longer than 16 characters is kept whole (ASN writes an IBAN there) unless it is a blank-padded
  16-character field followed by more text (Rabobank), which is then supplementary details.
  `NONREF` means no reference and becomes None; `KREF+` (German banks: "see :86:") takes the
  `KREF+` value of the structured `:86:`. Supplementary details (the `:61:` second line) become
  the remittance only when the line has no `:86:`.
- `:86:` lines are joined into one remittance: German structured text (`166?00...?20...`) without
  separators (its 27-character subfields are wrapped anywhere); other text without a separator
  after a full 65-character line (a hard wrap) and with one space after a shorter one. The raw text
  is kept; the end-to-end id comes from `?20..?29 EREF+`, `/EREF/` or `EREF+`, the counterparty
  from `?32`+`?33` and `?31` (or `/NAME/` and `/IBAN/`).
- `:25:` is kept as written, except `BIC/IBAN` which gives account_id IBAN and servicer_bic BIC.
- Text is UTF-8 where a line decodes as UTF-8, else cp1252; NUL and other control bytes are
  dropped (`with_binary_character` and Hungarian cp852 files parse; odd letters may look wrong).
- MT942 lines are status "booked" (they are booked intraday); the statement's balance_check is
  "not_applicable" unless it carries both balances. Its `:90D:`/`:90C:` give control_count (both
  counts) and control_total_minor (credits - debits).

`render` writes what `parse` reads back to the same figures and references: one
`:20:`..`:62F:` block per statement (MT942 ones with `:34F:`/`:13D:`/`:90D:`/`:90C:`, the sums
computed from the lines), `:61:` with customer and bank reference (`NONREF` when there is none),
and `:86:` carrying the end-to-end id as `/EREF/<id>/REMI/<text>` (unless the remittance already
carries it), wrapped at 65 characters wherever the wrap reads back exactly. It writes only the
balances the statement has and refuses (ValueError) an MT940 statement with neither, references
containing `//`, and lines without a date. Counterparty fields are not written.
"""

from __future__ import annotations

import calendar
import datetime as dt
import gc
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from ingest.files.amounts import AmountError, currency_exponent, scale_decimal, to_minor
from ingest.files.records import (
    ParsedFile,
    ParseError,
    Statement,
    StatementLine,
    Warning_,
    open_source,
)

FORMAT = "mt940"
_V = TypeVar("_V")

_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 13)) + b"\x7f"
_WRAP_WIDTH = 65  # SWIFT line length: a line this long was wrapped, not ended
_BLOCK_BYTES = 1 << 22

_SNIFF_RE = re.compile(rb"(?m)^:(?:20|25|28C|60[FM]|61|62[FM]):")
_BLOCK2_RE = re.compile(r"\{2:[IO](9\d\d)")
_TAGS = r"61|86|20|25P?|28C?|60[FM]|62[FM]|21|64|65|34F|13D|90[DC]|NS"  # most frequent first
# A field runs on over every line that starts neither another field nor an end-of-message
# marker ("-", "-}") nor a block header; an unknown tag (":26:" in a wrapped :86:) runs on too.
_MORE = rf"(?:\n(?!:(?:{_TAGS}):|-[ \t]*(?:\}}|$)|\{{).*)*+"  # possessive: no backtracking
_LINE_PATTERN = (
    r"(\d{6})"  # value date YYMMDD
    r"(\d{4}| {4})?"  # entry date MMDD
    r"(R?[DC])"  # debit/credit mark
    r"([A-Z])?"  # funds code
    r"(\d[\d,]*)"  # amount, decimal comma
    r"([A-Z][A-Z0-9]{3})?"  # transaction type, e.g. NTRF (SWIFT: N/S/F; some banks differ)
    r"(.*)"  # customer reference [//bank reference]
)
# One match per field. A well-formed :61: and the :86: after it match as one (the hot path,
# groups 1-9); any other field, a malformed :61: included, as tag and content (groups 10-11).
_FIELD_RE = re.compile(
    rf"^:(?:61:{_LINE_PATTERN}({_MORE})(?:\n:86:(.*{_MORE}))?|({_TAGS}):(.*{_MORE}))", re.M)
_FIELD_START_RE = re.compile(rf":(?:{_TAGS}):")
_LINE_RE = re.compile(_LINE_PATTERN)
_BALANCE_RE = re.compile(r"([DC])(\d{6})([A-Z]{3})(\d[\d,]*)")
_FLOOR_RE = re.compile(r"([A-Z]{3})[DC]?(\d[\d,]*)")
_SUMS_RE = re.compile(r"(\d+)([A-Z]{3})(\d[\d,]*)")
_DATETIME_RE = re.compile(r"(\d{6})(\d{2})(\d{2})(?:([+-])(\d{2})(\d{2}))?")

_SUBFIELD_RE = re.compile(r"\?(\d\d)")
_GVC_KEYS = "EREF|KREF|MREF|CRED|DEBT|COAM|OAMT|SVWZ|ABWA|ABWE|IBAN|BIC |PURP|SQTP|MDAT|ORCR|ORMR|DDAT"
_GVC_EREF_RE = re.compile(rf"EREF\+(.*?)(?=(?:{_GVC_KEYS})\+|$)", re.S)
_GVC_KREF_RE = re.compile(rf"KREF\+(.*?)(?=(?:{_GVC_KEYS})\+|$)", re.S)
_SLASH_NEXT_RE = re.compile(r"/[A-Z]{2,}/")
_BIC_RE = re.compile(r"[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?")
_IBAN_RE = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}")
_NO_REFERENCE = "NONREF"
_CODE_RE = re.compile(r"[A-Z][A-Z0-9]{3}")


# --- sniff and parse ----------------------------------------------------------------------------

def sniff(head: bytes, name: str) -> bool:
    return _SNIFF_RE.search(head) is not None


def parse(source: bytes | Path, name: str | None = None) -> ParsedFile:
    # Parsing allocates millions of objects and no reference cycles: the cyclic collector would
    # only rescan them over and over (a third of the time on a million lines).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with open_source(source) as stream:
            return _Builder().run(stream)
    finally:
        if gc_was_enabled:
            gc.enable()


def _text_blocks(stream: IO[bytes]) -> Iterator[str]:
    """The file's text a few MiB at a time, each block ending at a line end."""
    carry = b""
    first = True
    while True:
        chunk = stream.read(_BLOCK_BYTES)
        if not chunk:
            break
        chunk = carry + chunk
        cut = chunk.rfind(b"\n") + 1
        carry = chunk[cut:]
        if cut:
            yield _decode(chunk[:cut], first)
            first = False
    if carry:
        yield _decode(carry, first)


def _decode(chunk: bytes, first: bool) -> str:
    if first and chunk.startswith(b"\xef\xbb\xbf"):
        chunk = chunk[3:]
    chunk = chunk.translate(None, _CONTROL_BYTES).replace(b"\r\n", b"\n")
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError:  # decide per line: one stray byte must not recode the block
        return "\n".join(_decode_line(raw) for raw in chunk.split(b"\n"))


def _decode_line(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def _blocks(stream: IO[bytes]) -> Iterator[tuple[str, int]]:
    """(text, lines before it): a few MiB of whole fields at a time."""
    carry = ""
    base = 0
    for text in _text_blocks(stream):
        text = carry + text
        cut = _last_field_start(text)
        if cut <= 0:  # no field boundary yet: keep reading
            carry = text
            continue
        yield text[:cut], base
        base += text.count("\n", 0, cut)
        carry = text[cut:]
    if carry:
        yield carry, base


def _last_field_start(text: str) -> int:
    at = text.rfind("\n:")
    while at >= 0 and not _FIELD_START_RE.match(text, at + 1):
        at = text.rfind("\n:", 0, at)
    return at + 1


def _content_lines(content: str) -> list[str]:
    """A field's non-blank lines, right-trimmed."""
    if "\n" not in content:
        line = content.rstrip()
        return [line] if line else []
    if " \n" not in content and "\n\n" not in content and not content[-1].isspace():
        return content.split("\n")  # nothing to trim (the common wrapped :86:)
    return [line for line in (raw.rstrip() for raw in content.split("\n")) if line]


class _Builder:
    """Turns the text into statements, lines and warnings, one field match at a time."""

    def __init__(self) -> None:
        self.parsed = ParsedFile(format=FORMAT, kind="bank_statement")
        self.statement: Statement | None = None
        self.statement_line_no = 0
        self.statement_block_type: str | None = None
        self.lines: list[StatementLine] = []  # the current statement's
        self.last_line: StatementLine | None = None
        self.detail_lines: list[str] = []  # the :86: lines of last_line
        self.state = _StatementState()
        self.block_type: str | None = None  # from the last {2:O940..} header
        self.saw_tags = False
        # Line numbers are counted only when needed (errors, statement starts).
        self.text = ""
        self.line_base = 0
        self.counted_pos = 0
        self.counted_lines = 0
        self.field_pos = 0  # where the field being handled starts
        self.exponent = 0  # of the current statement's currency
        self.handlers = {
            "20": self._reference, "25": self._account, "25P": self._account,
            "28": self._sequence, "28C": self._sequence, "60F": self._opening,
            "60M": self._opening, "62F": self._closing, "62M": self._closing,
            "34F": self._floor_limit, "13D": self._created_at, "90D": self._debit_sums,
            "90C": self._credit_sums, "61": self._malformed_line,
        }

    def run(self, stream: IO[bytes]) -> ParsedFile:
        for text, base in _blocks(stream):
            self.text, self.line_base, self.counted_pos, self.counted_lines = text, base, 0, 0
            expected = 0
            for match in _FIELD_RE.finditer(text):
                start, end = match.span()
                if start != expected:  # skipped lines: block headers, junk between messages
                    self._skipped(expected, start)
                expected = end + 1
                groups = match.groups()
                if groups[0] is not None:
                    self._add_line(start, groups)
                else:
                    self.feed(groups[9], start, groups[10])
        return self.finish()

    def line_at(self, pos: int) -> int:
        """The 1-based line number of a position in the current text (positions only grow)."""
        self.counted_lines += self.text.count("\n", self.counted_pos, pos)
        self.counted_pos = pos
        return self.line_base + self.counted_lines + 1

    def _skipped(self, start: int, end: int) -> None:
        text = self.text[start:end]
        if text[:1] == "-" or "\n-" in text:  # end of message: no :86: belongs to last_line
            self.last_line = None
        if "{" not in text:
            return
        for block_type in _BLOCK2_RE.findall(text):
            self.block_type = block_type
        block4 = text.find("{4::")
        if block4 >= 0:  # "{4::20:..." - a field on the block's first line
            offset = start + block4 + 3
            for match in _FIELD_RE.finditer(text[block4 + 3:]):
                groups = match.groups()
                if groups[0] is not None:
                    self._add_line(offset + match.start(), groups)
                else:
                    self.feed(groups[9], offset + match.start(), groups[10])

    def feed(self, tag: str, pos: int, content: str) -> None:
        if tag == "86":
            self.details(content)
            return
        handler = self.handlers.get(tag)
        if handler is None:  # :21:, :64:, :65:, :NS: carry nothing we keep
            if tag != "NS":
                self.last_line = None
            return
        self.saw_tags = True
        self.field_pos = pos
        line_no = self.line_at(pos)
        if tag != "20" and self.statement is None:
            self._start(None, line_no)
        handler(line_no, _content_lines(content) or [""])  # an empty field is still a field

    def finish(self) -> ParsedFile:
        if not self.saw_tags:
            raise ParseError("not_mt940", "no MT940/MT942 fields (:20:, :25:, :61:, ...) found",
                             "line 1")
        self._close()
        return self.parsed

    # statement boundaries ------------------------------------------------------------------

    def _start(self, reference: str | None, line_no: int) -> None:
        self._close()
        self.statement = Statement(
            index=len(self.parsed.statements), message_type="mt940", account_id="",
            statement_id=reference, sequence_number=None, currency=None)
        self.statement_line_no = line_no
        self.statement_block_type = self.block_type
        self.lines = []
        self.last_line = None
        self.state = _StatementState()

    def _close(self) -> None:
        statement = self.statement
        if statement is None:
            return
        where = f"line {self.statement_line_no}"
        if not statement.account_id:
            raise ParseError("missing_field", "the statement has no :25: account", where)
        if statement.currency is None:
            raise ParseError("missing_field",
                             "the statement has no :60a:/:62a:/:34F: giving its currency", where)
        block_type = self.statement_block_type
        if block_type == "942" or (block_type is None and self.state.interim_fields):
            statement.message_type = "mt942"
        self._check(statement)
        self.parsed.statements.append(statement)
        self.parsed.statement_lines.extend(self.lines)
        self.statement = None

    def _check(self, statement: Statement) -> None:
        warnings = self.parsed.warnings
        index = statement.index
        opening, closing = statement.opening_balance_minor, statement.closing_balance_minor
        total = sum(line.amount_minor for line in self.lines)
        if opening is not None and closing is not None:
            if opening + total == closing:
                statement.balance_check = "ok"
            else:
                statement.balance_check = "mismatch"
                warnings.append(Warning_(
                    "balance_mismatch",
                    f"opening {opening} + lines {total} = {opening + total}, but the closing "
                    f"balance is {closing} ({statement.currency} minor units)", index))
        elif statement.message_type == "mt940" and closing is None:
            # :62a: is mandatory and ends the statement: without it the file was cut short (or
            # is a fragment), and what it lists cannot be shown complete.
            last_field = self.line_at(max(self.field_pos, self.counted_pos))
            raise ParseError("truncated", "the statement ends without its closing balance "
                             "(:62a:): the file was cut short", f"line {last_field}")
        elif statement.message_type == "mt940":
            warnings.append(Warning_("missing_balance", "the statement has no opening (:60a:) "
                                     "balance", index))
        self.state.set_control(statement)
        warnings.extend(self.state.control_warnings(self.lines, index))

    # fields ----------------------------------------------------------------------------------

    def _reference(self, line_no: int, lines: list[str]) -> None:
        self._start(lines[0].strip() or None, line_no)

    def _account(self, line_no: int, lines: list[str]) -> None:
        statement = self._statement()
        if statement.account_id or self.lines or statement.opening_balance_minor is not None:
            raise ParseError("unexpected_field", "a second :25: account, or one after the "
                             "statement's balance or lines", f"line {line_no}")
        account, bic = _split_account(lines)
        if not account:
            raise ParseError("missing_field", "the :25: account is empty", f"line {line_no}")
        statement.account_id = account
        statement.servicer_bic = bic

    def _sequence(self, line_no: int, lines: list[str]) -> None:
        self._statement().sequence_number = lines[0].strip() or None

    def _opening(self, line_no: int, lines: list[str]) -> None:
        statement = self._statement()
        if statement.opening_balance_minor is not None or self.lines:
            raise ParseError("unexpected_field", "a second opening balance or one after the lines",
                             f"line {line_no}")
        amount, day = self._balance(lines[0], line_no)
        statement.opening_balance_minor, statement.opening_date = amount, day
        statement.opening_currency = statement.currency  # _balance holds it to the statement's

    def _closing(self, line_no: int, lines: list[str]) -> None:
        statement = self._statement()
        if statement.closing_balance_minor is not None:
            raise ParseError("unexpected_field", "a second closing balance", f"line {line_no}")
        amount, day = self._balance(lines[0], line_no)
        statement.closing_balance_minor, statement.closing_date = amount, day
        statement.closing_currency = statement.currency
        self.last_line = None

    def _balance(self, text: str, line_no: int) -> tuple[int, dt.date]:
        match = _BALANCE_RE.fullmatch(text.strip())
        if match is None:
            raise ParseError("bad_balance", f"{text!r} is not a balance (D/C, YYMMDD, currency, "
                             "amount)", f"line {line_no}")
        mark, day, currency, amount = match.groups()
        self._set_currency(currency, line_no)
        minor = _amount(amount, currency, line_no)
        return (-minor if mark == "D" else minor), _date(day, line_no)

    def _floor_limit(self, line_no: int, lines: list[str]) -> None:
        self.state.interim_fields = True
        match = _FLOOR_RE.fullmatch(lines[0].strip())
        if match is None:
            raise ParseError("bad_field", f"{lines[0]!r} is not a :34F: floor limit",
                             f"line {line_no}")
        self._set_currency(match.group(1), line_no)
        _amount(match.group(2), match.group(1), line_no)

    def _created_at(self, line_no: int, lines: list[str]) -> None:
        self.state.interim_fields = True
        statement = self._statement()
        statement.created_at = _datetime(lines[0].strip(), line_no)
        statement.to_date = statement.created_at.date()

    def _debit_sums(self, line_no: int, lines: list[str]) -> None:
        self.state.debits = self._sums(lines[0], line_no)
        self.last_line = None

    def _credit_sums(self, line_no: int, lines: list[str]) -> None:
        self.state.credits = self._sums(lines[0], line_no)
        self.last_line = None

    def _sums(self, text: str, line_no: int) -> tuple[int, int]:
        match = _SUMS_RE.fullmatch(text.strip())
        if match is None:
            raise ParseError("bad_field", f"{text!r} is not a :90a: count and sum",
                             f"line {line_no}")
        count, currency, amount = match.groups()
        self._set_currency(currency, line_no)
        return int(count), _amount(amount, currency, line_no)

    def _add_line(self, pos: int, groups: tuple[str | None, ...]) -> None:
        """A :61: statement line and the :86: after it (the fast path: groups of _FIELD_RE)."""
        (value_text, entry_text, mark, _funds, amount_text, code, references, more, details, _tag,
         _content) = groups
        # the :61: alternative of _FIELD_RE matched, so these groups are never None
        assert value_text is not None and amount_text is not None and references is not None
        self.field_pos = pos
        statement = self.statement
        if statement is None or statement.currency is None:
            raise ParseError("missing_field", "a :61: line before any balance giving the currency",
                             f"line {self.line_at(pos)}")
        if statement.closing_balance_minor is not None:
            raise ParseError("unexpected_field", "a :61: line after the closing balance",
                             f"line {self.line_at(pos)}")
        currency = statement.currency
        try:  # to_minor's own conversion, with the statement's exponent looked up once
            amount = scale_decimal(amount_text, self.exponent, sep=",", what=currency)
        except AmountError as err:
            raise ParseError(err.reason, f"{err} in {currency}", f"line {self.line_at(pos)}") \
                from None
        if mark == "D" or mark == "RC":
            amount = -amount
        value_date = _DATES.get(value_text) or _date(value_text, self.line_at(pos))
        booking_date = value_date
        if entry_text is not None and entry_text != "    ":
            booking_date = (_ENTRY_DATES.get((value_text, entry_text))
                            or _entry_date(value_text, entry_text, self.line_at(pos)))
        customer, bank, supplementary = _references(references)
        if more and not more.isspace():
            supplementary = " ".join([supplementary or "", *_content_lines(more)]).strip()
        if code is not None:
            code = _CODES.get(code) or _remember(_CODES, code, code)
        line = StatementLine(statement.index, len(self.lines), booking_date, value_date, amount,
                             currency, "booked", bank, customer, None, supplementary or None,
                             None, None, code)
        self.lines.append(line)
        self.last_line = line
        self.detail_lines = []
        if details is not None:
            if "\n" in details:
                self.detail_lines = _content_lines(details)
                _apply_details(line, _join_details(self.detail_lines).strip())
            else:
                details = details.rstrip()
                self.detail_lines = [details] if details else []
                _apply_details(line, details.lstrip())

    def _malformed_line(self, line_no: int, lines: list[str]) -> None:
        """A :61: the fast pattern rejected: some banks (Sparkassen) break before the amount."""
        match = _LINE_RE.fullmatch(lines[0] + lines[1]) if len(lines) > 1 else None
        if match is None:
            raise ParseError("bad_statement_line", f"{lines[0]!r} is not a :61: statement line "
                             "(YYMMDD[MMDD]D/C amount type reference)", f"line {line_no}")
        value, entry, mark, _funds, amount, code, references = match.groups()
        more = "".join(f"\n{line}" for line in lines[2:])
        self._add_line(self.field_pos, (value, entry, mark, _funds, amount, code, references,
                                        more, None, None, None))

    def details(self, content: str) -> None:
        line = self.last_line
        if line is None:  # information for the account owner, not about a line
            return
        # Several :86: fields may describe one line (Rabobank): they read as one text, which
        # replaces the :61: supplementary details.
        lines = _content_lines(content)
        self.detail_lines = self.detail_lines + lines if self.detail_lines else lines
        _apply_details(line, _join_details(self.detail_lines).strip())

    # helpers ---------------------------------------------------------------------------------

    def _statement(self) -> Statement:
        assert self.statement is not None
        return self.statement

    def _set_currency(self, currency: str, line_no: int) -> None:
        try:
            currency_exponent(currency)
        except AmountError as err:
            raise ParseError(err.reason, str(err), f"line {line_no}") from None
        statement = self._statement()
        if statement.currency is None:
            statement.currency = currency
            self.exponent = currency_exponent(currency)
        elif statement.currency != currency:
            raise ParseError("currency_mismatch", f"{currency} in a {statement.currency} statement",
                             f"line {line_no}")


class _StatementState:
    """Per-statement facts that do not belong on `Statement`."""

    __slots__ = ("credits", "debits", "interim_fields")

    def __init__(self) -> None:
        self.interim_fields = False  # :34F:/:13D: seen: an MT942 without block headers
        self.debits: tuple[int, int] | None = None  # :90D: count, sum
        self.credits: tuple[int, int] | None = None  # :90C:

    def set_control(self, statement: Statement) -> None:
        """MT942 :90D:/:90C: as the statement's own control figures (net total, entry count)."""
        if self.debits is None and self.credits is None:
            return
        debits = self.debits or (0, 0)
        credits = self.credits or (0, 0)
        statement.control_count = debits[0] + credits[0]
        statement.control_total_minor = credits[1] - debits[1]

    def control_warnings(self, lines: list[StatementLine], index: int) -> list[Warning_]:
        found = []
        for name, stated, debit in (("debit", self.debits, True), ("credit", self.credits, False)):
            if stated is None:
                continue
            amounts = [abs(line.amount_minor) for line in lines
                       if (line.amount_minor < 0) is debit]  # a zero amount is a credit
            if len(amounts) != stated[0]:
                found.append(Warning_("control_count_mismatch", f"the statement states "
                                      f"{stated[0]} {name} entries, the lines have {len(amounts)}",
                                      index))
            if sum(amounts) != stated[1]:
                found.append(Warning_("control_total_mismatch", f"the statement states {name}s "
                                      f"of {stated[1]}, the lines add up to {sum(amounts)}",
                                      index))
        return found


# --- one :61: line ------------------------------------------------------------------------------

_CODES: dict[str, str] = {}  # shares one string per transaction type code across lines


def _references(text: str) -> tuple[str | None, str | None, str | None]:
    """(customer reference, bank reference, supplementary details) from the :61: tail."""
    customer, slashes, bank = text.partition("//")
    supplementary = None
    if not slashes and len(customer) > 16 and customer[15] == " ":
        customer, supplementary = customer[:16], customer[16:].strip()  # padded 16x field
    customer, bank = customer.strip(), bank.strip()
    return (None if not customer or customer == _NO_REFERENCE else customer,
            None if not bank or bank == _NO_REFERENCE else bank, supplementary)


# --- :86: details -------------------------------------------------------------------------------

def _is_german(text: str) -> bool:
    """German structured :86: starts with a 3-digit business code and "?" (`166?00...`)."""
    return text[3:4] == "?" and text[:3].isdigit()


def _join_details(lines: list[str]) -> str:
    if len(lines) <= 1:
        return lines[0] if lines else ""
    if _is_german(lines[0]):
        return "".join(lines)
    if len(lines) == 2:
        return lines[0] + ("" if len(lines[0]) + 4 >= _WRAP_WIDTH else " ") + lines[1]
    parts = [lines[0]]
    physical = len(lines[0]) + 4  # the first line carries ":86:"
    for line in lines[1:]:
        if physical < _WRAP_WIDTH:
            parts.append(" ")
        parts.append(line)
        physical = len(line)
    return "".join(parts)


def _apply_details(line: StatementLine, text: str) -> None:
    """Set remittance, end-to-end id and counterparty from the :86: text."""
    line.remittance = text or None
    if "/EREF/" in text or "/NAME/" in text or "/IBAN/" in text:
        line.end_to_end_id = _slash_field(text, "/EREF/")
        if "/NAME/" in text:
            line.counterparty_name = _slash_field(text, "/NAME/")
        if "/IBAN/" in text:
            line.counterparty_account = _slash_field(text, "/IBAN/")
    elif _is_german(text):
        subfields = _german_subfields(text)
        purpose = "".join(subfields.get(f"2{i}", "") for i in range(10))
        line.end_to_end_id = _first_group(_GVC_EREF_RE, purpose)
        if line.customer_reference in (None, "KREF+"):  # "KREF+": the reference is in :86:
            line.customer_reference = _first_group(_GVC_KREF_RE, purpose) or line.customer_reference
        name = subfields.get("32", "") + subfields.get("33", "")
        line.counterparty_name = name.strip() or None
        line.counterparty_account = subfields.get("31", "").strip() or None
    elif "EREF+" in text:
        line.end_to_end_id = _first_group(_GVC_EREF_RE, text)


def _end_to_end_id(text: str) -> str | None:
    """The end-to-end id `_apply_details` finds in a :86: text."""
    if "/EREF/" in text or "/NAME/" in text or "/IBAN/" in text:
        return _slash_field(text, "/EREF/")
    if _is_german(text):
        purpose = "".join(_german_subfields(text).get(f"2{i}", "") for i in range(10))
        return _first_group(_GVC_EREF_RE, purpose)
    if "EREF+" in text:
        return _first_group(_GVC_EREF_RE, text)
    return None


def _german_subfields(text: str) -> dict[str, str]:
    """German structured :86: (`GVC?00posting text?10..?20purpose..?32name`) by subfield."""
    parts = _SUBFIELD_RE.split(text[3:])
    subfields: dict[str, str] = {}
    for key, value in zip(parts[1::2], parts[2::2], strict=True):
        subfields[key] = subfields.get(key, "") + value
    return subfields


def _slash_field(text: str, code: str) -> str | None:
    """The value after a SWIFT-structured `/CODE/`, up to the next `/CODE/` (Dutch banks)."""
    start = text.find(code)
    if start < 0:
        return None
    start += len(code)
    following = _SLASH_NEXT_RE.search(text, start)
    value = text[start:following.start() if following else len(text)].strip()
    return value if value and value != _NO_REFERENCE else None


def _first_group(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text)
    if match is None:
        return None
    value = match.group(1).strip()
    return value if value and value != _NO_REFERENCE else None


def _split_account(lines: list[str]) -> tuple[str, str | None]:
    """(account_id, servicer BIC) from :25: (`account`, `BIC/IBAN`) or :25P: (account, BIC)."""
    account = lines[0].strip()
    if len(lines) > 1 and _BIC_RE.fullmatch(lines[1].strip()):
        return account, lines[1].strip()
    bic, slash, rest = account.partition("/")
    if slash and _BIC_RE.fullmatch(bic) and _is_iban(rest):
        return rest, bic
    return account, None


def _is_iban(text: str) -> bool:
    if not _IBAN_RE.fullmatch(text):
        return False
    digits = "".join(str(int(ch, 36)) for ch in text[4:] + text[:4])
    return int(digits) % 97 == 1


# --- amounts and dates --------------------------------------------------------------------------

def _amount(text: str, currency: str, line_no: int) -> int:
    try:
        return to_minor(text, currency, sep=",")
    except AmountError as err:
        raise ParseError(err.reason, f"{err} in {currency}", f"line {line_no}") from None


_DATES: dict[str, dt.date] = {}
_ENTRY_DATES: dict[tuple[str, str], dt.date] = {}
_CACHE_LIMIT = 50_000  # real files repeat a few hundred values; a hostile one must not grow these


def _remember(cache: dict[Any, _V], key: Any, value: _V) -> _V:
    if len(cache) < _CACHE_LIMIT:
        cache[key] = value
    return value


def _date(text: str, line_no: int) -> dt.date:
    day = _DATES.get(text)
    if day is None:
        yy, mm, dd = int(text[:2]), int(text[2:4]), int(text[4:6])
        day = _remember(_DATES, text, _calendar_date(yy + (2000 if yy < 69 else 1900), mm, dd,
                                                     text, line_no))
    return day


def _entry_date(value_text: str, entry_text: str, line_no: int) -> dt.date:
    key = (value_text, entry_text)
    day = _ENTRY_DATES.get(key)
    if day is None:
        value_date = _date(value_text, line_no)
        mm, dd = int(entry_text[:2]), int(entry_text[2:])
        candidates = [_calendar_date(value_date.year + shift, mm, dd, entry_text, line_no)
                      for shift in (-1, 0, 1)]
        day = _remember(_ENTRY_DATES, key, min(candidates,
                                               key=lambda d: abs((d - value_date).days)))
    return day


def _calendar_date(year: int, month: int, day: int, text: str, line_no: int) -> dt.date:
    if month == 2 and 29 <= day <= 31:
        day = min(day, calendar.monthrange(year, 2)[1])
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise ParseError("bad_date", f"{text!r} is not a date", f"line {line_no}") from None


def _datetime(text: str, line_no: int) -> dt.datetime:
    """:13D: YYMMDDhhmm+hhmm -> naive UTC."""
    match = _DATETIME_RE.fullmatch(text)
    if match is None:
        raise ParseError("bad_date", f"{text!r} is not a :13D: date and time", f"line {line_no}")
    day_text, hour, minute, sign, offset_h, offset_m = match.groups()
    try:
        moment = dt.datetime.combine(_date(day_text, line_no), dt.time(int(hour), int(minute)))
    except ValueError:
        raise ParseError("bad_date", f"{text!r} is not a time", f"line {line_no}") from None
    if sign:
        offset = dt.timedelta(hours=int(offset_h), minutes=int(offset_m))
        moment -= offset if sign == "+" else -offset
    return moment


# --- render -------------------------------------------------------------------------------------

def render(parsed: ParsedFile) -> bytes:
    """MT940/MT942 text for `parsed`'s statements (CRLF, UTF-8), one message per statement."""
    by_statement: dict[int, list[StatementLine]] = {}
    for line in parsed.statement_lines:
        by_statement.setdefault(line.statement_index, []).append(line)
    out: list[str] = []
    for statement in parsed.statements:
        out.extend(_render_statement(statement, by_statement.get(statement.index, [])))
    out.append("")
    return "\r\n".join(out).encode("utf-8")


def _render_statement(statement: Statement, lines: list[StatementLine]) -> list[str]:
    currency = statement.currency or (lines[0].currency if lines else None)
    if currency is None:
        raise ValueError(f"statement {statement.index} has no currency")
    exp = currency_exponent(currency)
    out = [f":20:{statement.statement_id or f'STMT{statement.index + 1}'}",
           f":25:{_render_account(statement)}"]
    if statement.sequence_number:
        out.append(f":28C:{statement.sequence_number}")
    interim = statement.message_type == "mt942"
    if interim:
        out.append(f":34F:{currency}{_render_amount(0, exp)}")
        if statement.created_at is not None:
            out.append(f":13D:{statement.created_at:%y%m%d%H%M}+0000")
    balances = (statement.opening_balance_minor, statement.closing_balance_minor)
    if not interim and balances == (None, None):
        raise ValueError(f"statement {statement.index}: an MT940 needs an opening or a closing "
                         "balance")
    if statement.opening_balance_minor is not None:
        day = _balance_date(statement.opening_date, statement, lines)
        out.append(":60F:" + _render_balance(statement.opening_balance_minor, day, currency, exp))
    for line in lines:
        out.append(":61:" + _render_line(line, exp))
        out.extend(_render_details(line))
    if statement.closing_balance_minor is not None:
        day = _balance_date(statement.closing_date, statement, lines)
        out.append(":62F:" + _render_balance(statement.closing_balance_minor, day, currency, exp))
    if interim:
        debits = [-x.amount_minor for x in lines if x.amount_minor < 0]
        credits = [x.amount_minor for x in lines if x.amount_minor >= 0]
        out.append(f":90D:{len(debits)}{currency}{_render_amount(sum(debits), exp)}")
        out.append(f":90C:{len(credits)}{currency}{_render_amount(sum(credits), exp)}")
    out.append("-")
    return out


def _render_account(statement: Statement) -> str:
    if statement.servicer_bic and _is_iban(statement.account_id):
        return f"{statement.servicer_bic}/{statement.account_id}"
    return statement.account_id


def _balance_date(day: dt.date | None, statement: Statement,
                  lines: list[StatementLine]) -> dt.date:
    for candidate in (day, statement.to_date, statement.closing_date, statement.opening_date,
                      lines[-1].value_date if lines else None):
        if candidate is not None:
            return candidate
    raise ValueError(f"statement {statement.index} has no date for its balances")


def _render_balance(amount: int, day: dt.date, currency: str, exp: int) -> str:
    mark = "D" if amount < 0 else "C"
    return f"{mark}{_date_text(day)}{currency}{_render_amount(abs(amount), exp)}"


def _render_amount(minor: int, exp: int) -> str:
    digits = str(minor).rjust(exp + 1, "0")
    return f"{digits[:len(digits) - exp]},{digits[len(digits) - exp:]}" if exp else f"{digits},"


def _render_line(line: StatementLine, exp: int) -> str:
    value_date = line.value_date or line.booking_date
    if value_date is None:
        raise ValueError(f"line {line.line_number} of statement {line.statement_index} has no date")
    entry = ""
    if line.booking_date is not None and line.booking_date != value_date:
        entry = _date_text(line.booking_date)[2:]
    mark = "D" if line.amount_minor < 0 else "C"
    code = line.transaction_code or ""
    if not _CODE_RE.fullmatch(code):
        code = "NMSC"
    customer = _one_line(line.customer_reference) or _NO_REFERENCE
    bank = _one_line(line.bank_reference)
    if "//" in customer or (bank and "//" in bank):
        raise ValueError(f"references may not contain '//': {customer!r}, {bank!r}")
    reference = customer
    if bank or (len(customer) > 16 and customer[15] == " "):
        reference += f"//{bank or ''}"
    return (f"{_date_text(value_date)}{entry}{mark}{_render_amount(abs(line.amount_minor), exp)}"
            f"{code}{reference}")


_DATE_TEXTS: dict[dt.date, str] = {}


def _date_text(day: dt.date) -> str:
    """YYMMDD (strftime is slow and statements repeat their few dates)."""
    text = _DATE_TEXTS.get(day)
    if text is None:
        text = _DATE_TEXTS[day] = day.strftime("%y%m%d")
    return text


def _render_details(line: StatementLine) -> list[str]:
    text = _one_line(line.remittance)
    e2e = _one_line(line.end_to_end_id)
    if e2e and (not text or _end_to_end_id(text) != e2e):
        text = f"/EREF/{e2e}" + (f"/REMI/{text}" if text else "")
    if not text:
        return []
    wrapped = _wrap_details(text)
    return [":86:" + wrapped[0], *wrapped[1:]]


def _one_line(text: str | None) -> str | None:
    if text is None:
        return None
    return " ".join(text.split()) if ("\n" in text or "\r" in text) else text.strip()


def _wrap_details(text: str) -> list[str]:
    """65-character lines that `_join_details` joins back to exactly `text` (else one line)."""
    width = _WRAP_WIDTH - 4  # the first line carries ":86:"
    if len(text) <= width:
        return [text]
    lines: list[str] = []
    rest = text
    german = _is_german(text)
    while len(rest) > width:
        cut = _cut(rest, width, german)
        if cut is None:
            break
        lines.append(rest[:cut[0]])
        rest = rest[cut[1]:]
        width = _WRAP_WIDTH
    lines.append(rest)
    return lines if _join_details(lines) == text else [text]


def _cut(text: str, width: int, german: bool) -> tuple[int, int] | None:
    """(end of this line, start of the next) or None when no safe cut exists."""
    for end in range(width, width // 2, -1):
        if text[end - 1] == " " or not _safe_continuation(text, end):
            continue
        if german or end == width:
            return end, end  # joined back without a separator
        if text[end] == " " and _safe_continuation(text, end + 1):
            return end, end + 1  # a short line: joined back with this one space
    return None


def _safe_continuation(text: str, start: int) -> bool:
    """A continuation line must not read as a tag, a block marker or a blank line."""
    return text[start:start + 1] not in (":", "-", "{", "") and \
        not text[start:start + _WRAP_WIDTH].isspace()
