"""Alipay bills: the account statement export (支付宝 电子客户回单 / 交易明细), GB18030 or UTF-8.

Layout: free-text intro (account, period, `共N笔记录`, `收入：N笔 X元`, `支出：...`, `不计收支：...`),
a column header row, the rows, and in older exports a dashed line and a footer with the same
figures. Both header generations are read, by column name:

- current: 交易时间, 交易分类, 交易对方, 对方账号, 商品说明, 收/支, 金额, 收/付款方式, 交易状态, 交易订单号,
  商家订单号, 备注
- older: 交易号, 商户订单号, 交易创建时间, 付款时间, ..., 商品名称, 金额（元）, 收/支, 交易状态,
  服务费（元）, ...

Decisions (the same as for the WeChat consumer export, see wechat.py, whose helpers this uses):

- Encoding: UTF-8 when the file decodes as UTF-8 (with or without BOM), else GB18030 (a superset
  of GBK, what Alipay writes).
- Rows are read from the account holder's side: 收入 -> payment (+); 支出 -> refund when the
  category says 退款, else other (-); 不计收支 -> payout when the category says 提现, else other with
  the amount as written. channel = "alipay", channel_reference = 交易订单号 / 交易号,
  merchant_reference = 商家订单号 / 商户订单号, status = 交易状态 (rows such as 交易关闭 are kept;
  the status says no money moved), fee = 服务费（元） where the export has it.
- Times are Beijing time -> naive UTC (minus 8 hours).
- The stated record count and per-direction totals are checked against the rows; a difference
  refuses the file (ParseError "record_count_mismatch", all figures in the message) unless
  `allow_incomplete=True`, which makes it a Warning_.
"""

from __future__ import annotations

from pathlib import Path

from ingest.files.formats.wechat import (
    CONSUMER_EMPTY,
    ConsumerColumns,
    Row,
    check_stated,
    consumer_line,
    decode_text,
    export_identity,
    normalise_name,
    numbered_lines,
    split_fields,
)
from ingest.files.records import ParsedFile, ParseError, Warning_, read_source

FORMAT = "alipay"
CHANNEL = "alipay"

# Each fact's column name in the current export, then in the older one.
_ALIASES = {
    "time": ("交易时间", "交易创建时间", "付款时间"),
    "amount": ("金额", "金额(元)"),
    "kind": ("交易分类", "类型"),
    "reference": ("交易订单号", "交易号"),
    "merchant": ("商家订单号", "商户订单号"),
    "item": ("商品说明", "商品名称"),
    "counterparty": ("交易对方",),
    "status": ("交易状态",),
}
_DIRECTION = "收/支"
_FEE = "服务费(元)"


def sniff(head: bytes, name: str) -> bool:
    """An Alipay export names Alipay or its 交易号/交易订单号 column, next to a 收/支 column."""
    for encoding in ("utf-8", "gb18030"):
        text = head.decode(encoding, errors="ignore")
        if "收/支" in text and ("支付宝" in text or "交易号" in text or "交易订单号" in text):
            return True
    return False


def parse(source: bytes | Path, name: str | None = None, *,
          allow_incomplete: bool = False) -> ParsedFile:
    lines = numbered_lines(decode_text(read_source(source), ("utf-8", "gb18030")))
    header_at, header, columns = _find_header(lines)
    rows, end = _rows(lines, header_at, header)
    psp_lines = [consumer_line(row, CHANNEL, row.get(_DIRECTION), columns, _fee_of(header))
                 for row in rows]
    entries = [(row.get(_DIRECTION), abs(line.gross_minor))
               for row, line in zip(rows, psp_lines, strict=True)]
    outside = [(n, line) for i, (n, line) in enumerate(lines) if i < header_at or i >= end]
    around = "\n".join(line for _n, line in outside)
    warnings: list[Warning_] = []
    summary = check_stated(around, entries, "the export's stated totals",
                           allow_incomplete=allow_incomplete, warnings=warnings, numbered=outside)
    return ParsedFile(format=FORMAT, kind="psp_bill", psp_lines=psp_lines, psp_summary=summary,
                      warnings=warnings, bill_key=export_identity("export", around))


def _find_header(lines: list[tuple[int, str]]) -> tuple[int, list[str], ConsumerColumns]:
    """The first row naming a time, an amount and 收/支 column."""
    for index, (number, line) in enumerate(lines):
        if _DIRECTION not in line:
            continue
        header = [normalise_name(c) for c in split_fields(line, ",", number)]
        found = {fact: next((a for a in aliases if a in header), "")
                 for fact, aliases in _ALIASES.items()}
        if found["time"] and found["amount"]:
            return index, header, ConsumerColumns(**found)
    raise ParseError("missing_header", "no column header row with a time, 金额 and 收/支")


def _rows(lines: list[tuple[int, str]], header_at: int,
          header: list[str]) -> tuple[list[Row], int]:
    """The rows after the header, up to a dashed separator line (older footers) or the end."""
    rows = []
    end = len(lines)
    for index in range(header_at + 1, len(lines)):
        number, line = lines[index]
        if line.startswith("---"):
            end = index
            break
        if line.strip():
            cells = _fit(split_fields(line, ",", number), len(header), number)
            rows.append(Row(number, dict(zip(header, cells, strict=True)), CONSUMER_EMPTY))
    return rows, end


def _fit(cells: list[str], width: int, number: int) -> list[str]:
    """Alipay ends rows (and the header) with a comma; an extra empty cell is not data."""
    if len(cells) > width and not any(cells[width:]):
        cells = cells[:width]
    if len(cells) != width:
        raise ParseError("column_count", f"expected {width} fields, found {len(cells)}",
                         f"line {number}")
    return cells


def _fee_of(header: list[str]):
    if _FEE not in header:
        return lambda row: 0
    return lambda row: row.amount(_FEE, "CNY")
