"""Alipay exports: the GB18030 sample to its figures and expected beancount, both header
generations, encodings, sniffing and fuzzing."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.files.formats import alipay, psp_csv, wechat
from ingest.files.records import ParseError, PspLine
from tests.ingest.files.test_wechat import beancount_transactions, beijing_date, broken

SAMPLE = "psp/deb-sig/example-alipay-records.csv"
EXPECTED = "psp/deb-sig/example-alipay-output.beancount"

# An older-generation export (交易号 ... 金额（元）, 服务费（元）, a dashed footer with the count).
OLD_EXPORT = """支付宝交易记录明细查询
账号:[20880000000000000156]
起始日期:[2019-01-01 00:00:00]    终止日期:[2019-01-31 23:59:59]
---------------------------------交易记录明细列表------------------------------------
交易号                  ,商户订单号               ,交易创建时间              ,付款时间                ,最近修改时间              ,交易来源地     ,类型              ,交易对方            ,商品名称                ,金额（元）   ,收/支     ,交易状态    ,服务费（元）   ,成功退款（元）  ,备注                  ,资金状态     ,
2019013122001400000000000001	,T201901310001	,2019-01-31 20:15:02 ,2019-01-31 20:15:03 ,2019-01-31 20:15:03 ,其他（包括阿里巴巴和外部商家）,即时到账交易          ,某商家               ,收款                ,120.50  ,收入      ,交易成功    ,0.72    ,0       ,                    ,已收入    ,
2019013022001400000000000002	,                    ,2019-01-30 09:00:00 ,2019-01-30 09:00:01 ,2019-01-30 09:00:01 ,支付宝网站     ,退款              ,某顾客               ,退款-收款              ,20.00   ,支出      ,退款成功    ,0       ,0       ,                    ,已支出    ,
------------------------------------------------------------------------------------
共2笔记录
已收入:1笔,120.50元
待收入:0笔,0.00元
已支出:1笔,20.00元
待支出:0笔,0.00元
导出时间:[2019-02-01 10:00:00]    用户:某商家
"""


def refused(data, **kwargs) -> ParseError:
    with pytest.raises(ParseError) as err:
        alipay.parse(data, **kwargs)
    return err.value


def test_sample_states_66_records_but_holds_10(shared_data):
    error = refused(shared_data / SAMPLE)
    assert error.reason == "record_count_mismatch"
    assert "共N笔记录 states 66, rows give 10" in error.message
    assert "支出笔数 states 63, rows give 5" in error.message


def test_sample_rows_when_the_operator_accepts_the_incomplete_export(shared_data):
    parsed = alipay.parse(shared_data / SAMPLE, allow_incomplete=True)
    assert parsed.format == "alipay" and [w.code for w in parsed.warnings] == [
        "record_count_mismatch"]
    lines = parsed.psp_lines
    assert len(lines) == 10 and {line.currency for line in lines} == {"CNY"}
    assert {line.channel for line in lines} == {"alipay"}
    assert Counter(line.record_type for line in lines) == {"payment": 1, "other": 9}
    first = lines[0]
    assert (first.gross_minor, first.status, first.description) == (-4974, "交易成功", "亲情卡")
    assert first.channel_reference == "202302xxxxxx0011000103xxxxxx"
    assert first.merchant_reference == "20230xxxxxxx014741014xxxxxx"
    # 2023-02-12 21:32:14 Beijing time is 13:32:14 UTC.
    assert first.transaction_at == dt.datetime(2023, 2, 12, 13, 32, 14)
    transfer = next(line for line in lines if line.record_type == "payment")
    assert transfer.gross_minor == 22222850 and transfer.merchant_reference is None
    summary = parsed.psp_summary
    assert (summary.row_count, summary.gross_minor, summary.net_minor) == (66, 2850, 2850 - 1654)


def test_sample_rows_match_the_expected_beancount(shared_data):
    lines = alipay.parse(shared_data / SAMPLE, allow_incomplete=True).psp_lines
    rows = Counter((beijing_date(line), line.channel_reference, abs(line.net_minor))
                   for line in lines)
    expected = Counter(beancount_transactions(shared_data / EXPECTED))
    assert len(expected) == 7  # the converter leaves out the three 交易关闭 / refund-of-closed rows
    assert not expected - rows


def test_closed_trades_keep_their_status(shared_data):
    lines = alipay.parse(shared_data / SAMPLE, allow_incomplete=True).psp_lines
    assert Counter(line.status for line in lines)["交易关闭"] == 2


def test_utf8_with_bom_reads_the_same(shared_data):
    raw = (shared_data / SAMPLE).read_bytes()
    utf8 = raw.decode("gb18030").encode("utf-8-sig")
    assert (alipay.parse(utf8, allow_incomplete=True).psp_lines
            == alipay.parse(raw, allow_incomplete=True).psp_lines)


@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
def test_older_export_with_fees_and_a_footer(encoding):
    parsed = alipay.parse(OLD_EXPORT.encode(encoding))
    assert parsed.warnings == []
    sale, refund = parsed.psp_lines
    assert (sale.record_type, sale.gross_minor, sale.fee_minor, sale.net_minor) == (
        "payment", 12050, 72, 11978)
    assert sale.channel_reference == "2019013122001400000000000001"
    assert sale.merchant_reference == "T201901310001" and sale.description == "收款"
    assert sale.transaction_at == dt.datetime(2019, 1, 31, 12, 15, 2)
    assert (refund.record_type, refund.gross_minor, refund.merchant_reference) == (
        "refund", -2000, None)
    assert parsed.psp_summary.row_count == 2


def test_older_export_missing_a_row_is_refused():
    lines = OLD_EXPORT.splitlines(keepends=True)
    cut = "".join(line for line in lines if not line.startswith("2019013022"))
    assert "states 2, rows give 1" in refused(cut.encode("gbk")).message


@pytest.mark.parametrize(("old", "new", "reason"), [
    ("120.50  ,收入", "12O.50  ,收入", "bad_amount"),
    ("120.50  ,收入", "120.505 ,收入", "amount_precision"),
    ("120.50  ,收入", "-120.50 ,收入", "bad_sign"),
    ("2019-01-31 20:15:02", "2019-13-31 20:15:02", "bad_timestamp"),
    ("收款                ,120.50", "收款,120.50,x,y", "column_count"),
])
def test_broken_rows_are_refused_at_their_line(old, new, reason):
    assert old in OLD_EXPORT
    error = refused(OLD_EXPORT.replace(old, new).encode("gbk"))
    assert (error.reason, error.location) == (reason, "line 6")


def test_without_a_header_row():
    assert refused("支付宝\n共0笔记录\n".encode("gbk")).reason == "missing_header"
    assert refused(b"\x81").reason == "encoding"


def test_sniff(shared_data):
    for path in (shared_data / "psp").rglob("*"):
        if path.is_file():
            head = path.read_bytes()[:4096]
            assert alipay.sniff(head, path.name) == (path.name == "example-alipay-records.csv")
    head = (shared_data / SAMPLE).read_bytes()[:4096]
    assert [m.FORMAT for m in (psp_csv, wechat, alipay) if m.sniff(head, SAMPLE)] == ["alipay"]
    assert alipay.sniff(OLD_EXPORT.encode("gbk")[:4096], "x.csv")


@pytest.mark.parametrize("source", ["sample", "old"])
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_fuzzed_exports_parse_or_raise_parse_error(shared_data, source, data):
    raw = (shared_data / SAMPLE).read_bytes() if source == "sample" else OLD_EXPORT.encode("gbk")
    mutated = data.draw(broken(raw))
    try:
        parsed = alipay.parse(mutated, allow_incomplete=data.draw(st.booleans()))
    except ParseError as error:
        assert error.reason and error.message
    else:
        assert all(isinstance(line, PspLine) for line in parsed.psp_lines)
