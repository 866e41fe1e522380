"""WeChat Pay bills: merchant trade bills, fund-flow bills and the consumer export.

Variants, told apart by their header row:

- Trade bill (v3 `tradebill`, v2 `downloadbill`; ALL, SUCCESS or REFUND): `交易时间,...,微信订单号,...`,
  comma- or tab-separated, fields prefixed with a backtick, then a `总交易单数,...` summary header and
  one summary row.
- Fund-flow bill (v3 `fundflowbill`, v2 `downloadfundflow`; BASIC etc.): `记账时间,微信支付业务单号,...`
  with a `资金流水总笔数,...` summary.
- Consumer export (`微信支付账单明细`, what the WeChat app exports): intro lines stating the record
  count and income/expense totals, then `交易时间,交易类型,...` rows with `¥` amounts.

Decisions:

- Times in every WeChat bill are Beijing time (UTC+8, no DST since 1991); they become naive UTC by
  subtracting 8 hours. Excel-saved copies lose the seconds ("2016/5/4 2:18"): read as :00 and
  flagged `mangled_timestamp`.
- Amounts are yuan; CNY minor units exactly (`to_minor`). The trade bill's 手续费 has 5 decimals:
  WeChat rounds each row's fee to the fen and pads with zeros (the v3 sample: 1.00% of 0.01 shows
  0.00000), so digits past the fen must be zeros, else `amount_precision`.
- Trade bill rows: SUCCESS -> payment, gross = 应结订单金额 (what settles to the merchant);
  REFUND -> refund, gross = -退款金额; REVOKED -> other, gross = 应结订单金额 as written. fee = 手续费
  as written (WeChat shows the fee returned on a refund as negative). channel_reference = 微信订单号;
  merchant_reference = 商户订单号, or 商户退款单号 on refunds. status = 交易状态.
- Fund-flow rows (收支类型 收入 +, 支出 -; amounts are balance movements): 业务类型 with 退款 and
  支出 -> refund; with 手续费 -> fee_adjustment (gross 0, fee = the charge, net = the movement);
  with 提现 -> payout (gross = amount sent to the bank, positive); 交易 and 收入 -> payment;
  anything else -> other with the signed movement. channel_reference = 微信支付业务单号,
  merchant_reference = 业务凭证号, status = 业务类型, description = 备注.
- Consumer export rows, read from the account holder's side: 收入 -> payment (+); 支出 -> refund
  when 交易类型 says 退款, else other (-); neutral (/) rows: 零钱提现 -> payout (gross = amount,
  fee = the 服务费 in 备注, net = what reached the bank), else other with the amount as written
  (neutral moves between the holder's own balances carry no direction).
- Control figures (the trade and fund-flow trailers, the consumer export's stated counts and
  totals) are checked against the rows. A bill whose rows do not add up to its own figures is
  incomplete or altered, and loading it would report its missing rows as reconciliation breaks;
  so by default it is refused: ParseError("trailer_mismatch") (consumer export:
  "record_count_mismatch"; no trailer at all: "missing_trailer") with every stated and computed
  figure in the message. `parse(..., allow_incomplete=True)` is the operator's override after
  review: the same finding becomes a Warning_ and the rows load flagged.
- Excel-mangled ids ("4.00123E+27") are kept as text, never converted through float, and
  flagged `mangled_reference` (their digits are gone; match those rows by other fields).
  Refunds still PROCESSING are flagged `refund_not_final`.

`render` writes a v3 trade bill (the demo's WeChat channel) with a correct summary trailer.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.files.amounts import AmountError, currency_exponent, scale_decimal, to_minor
from ingest.files.records import (
    ParsedFile,
    ParseError,
    PspLine,
    PspSummary,
    Warning_,
    read_source,
    refuse_nul,
)

FORMAT = "wechat"
CHANNEL = "wechat_pay"
BEIJING_OFFSET = dt.timedelta(hours=8)
_BOM = "\ufeff"
NEWLINE = b"\n"

TRADE_COLUMNS_V3 = ("交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号",
                    "用户标识", "交易类型", "交易状态", "付款银行", "货币种类", "应结订单金额", "代金券金额",
                    "微信退款单号", "商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态",
                    "商品名称", "商户数据包", "手续费", "费率", "订单金额", "申请退款金额", "费率备注")
TRADE_SUMMARY = ("总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额", "手续费总金额",
                 "订单总金额", "申请退款总金额")
# Summary figure -> the row column it totals.
_TRADE_TOTALS = {"应结订单总金额": "应结订单金额", "退款总金额": "退款金额",
                 "充值券退款总金额": "充值券退款金额", "手续费总金额": "手续费", "订单总金额": "订单金额",
                 "申请退款总金额": "申请退款金额"}
CONSUMER_MARK = "微信支付账单明细"
CONSUMER_EMPTY = ("", "/")  # consumer exports write "/" for "none"
_EXCEL_NUMBER = re.compile(r"[0-9](\.[0-9]+)?[eE]\+[0-9]+")
_TIME = re.compile(r"([0-9]{4})[-/]([0-9]{1,2})[-/]([0-9]{1,2})[ T]([0-9]{1,2}):([0-9]{2})"
                   r"(?::([0-9]{2}))?")


# --- helpers shared with alipay.py ---------------------------------------------------------------

def decode_text(data: bytes, encodings: Iterable[str]) -> str:
    """The first encoding that decodes the whole file; a UTF-8 BOM is dropped."""
    first_error = None
    for encoding in encodings:
        try:
            return data.decode(encoding).removeprefix(_BOM)
        except UnicodeDecodeError as exc:
            first_error = first_error or exc
            continue
    where = None
    if first_error is not None:
        where = f"line {data.count(NEWLINE, 0, first_error.start) + 1}"
    raise ParseError("encoding", f"the file is not {' or '.join(encodings)} text", where)


def numbered_lines(text: str) -> list[tuple[int, str]]:
    """(1-based physical line, text without its line end)."""
    refuse_nul(text)
    return [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), start=1)]


def clean(cell: str) -> str:
    """WeChat pads cells with spaces/tabs and prefixes a backtick to stop Excel mangling them."""
    return cell.strip().removeprefix("`").strip()


def split_fields(line: str, delimiter: str, number: int) -> list[str]:
    try:
        row = next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error as exc:
        raise ParseError("csv_syntax", str(exc), f"line {number}") from None
    return [clean(cell) for cell in row]


def normalise_name(name: str) -> str:
    """Column names appear with full- and half-width parentheses: 收支金额（元） / 收支金额(元)."""
    return clean(name).replace("（", "(").replace("）", ")")


def beijing_to_utc(text: str, number: int) -> tuple[dt.datetime, bool]:
    """Naive UTC from a Beijing-time stamp; True when the seconds were lost (Excel)."""
    match = _TIME.fullmatch(text)
    if match is None:
        raise ParseError("bad_timestamp", f"{text!r} is not a date and time", f"line {number}")
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
    try:
        local = dt.datetime(year, month, day, hour, minute, second)
    except ValueError as exc:
        raise ParseError("bad_timestamp", f"{text!r}: {exc}", f"line {number}") from None
    return local - BEIJING_OFFSET, match[6] is None


def amount_minor(text: str, currency: str, what: str, number: int | None) -> int:
    try:
        return to_minor(text.removeprefix("¥").removeprefix("￥"), currency)
    except AmountError as exc:
        raise ParseError(exc.reason, f"{what}: {exc}",
                         None if number is None else f"line {number}") from None


def count_value(text: str, what: str, number: int) -> int:
    """A stated count; Excel-saved bills write "20.0"."""
    try:
        return scale_decimal(text, 0, what=what)
    except AmountError as exc:
        raise ParseError(exc.reason, f"{what}: {exc}", f"line {number}") from None


def format_minor(value: int, currency: str, decimals: int | None = None) -> str:
    """Minor units as decimal text in the major unit, exactly (no float), zero-padded to
    `decimals` places (default: the currency's exponent)."""
    exp = currency_exponent(currency)
    decimals = exp if decimals is None else max(decimals, exp)
    whole, frac = divmod(abs(value), 10**exp)
    digits = (f"{frac:0{exp}d}" if exp else "").ljust(decimals, "0")
    return ("-" if value < 0 else "") + str(whole) + (f".{digits}" if decimals else "")


@dataclass(frozen=True)
class Figure:
    """A control figure the file states about itself, and what its rows give."""

    label: str
    stated: int | None  # None: the file does not state it (left out of the checks)
    computed: int
    currency: str | None = None  # None: a count

    def show(self, value: int | None) -> str:
        if value is None:
            return "nothing"
        return str(value) if self.currency is None else format_minor(value, self.currency)


def check_figures(figures: list[Figure], *, code: str, what: str, location: str | None,
                  allow_incomplete: bool, warnings: list[Warning_]) -> None:
    """Quarantine (ParseError) a file whose rows disagree with its own figures, or warn."""
    wrong = [f"{f.label} states {f.show(f.stated)}, rows give {f.show(f.computed)}"
             for f in figures if f.stated != f.computed]
    if not wrong:
        return
    message = (f"{what}: the rows do not match ({'; '.join(wrong)}); the file is incomplete "
               "or altered")
    refuse_or_warn(code, message, location=location, allow_incomplete=allow_incomplete,
                   warnings=warnings)


def refuse_or_warn(code: str, message: str, *, location: str | None = None,
                   allow_incomplete: bool, warnings: list[Warning_]) -> None:
    """Incomplete files are refused, unless an operator accepted them: then a warning."""
    if not allow_incomplete:
        raise ParseError(code, message, location)
    warnings.append(Warning_(code, message))


class Row:
    """One data row, its cells read by column name; `empty` are the texts that mean "none"."""

    def __init__(self, number: int, cells: dict[str, str], empty: tuple[str, ...] = ("",)):
        self.number = number
        self.cells = cells
        self.empty = empty

    def get(self, column: str) -> str:
        return self.cells.get(column, "")

    def ref(self, column: str) -> str | None:
        value = self.get(column)
        return None if value in self.empty else value

    def amount(self, column: str, currency: str, *, required: bool = False) -> int:
        text = self.get(column)
        if not text:
            if required:
                raise ParseError("missing_field", f"{column} is empty", f"line {self.number}")
            return 0
        return amount_minor(text, currency, column, self.number)


# --- sniff ---------------------------------------------------------------------------------------

def sniff(head: bytes, name: str) -> bool:
    text = head.decode("utf-8", errors="ignore").removeprefix(_BOM)
    if CONSUMER_MARK in text:
        return True
    first = text.split("\n", 1)[0]
    return ((first.startswith("交易时间") and "微信订单号" in first)
            or (first.startswith("记账时间") and "微信支付业务单号" in first))


# --- parse ---------------------------------------------------------------------------------------

def parse(source: bytes | Path, name: str | None = None, *,
          allow_incomplete: bool = False) -> ParsedFile:
    text = decode_text(read_source(source), ("utf-8", "gb18030"))
    lines = numbered_lines(text)
    if any(CONSUMER_MARK in line for _n, line in lines[:3]):
        return _ConsumerExport(lines, allow_incomplete).parse()
    number, header_line = next(((n, line) for n, line in lines if line.strip()), (1, ""))
    delimiter = "\t" if "\t" in header_line else ","
    header = [normalise_name(c) for c in split_fields(header_line, delimiter, number)]
    if "微信订单号" in header and "交易状态" in header:
        bill: _Bill = _TradeBill(lines, number, header, delimiter, allow_incomplete)
    elif "记账时间" in header and "收支类型" in header:
        bill = _FundFlowBill(lines, number, header, delimiter, allow_incomplete)
    else:
        raise ParseError("unknown_layout", "the first row is not a WeChat Pay bill header",
                         f"line {number}")
    parsed = bill.parse()
    if isinstance(bill, _TradeBill):
        parsed.bill_key = bill.identity(parsed.psp_lines, name)
    return parsed


# A trade bill's type as the download names it (v3 `bill_type`, v2 `bill_type`).
_TRADE_VARIANT = re.compile(r"(?<![A-Z])(ALL|SUCCESS|REFUND|RECHARGE_REFUND)(?![A-Z])")
_EXPORT_ACCOUNT = re.compile(r"(?:微信昵称|支付宝账户)[：:]\s*\[?([^\],\n]+?)\]?\s*(?:,|$)", re.M)
_EXPORT_PERIOD = re.compile(r"起始时间[：:]\s*\[([^\]]+)\].*?终止时间[：:]\s*\[([^\]]+)\]")


def export_identity(kind: str, intro: str) -> str | None:
    """A consumer export is one account's period: `kind|account|start|end`, when it says so."""
    account, period = _EXPORT_ACCOUNT.search(intro), _EXPORT_PERIOD.search(intro)
    if account is None or period is None:
        return None
    return f"{kind}|{account[1].strip()}|{period[1]}|{period[2]}"


class _Bill:
    """A merchant bill: header row, data rows, a summary header row and one summary row."""

    summary_key: str
    required: tuple[str, ...]
    what: str

    def __init__(self, lines, header_number, header, delimiter, allow_incomplete):
        self.lines = lines
        self.header_number = header_number
        self.header = list(header)
        self.delimiter = delimiter
        self.allow_incomplete = allow_incomplete
        self.warnings: list[Warning_] = []
        self.mangled_times: list[int] = []
        self.pending_refunds = 0
        missing = [c for c in self.required if c not in header]
        if missing:
            raise ParseError("missing_column", f"the header lacks {', '.join(missing)}",
                             f"line {header_number}")
        if len(set(header) - {""}) != len([h for h in header if h]):
            raise ParseError("duplicate_column", "the header repeats a column",
                             f"line {header_number}")

    def parse(self) -> ParsedFile:
        rows, summary, summary_number = self._rows_and_summary()
        self.rows = rows
        lines = [self.line(row) for row in rows]
        self._check_currency(lines)
        psp_summary = None
        if summary is None:
            # where the summary should have followed: after the last line with content
            last = max((n for n, line in self.lines if line.strip()), default=0)
            refuse_or_warn("missing_trailer", f"the {self.what} has no {self.summary_key} "
                           "summary: it was cut short", location=f"line {last + 1}",
                           allow_incomplete=self.allow_incomplete, warnings=self.warnings)
        else:
            assert summary_number is not None  # a summary always comes with its line number
            psp_summary = self.check_summary(summary, summary_number, rows, lines)
        self._flag_rows(rows)
        return ParsedFile(format=FORMAT, kind="psp_bill", psp_lines=lines,
                          psp_summary=psp_summary, warnings=self.warnings)

    def line(self, row: Row) -> PspLine:
        raise NotImplementedError

    def check_summary(self, summary: dict[str, str], number: int, rows: list[Row],
                      lines: list[PspLine]) -> PspSummary:
        raise NotImplementedError

    def time(self, row: Row, column: str) -> dt.datetime:
        value, lost_seconds = beijing_to_utc(row.get(column), row.number)
        if lost_seconds:
            self.mangled_times.append(row.number)
        return value

    def _rows_and_summary(self) -> tuple[list[Row], dict[str, str] | None, int | None]:
        rows: list[Row] = []
        width = len(self.header)
        body = iter([(n, line) for n, line in self.lines if n > self.header_number])
        for number, line in body:
            if not line.strip():
                continue
            cells = split_fields(line, self.delimiter, number)
            if cells and cells[0] == self.summary_key:
                return rows, *self._summary(cells, body, number)
            rows.append(Row(number, dict(zip(self.header, self._fit(cells, width, number),
                                             strict=True))))
        return rows, None, None

    def _fit(self, cells: list[str], width: int, number: int) -> list[str]:
        if len(cells) > width and not any(cells[width:]):
            cells = cells[:width]  # trailing empty cells (tab-padded rows)
        if len(cells) != width:
            raise ParseError("column_count", f"expected {width} fields, found {len(cells)}",
                             f"line {number}")
        return cells

    def _summary(self, names: list[str], body, number: int) -> tuple[dict[str, str], int]:
        """The summary row's values by name, and its line number."""
        values = next(((n, line) for n, line in body if line.strip()), None)
        if values is None:
            raise ParseError("missing_trailer", f"the {self.summary_key} summary has no values",
                             f"line {number}")
        cells = split_fields(values[1], self.delimiter, values[0])
        extra = next(((n, line) for n, line in body if line.strip()), None)
        if extra is not None:
            raise ParseError("unexpected_content", "text after the summary row",
                             f"line {extra[0]}")
        names = [normalise_name(n) for n in names]
        return {n: v for n, v in zip(names, cells, strict=False) if n}, values[0]

    def _check_currency(self, lines: list[PspLine]) -> None:
        currencies = sorted({line.currency for line in lines})
        if len(currencies) > 1:
            raise ParseError("mixed_currency", f"one bill in {', '.join(currencies)}: its "
                             "summary totals cannot be checked")

    def _flag_rows(self, rows: list[Row]) -> None:
        """Warnings about rows that loaded but need care."""
        mangled = [(row.number, value) for row in rows for column, value in row.cells.items()
                   if column in _ID_COLUMNS and _EXCEL_NUMBER.fullmatch(value)]
        if mangled:
            self.warnings.append(Warning_(
                "mangled_reference",
                f"{len(mangled)} ids are in spreadsheet notation (first {mangled[0][1]!r} at line "
                f"{mangled[0][0]}): the file went through Excel and their digits are lost; kept "
                "as text, match these rows by other fields or fetch the bill again"))
        if self.mangled_times:
            self.warnings.append(Warning_(
                "mangled_timestamp",
                f"{len(self.mangled_times)} times have no seconds (first at line "
                f"{self.mangled_times[0]}): the file went through Excel; read as :00"))
        if self.pending_refunds:
            self.warnings.append(Warning_(
                "refund_not_final", f"{self.pending_refunds} refunds are not yet SUCCESS "
                "(退款状态 PROCESSING or other): their money may not have moved"))

    def summary_value(self, summary: dict[str, str], key: str, number: int,
                      currency: str | None) -> int | None:
        text = summary.get(key)
        if not text:
            return None
        if currency is None:
            return count_value(text, key, number)
        return amount_minor(text, currency, key, number)


_ID_COLUMNS = frozenset({"微信订单号", "商户订单号", "微信退款单号", "商户退款单号",
                         "微信支付业务单号", "资金流水单号", "业务凭证号"})


class _TradeBill(_Bill):
    summary_key = "总交易单数"
    required = ("交易时间", "微信订单号", "商户订单号", "交易状态", "应结订单金额")
    what = "trade bill"

    def line(self, row: Row) -> PspLine:
        currency = row.get("货币种类") or "CNY"
        status = row.get("交易状态")
        if status == "REFUND":
            refund = row.amount("退款金额", currency, required=True)
            if refund < 0:
                raise ParseError("bad_sign", f"退款金额 {row.get('退款金额')} is negative",
                                 f"line {row.number}")
            record_type, gross, merchant_ref = "refund", -refund, row.ref("商户退款单号")
            self._note_refund_state(row)
        elif status in ("SUCCESS", "REVOKED"):
            record_type = "payment" if status == "SUCCESS" else "other"
            gross = row.amount("应结订单金额", currency, required=True)
            merchant_ref = row.ref("商户订单号")
        else:
            raise ParseError("unknown_status", f"交易状态 {status!r} is not SUCCESS, REFUND or "
                             "REVOKED", f"line {row.number}")
        fee = row.amount("手续费", currency)
        return PspLine(line_number=row.number, record_type=record_type, channel=CHANNEL,
                       channel_reference=row.ref("微信订单号"), merchant_reference=merchant_ref,
                       transaction_at=self.time(row, "交易时间"), currency=currency,
                       gross_minor=gross, fee_minor=fee, net_minor=gross - fee, status=status,
                       description=row.ref("商品名称"))

    def identity(self, lines: list[PspLine], name: str | None) -> str | None:
        """`trade|<variant>|<merchant ids>|<Beijing day(s)>`: the same bill re-sent under
        another name (re-saved with CRLF, corrected) has the same identity; another merchant's,
        another day's or another variant's (ALL vs REFUND) has not."""
        if not self.rows:
            return None
        variant = _TRADE_VARIANT.search(name or "")
        merchants = sorted({f"{row.get('商户号')}/{row.get('特约商户号')}" for row in self.rows})
        days = sorted({(line.transaction_at + BEIJING_OFFSET).date().isoformat()
                       for line in lines if line.transaction_at is not None})
        return (f"trade|{variant[1] if variant else 'ALL'}|{','.join(merchants)}|"
                f"{days[0] if days else ''}..{days[-1] if days else ''}")

    def _note_refund_state(self, row: Row) -> None:
        if row.get("退款状态") not in ("", "SUCCESS"):
            self.pending_refunds += 1

    def check_summary(self, summary, number, rows, lines) -> PspSummary:
        currency = lines[0].currency if lines else "CNY"
        figures = [Figure("总交易单数", self.summary_value(summary, "总交易单数", number, None),
                          len(rows))]
        stated: dict[str, int | None] = {}
        for key, column in _TRADE_TOTALS.items():
            stated[key] = self.summary_value(summary, key, number, currency)
            if stated[key] is not None and column in self.header:
                computed = sum(row.amount(column, currency) for row in rows)
                figures.append(Figure(key, stated[key], computed, currency))
        check_figures([f for f in figures if f.stated is not None], code="trailer_mismatch",
                      what=f"the {self.what} summary", location=f"line {number}",
                      allow_incomplete=self.allow_incomplete, warnings=self.warnings)
        return PspSummary(row_count=figures[0].stated, gross_minor=stated["应结订单总金额"],
                          refund_minor=stated["退款总金额"], fee_minor=stated["手续费总金额"])


class _FundFlowBill(_Bill):
    summary_key = "资金流水总笔数"
    required = ("记账时间", "收支类型", "收支金额(元)")
    what = "fund-flow bill"

    def line(self, row: Row) -> PspLine:
        direction = row.get("收支类型")
        if direction not in ("收入", "支出"):
            raise ParseError("bad_direction", f"收支类型 {direction!r} is not 收入 or 支出",
                             f"line {row.number}")
        amount = row.amount("收支金额(元)", "CNY", required=True)
        if amount < 0:
            raise ParseError("bad_sign", "收支金额 is negative; 收支类型 carries the direction",
                             f"line {row.number}")
        business = row.get("业务类型") or row.get("业务名称")
        record_type, gross, fee = fund_flow_record(direction, business, amount)
        return PspLine(line_number=row.number, record_type=record_type, channel=CHANNEL,
                       channel_reference=row.ref("微信支付业务单号"),
                       merchant_reference=row.ref("业务凭证号"),
                       transaction_at=self.time(row, "记账时间"), currency="CNY",
                       gross_minor=gross, fee_minor=fee, net_minor=gross - fee,
                       status=business or None, description=row.ref("备注"))

    def check_summary(self, summary, number, rows, lines) -> PspSummary:
        income = [row.amount("收支金额(元)", "CNY") for row in rows if row.get("收支类型") == "收入"]
        expense = [row.amount("收支金额(元)", "CNY") for row in rows if row.get("收支类型") == "支出"]
        computed = {"资金流水总笔数": (len(rows), None), "收入笔数": (len(income), None),
                    "收入金额": (sum(income), "CNY"), "支出笔数": (len(expense), None),
                    "支出金额": (sum(expense), "CNY")}
        figures = []
        for key, (value, currency) in computed.items():
            stated = self.summary_value(summary, key, number, currency)
            if stated is not None:
                figures.append(Figure(key, stated, value, currency))
        check_figures(figures, code="trailer_mismatch", what=f"the {self.what} summary",
                      location=f"line {number}", allow_incomplete=self.allow_incomplete,
                      warnings=self.warnings)
        stated_by = {f.label: f.stated for f in figures}
        stated_in, stated_out = stated_by.get("收入金额"), stated_by.get("支出金额")
        net = None if stated_in is None or stated_out is None else stated_in - stated_out
        return PspSummary(row_count=stated_by.get("资金流水总笔数"), gross_minor=stated_in,
                          net_minor=net)


def fund_flow_record(direction: str, business: str, amount: int) -> tuple[str, int, int]:
    """(record_type, gross, fee) of a balance movement; net = gross - fee is the movement
    for every type except payouts, whose gross is the (positive) amount sent to the bank."""
    movement = amount if direction == "收入" else -amount
    if "退款" in business:
        return ("refund" if movement < 0 else "other"), movement, 0
    if "手续费" in business:
        return "fee_adjustment", 0, -movement
    if "提现" in business:
        return "payout", -movement, 0
    if "交易" in business and movement >= 0:
        return "payment", movement, 0
    return "other", movement, 0


# --- consumer export (微信支付账单明细) ------------------------------------------------------------------

_STATED_COUNT = re.compile(r"共([0-9]+)笔记录")
_STATED_GROUP = re.compile(r"(收入|支出|中性交易|不计收支)[：:]\s*([0-9]+)笔\s*([0-9.]+)元")
_SERVICE_FEE = re.compile(r"服务费[¥￥]?([0-9.]+)")


class _ConsumerExport:
    required = ("交易时间", "交易类型", "收/支", "金额(元)")

    def __init__(self, lines, allow_incomplete):
        self.lines = lines
        self.allow_incomplete = allow_incomplete
        self.warnings: list[Warning_] = []

    def parse(self) -> ParsedFile:
        header_at = next((i for i, (_n, line) in enumerate(self.lines)
                          if line.startswith("交易时间")), None)
        if header_at is None:
            raise ParseError("missing_header", "no 交易时间,... column header row")
        number, header_line = self.lines[header_at]
        header = [normalise_name(c) for c in split_fields(header_line, ",", number)]
        missing = [c for c in self.required if c not in header]
        if missing:
            raise ParseError("missing_column", f"the header lacks {', '.join(missing)}",
                             f"line {number}")
        rows = [Row(n, dict(zip(header, _pad(split_fields(line, ",", n), len(header), n),
                                strict=True)), CONSUMER_EMPTY)
                for n, line in self.lines[header_at + 1:] if line.strip()]
        lines = [consumer_line(row, CHANNEL, row.get("收/支"), ConsumerColumns(), _withdrawal_fee)
                 for row in rows]
        intro = "\n".join(line for _n, line in self.lines[:header_at])
        entries = [(row.get("收/支"), abs(line.gross_minor))
                   for row, line in zip(rows, lines, strict=True)]
        summary = check_stated(intro, entries, "the export's header",
                               numbered=self.lines[:header_at],
                               allow_incomplete=self.allow_incomplete, warnings=self.warnings)
        return ParsedFile(format=FORMAT, kind="psp_bill", psp_lines=lines, psp_summary=summary,
                          warnings=self.warnings, bill_key=export_identity("export", intro))


def _pad(cells: list[str], width: int, number: int) -> list[str]:
    """Consumer exports end some rows early or with empty extras; more real cells is an error."""
    if len(cells) > width and any(cells[width:]):
        raise ParseError("column_count", f"expected {width} fields, found {len(cells)}",
                         f"line {number}")
    return (cells + [""] * width)[:width]


@dataclass(frozen=True)
class ConsumerColumns:
    """Where a consumer export keeps each fact (WeChat and Alipay name them differently)."""

    time: str = "交易时间"
    amount: str = "金额(元)"
    kind: str = "交易类型"
    reference: str = "交易单号"
    merchant: str = "商户单号"
    item: str = "商品"
    counterparty: str = "交易对方"
    status: str = "当前状态"


def consumer_line(row: Row, channel: str, direction: str, columns: ConsumerColumns,
                  fee_of: Callable[[Row], int]) -> PspLine:
    """A consumer-export row, read from the account holder's side (see the module docs)."""
    amount = row.amount(columns.amount, "CNY", required=True)
    if amount < 0:
        raise ParseError("bad_sign", f"{columns.amount} is negative; 收/支 carries the direction",
                         f"line {row.number}")
    kind = row.get(columns.kind)
    if direction == "收入":
        record_type, gross = "payment", amount
    elif direction == "支出":
        record_type, gross = ("refund" if "退款" in kind else "other"), -amount
    elif "提现" in kind:
        record_type, gross = "payout", amount
    else:
        record_type, gross = "other", amount
    fee = fee_of(row)
    transaction_at, _lost = beijing_to_utc(row.get(columns.time), row.number)
    return PspLine(line_number=row.number, record_type=record_type, channel=channel,
                   channel_reference=row.ref(columns.reference),
                   merchant_reference=row.ref(columns.merchant), transaction_at=transaction_at,
                   currency="CNY", gross_minor=gross, fee_minor=fee, net_minor=gross - fee,
                   status=row.ref(columns.status),
                   description=row.ref(columns.item) or row.ref(columns.counterparty))


def _withdrawal_fee(row: Row) -> int:
    """WeChat notes a withdrawal's charge in 备注 ("服务费¥0.10"); the amount includes it."""
    if row.get("收/支") in ("收入", "支出") or "提现" not in row.get("交易类型"):
        return 0
    match = _SERVICE_FEE.search(row.get("备注"))
    return amount_minor(match[1], "CNY", "服务费", row.number) if match else 0


def check_stated(intro: str, entries: list[tuple[str, int]], what: str, *,
                 allow_incomplete: bool, warnings: list[Warning_],
                 numbered: Sequence[tuple[int, str]] = ()) -> PspSummary | None:
    """Compare a consumer export's stated count and per-direction totals with its rows.

    `entries`: each row's direction as written (收入, 支出, anything else is neutral) and its
    unsigned amount in minor units. Neutral groups are stated as 中性交易 (WeChat) or 不计收支
    (Alipay). `numbered`: the (line number, text) lines `intro` was taken from, to name the
    line that states the count when the figures disagree."""
    count = _STATED_COUNT.search(intro)
    if count is None:
        return None
    stated_at = next((f"line {n}" for n, line in numbered if count[0] in line), None)
    figures = [Figure("共N笔记录", int(count[1]), len(entries))]
    groups: dict[str, list[int]] = {"收入": [], "支出": [], "neutral": []}
    for direction, amount in entries:
        groups[direction if direction in ("收入", "支出") else "neutral"].append(amount)
    stated_totals: dict[str, int] = {}
    for label, stated_n, stated_amount in _STATED_GROUP.findall(intro):
        group = groups[label if label in ("收入", "支出") else "neutral"]
        total = amount_minor(stated_amount, "CNY", label, None)
        stated_totals[label] = total
        figures += [Figure(f"{label}笔数", int(stated_n), len(group)),
                    Figure(f"{label}金额", total, sum(group), "CNY")]
    check_figures(figures, code="record_count_mismatch", what=what, location=stated_at,
                  allow_incomplete=allow_incomplete, warnings=warnings)
    income, expense = stated_totals.get("收入"), stated_totals.get("支出")
    return PspSummary(row_count=int(count[1]), gross_minor=income,
                      net_minor=None if income is None or expense is None else income - expense)


# --- render: a v3 trade bill ---------------------------------------------------------------------

def render(parsed: ParsedFile, *, app_id: str = "wx0000000000000000",
           mch_id: str = "1900000000", rate: str = "0.60%") -> bytes:
    """A v3 `tradebill` ALL from payments and refunds, with its summary trailer.

    Times are written in Beijing time to the second (WeChat bills carry no fractions); the fee
    with the exponent + 3 decimals WeChat uses. `rate` is the merchant's fee rate as printed.
    """
    lines = _psp_lines(parsed)
    currencies = {line.currency for line in lines}
    if len(currencies) > 1:
        raise ValueError(f"one WeChat bill is in one currency, not {sorted(currencies)}")
    currency = currencies.pop() if currencies else "CNY"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TRADE_COLUMNS_V3)
    for line in lines:
        row = _trade_row(line, app_id=app_id, mch_id=mch_id, rate=rate)
        writer.writerow(["`" + row.get(column, "") for column in TRADE_COLUMNS_V3])
    writer.writerow(TRADE_SUMMARY)
    writer.writerow(["`" + value for value in _trade_summary(lines, currency)])
    return out.getvalue().encode("utf-8")


def _psp_lines(parsed: ParsedFile) -> list[PspLine]:
    if parsed.psp_table is not None:
        return [PspLine(**row) for row in parsed.psp_table.to_pylist()]
    return parsed.psp_lines


def _fee_text(value: int, currency: str) -> str:
    return format_minor(value, currency, currency_exponent(currency) + 3)


def _trade_row(line: PspLine, *, app_id: str, mch_id: str, rate: str) -> dict[str, str]:
    """The row's cells by column; unnamed columns are written empty."""
    if line.record_type not in ("payment", "refund"):
        raise ValueError(f"a WeChat trade bill has no {line.record_type} rows")
    if line.transaction_at is None:
        raise ValueError("a WeChat trade bill row needs its transaction time")
    cur = line.currency
    zero = format_minor(0, cur)
    row = {"交易时间": (line.transaction_at + BEIJING_OFFSET).strftime("%Y-%m-%d %H:%M:%S"),
           "公众账号ID": app_id, "商户号": mch_id, "特约商户号": "0",
           "微信订单号": line.channel_reference or "", "交易类型": "NATIVE", "付款银行": "OTHERS",
           "货币种类": cur, "代金券金额": zero, "充值券退款金额": zero,
           "商品名称": line.description or "", "手续费": _fee_text(line.fee_minor, cur),
           "费率": rate}
    if line.record_type == "refund":
        refunded = format_minor(-line.gross_minor, cur)
        row |= {"交易状态": "REFUND", "应结订单金额": zero, "订单金额": zero,
                "商户退款单号": line.merchant_reference or "", "退款金额": refunded,
                "申请退款金额": refunded, "退款类型": "ORIGINAL", "退款状态": "SUCCESS"}
    else:
        settled = format_minor(line.gross_minor, cur)
        row |= {"交易状态": "SUCCESS", "商户订单号": line.merchant_reference or "",
                "应结订单金额": settled, "订单金额": settled, "微信退款单号": "0",
                "商户退款单号": "0", "退款金额": zero, "申请退款金额": zero}
    return row


def _trade_summary(lines: list[PspLine], currency: str) -> list[str]:
    """The values under TRADE_SUMMARY: what the rows written by `_trade_row` add up to."""
    settled = sum(line.gross_minor for line in lines if line.record_type == "payment")
    refunded = -sum(line.gross_minor for line in lines if line.record_type == "refund")
    fees = sum(line.fee_minor for line in lines)
    return [str(len(lines)), format_minor(settled, currency), format_minor(refunded, currency),
            format_minor(0, currency), _fee_text(fees, currency), format_minor(settled, currency),
            format_minor(refunded, currency)]
