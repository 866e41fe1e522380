"""WeChat Pay bills: every sample to the manifest's figures, the control checks, render, fuzz."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.files.formats import alipay, psp_csv, wechat
from ingest.files.records import ParsedFile, ParseError, PspLine
from tests.ingest.files.mutations import damaged as broken

V3_TRADE = "psp/wechatpay/wechatpay_v3_tradebill_ALL_2021-01-28.csv"
V2_TRADE = "psp/wechatpay/wechatpay_v2_sandbox_downloadbill_ALL.tsv"
V3_FUND = "psp/wechatpay/wechatpay_v3_fundflowbill_BASIC_2021-02-01.csv"
V2_FUND = "psp/wechatpay/wechatpay_v2_sandbox_downloadfundflow_Basic.csv"
CONSUMER = "psp/deb-sig/example-wechat-records.csv"
SAMPLES = [V3_TRADE, V2_TRADE, V3_FUND, V2_FUND, CONSUMER]


def codes(parsed: ParsedFile) -> list[str]:
    return [w.code for w in parsed.warnings]


def refused(source, **kwargs) -> ParseError:
    with pytest.raises(ParseError) as err:
        wechat.parse(source, **kwargs)
    return err.value


# --- trade bills ---------------------------------------------------------------------------------

def test_v3_trade_bill(shared_data):
    parsed = wechat.parse(shared_data / V3_TRADE)
    assert parsed.format == "wechat" and parsed.kind == "psp_bill" and parsed.warnings == []
    assert [(line.record_type, line.status, line.gross_minor, line.fee_minor, line.net_minor,
             line.currency) for line in parsed.psp_lines] == [
        ("payment", "SUCCESS", 1, 0, 1, "CNY")] * 3
    first = parsed.psp_lines[0]
    assert first.line_number == 2 and first.channel == "wechat_pay"
    assert first.channel_reference == "4200000925202101284997714292"
    assert first.merchant_reference == "S20210128170702357723"
    assert first.description == "for testing"
    # 2021-01-28 17:07:11 Beijing time is 09:07:11 UTC.
    assert first.transaction_at == dt.datetime(2021, 1, 28, 9, 7, 11)
    summary = parsed.psp_summary
    assert (summary.row_count, summary.gross_minor, summary.refund_minor, summary.fee_minor) == (
        3, 3, 0, 0)


def test_v2_sandbox_trade_bill_matches_the_manifest(shared_data):
    parsed = wechat.parse(shared_data / V2_TRADE)
    lines = parsed.psp_lines
    assert len(lines) == 1269
    assert Counter(line.status for line in lines) == {"SUCCESS": 752, "REFUND": 517}
    assert Counter(line.record_type for line in lines) == {"payment": 752, "refund": 517}
    # The trailer reconciles: settlement 10.79, refund 5.93, fee 0 (coupon refund 0.24, order
    # 11.27 and requested refund 6.37 are checked inside the parser against their columns).
    assert sum(line.gross_minor for line in lines if line.record_type == "payment") == 1079
    assert -sum(line.gross_minor for line in lines if line.record_type == "refund") == 593
    assert sum(line.fee_minor for line in lines) == 0
    summary = parsed.psp_summary
    assert (summary.row_count, summary.gross_minor, summary.refund_minor, summary.fee_minor) == (
        1269, 1079, 593, 0)
    assert "trailer_mismatch" not in codes(parsed)
    assert sorted(codes(parsed)) == ["mangled_reference", "mangled_timestamp", "refund_not_final"]


def test_excel_mangled_ids_stay_text_and_are_flagged(shared_data):
    parsed = wechat.parse(shared_data / V2_TRADE)
    first = parsed.psp_lines[0]
    assert first.channel_reference == "4.00123E+27"  # never 4001230000000000000000000000
    assert first.merchant_reference == "REF4001232001201605015390231647"
    assert first.record_type == "refund" and first.gross_minor == -1
    mangled = next(w for w in parsed.warnings if w.code == "mangled_reference")
    assert "4.00123E+27" in mangled.message and "line 2" in mangled.message
    # "2016/5/4 2:18" lost its seconds to Excel; Beijing 02:18 is 18:18 UTC the day before.
    assert first.transaction_at == dt.datetime(2016, 5, 3, 18, 18)
    pending = next(w for w in parsed.warnings if w.code == "refund_not_final")
    assert pending.message.startswith("45 refunds")


# --- fund-flow bills: their trailers do not reconcile (rows were cut) ----------------------------

@pytest.mark.parametrize(("sample", "figure"), [
    (V3_FUND, "资金流水总笔数 states 3, rows give 2"),
    (V2_FUND, "资金流水总笔数 states 20, rows give 1"),
])
def test_fund_flow_bills_whose_rows_were_cut_are_quarantined(shared_data, sample, figure):
    error = refused(shared_data / sample)
    assert error.reason == "trailer_mismatch"
    assert figure in error.message and "incomplete" in error.message


def test_v3_fund_flow_rows_when_the_operator_accepts_the_incomplete_bill(shared_data):
    parsed = wechat.parse(shared_data / V3_FUND, allow_incomplete=True)
    assert codes(parsed) == ["trailer_mismatch"]
    assert "收入金额 states 0.01, rows give 0.00" in parsed.warnings[0].message
    assert [(line.record_type, line.gross_minor, line.net_minor, line.status)
            for line in parsed.psp_lines] == [("refund", -1, -1, "退款")] * 2
    first = parsed.psp_lines[0]
    assert first.channel_reference == "50300806962021020105978994968"
    assert first.merchant_reference == "S20210201135356381941"
    assert first.transaction_at == dt.datetime(2021, 2, 1, 5, 54, 1)
    assert parsed.psp_summary.row_count == 3 and parsed.psp_summary.net_minor == 1 - 2


def test_v2_fund_flow_rows_when_accepted(shared_data):
    parsed = wechat.parse(shared_data / V2_FUND, allow_incomplete=True)
    [line] = parsed.psp_lines
    assert (line.record_type, line.gross_minor, line.description) == ("refund", -2, "缺货")
    assert "支出金额 states 0.18, rows give 0.02" in parsed.warnings[0].message


@pytest.mark.parametrize(("direction", "business", "expected"), [
    ("收入", "交易", ("payment", 100, 0)),
    ("支出", "退款", ("refund", -100, 0)),
    ("收入", "退款", ("other", 100, 0)),
    ("支出", "扣除手续费", ("fee_adjustment", 0, 100)),
    ("支出", "提现", ("payout", 100, 0)),
    ("收入", "提现退回", ("payout", -100, 0)),
    ("支出", "企业付款", ("other", -100, 0)),
])
def test_fund_flow_mapping(direction, business, expected):
    record_type, gross, fee = wechat.fund_flow_record(direction, business, 100)
    assert (record_type, gross, fee) == expected
    movement = 100 if direction == "收入" else -100
    if record_type != "payout":
        assert gross - fee == movement  # net is the balance movement


# --- the consumer export -------------------------------------------------------------------------

def beancount_transactions(path: Path) -> list[tuple[dt.date, str, int]]:
    """(date, orderId, first posting's amount in fen) of each transaction in a beancount file."""
    found = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        head = re.match(r"(\d{4}-\d{2}-\d{2}) \*", block)
        if not head:
            continue
        order = re.search(r'orderId: "([^"]*)"', block)
        posting = re.search(r"^\t\S+\s+(-?\d+)\.(\d\d) CNY", block, re.M)
        found.append((dt.date.fromisoformat(head[1]), order[1] if order else "",
                      abs(int(posting[1] + posting[2]))))
    return found


def beijing_date(line: PspLine) -> dt.date:
    return (line.transaction_at + wechat.BEIJING_OFFSET).date()


def test_consumer_export_states_43_records_but_holds_27(shared_data):
    error = refused(shared_data / CONSUMER)
    assert error.reason == "record_count_mismatch"
    assert "共N笔记录 states 43, rows give 27" in error.message


def test_consumer_export_rows_match_the_expected_beancount(shared_data):
    parsed = wechat.parse(shared_data / CONSUMER, allow_incomplete=True)
    assert codes(parsed) == ["record_count_mismatch"] and len(parsed.psp_lines) == 27
    assert parsed.psp_summary.row_count == 43
    rows = Counter((beijing_date(line), line.channel_reference or "/", abs(line.net_minor))
                   for line in parsed.psp_lines)
    expected = Counter(beancount_transactions(
        shared_data / "psp/deb-sig/example-wechat-output.beancount"))
    assert len(expected) and expected == rows


def test_consumer_export_record_types(shared_data):
    lines = wechat.parse(shared_data / CONSUMER, allow_incomplete=True).psp_lines
    assert Counter(line.record_type for line in lines) == {"payment": 5, "other": 19, "payout": 3}
    lunch = lines[0]
    assert (lunch.record_type, lunch.gross_minor, lunch.status) == ("other", -2816, "支付成功")
    assert lunch.transaction_at == dt.datetime(2019, 9, 26, 4, 45, 27)
    withdrawal = next(line for line in lines if line.record_type == "payout")
    # 零钱提现 ¥100.10 with 服务费¥0.10: 100.00 reached the bank.
    assert (withdrawal.gross_minor, withdrawal.fee_minor, withdrawal.net_minor) == (10010, 10,
                                                                                    10000)
    assert withdrawal.channel_reference == "207210715100077148235523883175"
    assert all(line.merchant_reference != "/" for line in lines)


# --- refusals ------------------------------------------------------------------------------------

def v3_text(shared_data) -> str:
    return (shared_data / V3_TRADE).read_text(encoding="utf-8")


@pytest.mark.parametrize(("old", "new", "reason", "location"), [
    ("`SUCCESS,`OTHERS", "`PAYERROR,`OTHERS", "unknown_status", "line 2"),
    ("`0.00000,`1.00%", "`0.00006,`1.00%", "amount_precision", "line 2"),
    ("`0.01,`0.00,`0,`0", "`0.0x,`0.00,`0,`0", "bad_amount", "line 2"),
    ("`2021-01-28 17:07:11", "`2021-02-30 17:07:11", "bad_timestamp", "line 2"),
    ("`2021-01-28 17:07:11", "`yesterday", "bad_timestamp", "line 2"),
    (",`for testing", "", "column_count", "line 2"),
    ("`3,`0.03", "`4,`0.03", "trailer_mismatch", "line 6"),
    ("`0.03,`0.00,`0.00,`0.00000", "`0.04,`0.00,`0.00,`0.00000", "trailer_mismatch", "line 6"),
    ("商户号,特约商户号", "商户号,商户号", "duplicate_column", "line 1"),
    ("交易时间,公众账号ID,商户号", "时间,appid,mchid", "missing_column", "line 1"),
])
def test_broken_trade_bills_are_refused(shared_data, old, new, reason, location):
    text = v3_text(shared_data)
    assert old in text
    error = refused(text.replace(old, new, 1).encode())
    assert (error.reason, error.location) == (reason, location), error


def test_a_bill_cut_before_its_trailer(shared_data):
    cut = v3_text(shared_data).split("总交易单数")[0].encode()
    assert refused(cut).reason == "missing_trailer"
    parsed = wechat.parse(cut, allow_incomplete=True)
    assert codes(parsed) == ["missing_trailer"] and len(parsed.psp_lines) == 3


def test_not_a_wechat_bill():
    assert refused(b"date,amount\n2024-01-01,1\n").reason == "unknown_layout"
    assert refused(b"\xff\xfe\x00\x01\x81").reason == "encoding"


def test_a_summary_trailer_with_text_after_it(shared_data):
    error = refused((v3_text(shared_data) + "\nmore\n").encode())
    assert error.reason == "unexpected_content"


# --- sniff ---------------------------------------------------------------------------------------

def test_sniff_knows_every_wechat_sample_and_nothing_else(shared_data):
    for path in (shared_data / "psp").rglob("*"):
        if path.is_file():
            head = path.read_bytes()[:4096]
            assert wechat.sniff(head, path.name) == (
                str(path.relative_to(shared_data)) in SAMPLES), path
    assert not wechat.sniff(b"record_type,channel_reference\n", "x.csv")


def test_each_sample_is_sniffed_by_exactly_one_psp_format(shared_data):
    for sample in SAMPLES:
        head = (shared_data / sample).read_bytes()[:4096]
        assert [m.FORMAT for m in (psp_csv, wechat, alipay) if m.sniff(head, sample)] == [
            "wechat"]


# --- render: a v3 trade bill ---------------------------------------------------------------------

def test_render_reproduces_the_v3_sample_rows(shared_data):
    parsed = wechat.parse(shared_data / V3_TRADE)
    again = wechat.parse(wechat.render(parsed, app_id="wx81be3101902f7cb2", mch_id="1601959334",
                                       rate="1.00%"))
    assert again.psp_lines == parsed.psp_lines and again.psp_summary == parsed.psp_summary
    assert wechat.render(again, app_id="wx81be3101902f7cb2", mch_id="1601959334",
                         rate="1.00%").decode().splitlines()[-1] == (
        "`3,`0.03,`0.00,`0.00,`0.00000,`0.03,`0.00")


def test_render_refuses_rows_a_trade_bill_cannot_hold():
    line = PspLine(1, "payout", None, None, None, None, "CNY", 1, 0, 1)
    with pytest.raises(ValueError, match="payout"):
        wechat.render(ParsedFile("wechat", "psp_bill", psp_lines=[line]))


CNY = st.integers(0, 10**12)
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00\r\n\x0b\x0c\x1c\x1d\x1e"
                             "\x85\u2028\u2029"), max_size=10)


@st.composite
def trade_lines(draw) -> list[PspLine]:
    lines = []
    for number in range(draw(st.integers(0, 6))):
        refund = draw(st.booleans())
        gross = -max(draw(CNY), 1) if refund else draw(CNY)
        fee = draw(st.integers(-10**6, 10**6))
        at = draw(st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2100, 1, 1)))
        ref = draw(TEXT.map(str.strip).filter(lambda t: t and t != "/" and not t.startswith("`")))
        lines.append(PspLine(number + 2, "refund" if refund else "payment", "wechat_pay",
                             draw(st.from_regex(r"42\d{26}", fullmatch=True)), ref,
                             at.replace(microsecond=0), "CNY", gross, fee, gross - fee,
                             status="REFUND" if refund else "SUCCESS",
                             description=draw(TEXT.map(str.strip)) or None))
    return lines


@settings(max_examples=50, deadline=None)
@given(lines=trade_lines())
def test_rendered_trade_bills_parse_back_with_a_correct_trailer(lines):
    parsed = wechat.parse(wechat.render(ParsedFile("wechat", "psp_bill", psp_lines=lines)))
    assert parsed.warnings == []
    assert parsed.psp_lines == lines
    assert parsed.psp_summary.row_count == len(lines)
    assert parsed.psp_summary.fee_minor == sum(line.fee_minor for line in lines)


def test_render_accepts_a_psp_table():
    table = psp_csv.parse(b"record_type,channel_reference,merchant_reference,transaction_at,"
                          b"currency,gross_minor,fee_minor,net_minor,payout_id,payout_date\n"
                          b"payment,4200,S1,2024-01-01T16:00:00Z,CNY,1234,7,1227,,\n")
    parsed = wechat.parse(wechat.render(table))
    assert [(line.channel_reference, line.gross_minor, line.fee_minor)
            for line in parsed.psp_lines] == [("4200", 1234, 7)]
    assert parsed.psp_lines[0].transaction_at == dt.datetime(2024, 1, 1, 16)


# --- fuzz: the real files, broken anywhere -------------------------------------------------------


@pytest.mark.parametrize("sample", [V3_TRADE, V3_FUND, V2_FUND, CONSUMER, V2_TRADE])
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_fuzzed_bills_parse_or_raise_parse_error(shared_data, sample, data):
    raw = (shared_data / sample).read_bytes()
    if sample == V2_TRADE:
        raw = b"\n".join(raw.split(b"\n")[:40] + raw.split(b"\n")[-3:])  # keep it quick
    mutated = data.draw(broken(raw))
    try:
        parsed = wechat.parse(mutated, allow_incomplete=data.draw(st.booleans()))
    except ParseError as error:
        assert error.reason and error.message
    else:
        assert all(isinstance(line, PspLine) for line in parsed.psp_lines)
