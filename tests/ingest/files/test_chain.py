"""ERC-20 Transfer logs: the ethereum-etl samples to their expected figures, refusals, render."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.files.formats import chain
from ingest.files.records import ChainLog, ParsedFile, ParseError
from tests.ingest.files.mutations import damaged as _damaged

TRANSFER = chain.TRANSFER_TOPIC
ETL = "chain/ethereum-etl"
STREAM = "test_stream/blocks_17173049_17173050"  # under ETL
RECEIPTS = "test_export_receipts_job/receipts_with_logs"
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
TX = "0x" + "ab" * 32
ALICE = "0x" + "11" * 20
BOB = "0x" + "22" * 20


@pytest.fixture(scope="module")
def etl(shared_data: Path) -> Path:
    return shared_data / ETL


def _identity(log: ChainLog) -> tuple:
    return (log.token_address, log.from_address, log.to_address, log.value,
            log.transaction_hash, log.log_index, log.block_number)


def _expected_identity(row: dict) -> tuple:
    return (row["token_address"], row["from_address"], row["to_address"], int(row["value"]),
            row["transaction_hash"], int(row["log_index"]), int(row["block_number"]))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _csv_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _log(**changes) -> dict:
    """One ERC-20 Transfer log in eth_getLogs shape (value 1000), with `changes` applied."""
    log = {
        "address": USDC,
        "topics": [TRANSFER, "0x" + "0" * 24 + ALICE[2:], "0x" + "0" * 24 + BOB[2:]],
        "data": "0x" + f"{1000:064x}",
        "blockNumber": "0x10", "transactionHash": TX, "transactionIndex": "0x0",
        "blockHash": "0x" + "cd" * 32, "logIndex": "0x2", "removed": False,
    }
    log.update(changes)
    return {k: v for k, v in log.items() if v is not ...}  # `...` deletes a key


def _response(*logs: dict) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "result": list(logs)}).encode()


def _refused(data: bytes, name: str | None = None) -> ParseError:
    with pytest.raises(ParseError) as err:
        chain.parse(data, name)
    return err.value


# --- the real samples --------------------------------------------------------------------------


def test_usdc_getlogs_equals_the_expected_transfers(etl):
    parsed = chain.parse(etl / "DERIVED_usdc_mainnet_eth_getLogs_17173049-17173050.json")
    expected = json.loads((etl / "DERIVED_usdc_expected_transfers_17173049-17173050.json")
                          .read_text())
    assert [_identity(log) for log in parsed.chain_logs] == [_expected_identity(r) for r in expected]
    assert len(parsed.chain_logs) == 9
    assert sum(log.value for log in parsed.chain_logs) == 129494801129
    assert {log.token_address for log in parsed.chain_logs} == {USDC}
    assert not any(log.removed for log in parsed.chain_logs)
    assert parsed.kind == "chain_logs" and parsed.format == "chain_logs"
    assert parsed.chain_heads == {}  # a node response does not say how far the chain was


def test_stream_logs_give_the_erc20_transfers_and_skip_the_erc721(etl):
    parsed, head = chain.parse_with_head(etl / STREAM / "expected_logs.json")
    logs = _jsonl(etl / STREAM / "expected_logs.json")
    expected = _jsonl(etl / STREAM / "expected_token_transfers.json")
    assert len(logs) == head.logs_read == 681 and len(expected) == 291
    # ethereum-etl counts ERC-721 Transfers (4 topics, tokenId in topics[3]) as token transfers
    # too; of its 291, the 282 with 3 topics are the ERC-20 ones.
    topic_count = {(lg["transaction_hash"], lg["log_index"]): len(lg["topics"]) for lg in logs}
    erc20 = [t for t in expected if topic_count[(t["transaction_hash"], t["log_index"])] == 3]
    erc721 = [t for t in expected if topic_count[(t["transaction_hash"], t["log_index"])] == 4]
    assert (len(erc20), len(erc721)) == (282, 9)
    assert [_identity(log) for log in parsed.chain_logs] == [_expected_identity(t) for t in erc20]
    assert head.skipped == {"erc721": 9, "other_event": 390}
    assert [w.code for w in parsed.warnings] == ["network_defaulted", "erc721_transfers_skipped"]
    assert "9 ERC-721" in parsed.warnings[1].message
    first = parsed.chain_logs[0]
    assert first.block_timestamp == dt.datetime(2023, 5, 2, 12, 19, 59)
    assert first.block_hash == logs[0]["block_hash"]
    assert max(log.value for log in parsed.chain_logs) > 2**63  # kept exact


def test_filter_logs_response_gives_two_transfers(etl):
    job = etl / "test_export_token_transfers_job/block_with_transfers"
    parsed = chain.parse(job / "web3_response.eth_getFilterLogs_0x0.json")
    assert [(log.value, log.block_number) for log in parsed.chain_logs] == [
        (100000, 483920), (200000, 483920)]
    expected = _csv_rows(job / "expected_token_transfers.csv")
    assert [_identity(log) for log in parsed.chain_logs] == [_expected_identity(r) for r in expected]


def test_receipt_responses_give_their_logs(etl):
    parsed = []
    for path in sorted((etl / RECEIPTS).glob("web3_response.eth_getTransactionReceipt_*.json")):
        result, head = chain.parse_with_head(path, path.name)
        assert head.shape == "receipt"
        tx_hash = path.stem.rsplit("_", 1)[1]
        assert all(log.transaction_hash == tx_hash for log in result.chain_logs)
        parsed.extend(result.chain_logs)
    expected = _csv_rows(etl / "test_export_token_transfers_job/block_with_transfers"
                                "/expected_token_transfers.csv")
    assert sorted(map(_identity, parsed)) == sorted(map(_expected_identity, expected))
    # ethereum-etl's own exports of the same receipts' logs, as JSON Lines and as CSV
    for name in ("expected_logs.json", "expected_logs.csv"):
        exported = chain.parse(etl / RECEIPTS / name)
        assert sorted(map(_identity, exported.chain_logs)) == sorted(map(_identity, parsed))


def test_ethereum_etl_logs_csv_gives_the_expected_transfers(etl):
    job = etl / "test_extract_token_transfers_job/logs"
    parsed, head = chain.parse_with_head(job / "logs.csv")
    expected = _csv_rows(job / "expected_token_transfers.csv")
    assert [_identity(log) for log in parsed.chain_logs] == [_expected_identity(r) for r in expected]
    assert head.shape == "csv" and head.skipped == {"other_event": 1}
    assert parsed.chain_logs[0].value == 109 * 10**18  # above 2^63


@pytest.mark.parametrize("path", [f"{ETL}/{STREAM}/expected_blocks.json",
                                  f"{ETL}/{STREAM}/expected_token_transfers.json",
                                  f"{ETL}/{RECEIPTS}/expected_receipts.json"])
def test_other_ethereum_etl_outputs_are_refused_not_read_as_empty(shared_data, path):
    err = _refused((shared_data / path).read_bytes())
    assert err.reason == "missing_field" and err.location == "line 1: topics"


@pytest.mark.parametrize("path", [
    f"{ETL}/DERIVED_usdc_mainnet_eth_getLogs_17173049-17173050.json",
    f"{ETL}/{STREAM}/expected_logs.json",
    f"{ETL}/test_export_token_transfers_job/block_with_transfers/"
    "web3_response.eth_getFilterLogs_0x0.json",
    f"{ETL}/{RECEIPTS}/web3_response.eth_getTransactionReceipt_"
    "0x04cbcb236043d8fb7839e07bbc7f5eed692fb2ca55d897f1101eac3e3ad4fab8.json",
    f"{ETL}/{RECEIPTS}/expected_logs.csv",
    f"{ETL}/test_extract_token_transfers_job/logs/logs.csv",
])
def test_sniff_recognises_the_samples(shared_data, path):
    file = shared_data / path
    assert chain.sniff(file.read_bytes()[:4096], file.name)


@pytest.mark.parametrize("head", [
    b"Date, USD, JPY, \n30 October 2026, 1.1172, 175.68, \n",
    b'<?xml version="1.0"?><Document/>',
    b'{"jsonrpc": "2.0", "id": 1, "result": "0x10"}',
    b"token_address,from_address,to_address,value\n",
])
def test_sniff_refuses_other_files(head):
    assert not chain.sniff(head, "file.json")


def test_sniff_an_empty_getlogs_response_by_its_name():
    empty = _response()
    assert chain.sniff(empty, "eth_getLogs_100-200.json")
    assert not chain.sniff(empty, "balance.json")


# --- network and the Clearhouse chain file ---------------------------------------------------


@pytest.mark.parametrize(("name", "network"), [
    ("landing/chain/eip155-84532/2026-10-30/logs.json", "eip155:84532"),
    ("eip155-8453_usdc.json", "eip155:8453"),
    ("eip155:1.jsonl", "eip155:1"),
    ("eip155_10-logs.json", "eip155:10"),
])
def test_network_from_the_name(name, network):
    parsed, head = chain.parse_with_head(_response(_log()), name)
    assert parsed.chain_logs[0].network == network and head.network_source == "name"
    assert parsed.warnings == []


@pytest.mark.parametrize("name", [None, "logs.json", "xeip155-84532.json", "eip155-0.json"])
def test_network_defaults_to_mainnet_with_a_warning(name):
    parsed, head = chain.parse_with_head(_response(_log()), name)
    assert parsed.chain_logs[0].network == "eip155:1" and head.network_source == "default"
    assert [w.code for w in parsed.warnings] == ["network_defaulted"]


def test_chain_file_carries_network_head_and_timestamps():
    doc = {"network": "eip155:84532", "latest_block": 20,
           "logs": [_log(blockTimestamp="0x6553f100"), _log(removed=True, blockTimestamp=...)]}
    parsed, head = chain.parse_with_head(json.dumps(doc).encode(), "sim.json")
    assert (head.network, head.network_source, head.latest_block, head.shape) == (
        "eip155:84532", "file", 20, "chain_file")
    assert parsed.chain_heads == {"eip155:84532": 20}
    added, removed = parsed.chain_logs
    assert added.block_timestamp == dt.datetime(2023, 11, 14, 22, 13, 20)
    assert (added.removed, removed.removed, removed.block_timestamp) == (False, True, None)
    assert _identity(added) == _identity(removed)
    assert parsed.warnings == []


def test_chain_file_must_agree_with_its_name_and_its_logs():
    doc = {"network": "eip155:84532", "latest_block": 20, "logs": [_log()]}
    assert _refused(json.dumps(doc).encode(), "eip155-1/x.json").reason == "network_mismatch"
    doc["latest_block"] = 15  # the log is in block 16
    assert _refused(json.dumps(doc).encode()).reason == "latest_block_behind"
    doc["network"] = "base"
    assert _refused(json.dumps(doc).encode()).reason == "bad_network"


# --- decoding ------------------------------------------------------------------------------------


def test_a_removed_log_is_parsed_with_removed_true():
    parsed = chain.parse(_response(_log(), _log(removed=True)))
    assert [log.removed for log in parsed.chain_logs] == [False, True]


def test_missing_removed_defaults_to_false_and_decimal_quantities_are_read():
    log = _log(removed=..., blockNumber=483920, logIndex="7", transactionIndex=...)
    (parsed,) = chain.parse(json.dumps([log]).encode()).chain_logs
    assert (parsed.removed, parsed.block_number, parsed.log_index) == (False, 483920, 7)


def test_addresses_and_hashes_are_lowercased():
    log = _log(address="0x" + USDC[2:].upper(), transactionHash="0x" + TX[2:].upper(),
               topics=[TRANSFER, "0x" + "0" * 24 + "AB" * 20, "0x" + "0" * 24 + BOB[2:]])
    (parsed,) = chain.parse(_response(log)).chain_logs
    assert parsed.token_address == USDC and parsed.transaction_hash == TX
    assert parsed.from_address == "0x" + "ab" * 20


def test_erc721_and_other_logs_are_skipped():
    nft = _log(topics=[TRANSFER, "0x" + "0" * 64, "0x" + "0" * 24 + BOB[2:], "0x" + "0" * 63 + "7"],
               data="0x")
    unindexed = _log(topics=[TRANSFER], data="0x" + "00" * 96)
    approval = _log(topics=["0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"])
    anonymous = _log(topics=[])
    parsed, head = chain.parse_with_head(_response(nft, _log(), unindexed, approval, anonymous))
    assert len(parsed.chain_logs) == 1 and parsed.chain_logs[0].value == 1000
    assert head.skipped == {"erc721": 1, "other_transfer": 1, "other_event": 2}
    assert {w.code for w in parsed.warnings} == {
        "network_defaulted", "erc721_transfers_skipped", "nonstandard_transfers_skipped"}


@pytest.mark.parametrize("value", [0, 2**63 - 1, 2**63, 2**64 + 1, 10**30, 2**256 - 1])
def test_values_are_exact_up_to_uint256_max(value):
    (parsed,) = chain.parse(_response(_log(data=f"0x{value:064x}"))).chain_logs
    assert parsed.value == value and type(parsed.value) is int


def test_empty_results_are_files_without_logs():
    assert chain.parse(_response()).chain_logs == []
    assert chain.parse(b"[]").chain_logs == []


@pytest.mark.parametrize(("log", "reason", "location"), [
    (_log(data="0x" + "00" * 33), "bad_value", "log[0].data"),
    (_log(data="0x" + "00" * 31), "bad_value", "log[0].data"),
    (_log(data="0x" + "zz" * 32), "bad_hex", "log[0].data"),
    (_log(data="0x123"), "bad_hex", "log[0].data"),
    (_log(data=...), "missing_field", "log[0].data"),
    (_log(transactionHash=...), "missing_field", "log[0].transactionHash"),
    (_log(transactionHash="0x1234"), "bad_hash", "log[0].transactionHash"),
    (_log(blockNumber=...), "missing_field", "log[0].blockNumber"),
    (_log(blockNumber=None), "missing_field", "log[0].blockNumber"),  # a pending log
    (_log(blockNumber="0xzz"), "bad_quantity", "log[0].blockNumber"),
    (_log(blockNumber="0x"), "bad_quantity", "log[0].blockNumber"),
    (_log(blockNumber=-1), "quantity_out_of_range", "log[0].blockNumber"),
    (_log(blockNumber=2**64), "quantity_out_of_range", "log[0].blockNumber"),
    (_log(blockNumber=True), "bad_quantity", "log[0].blockNumber"),
    (_log(logIndex="1.5"), "bad_quantity", "log[0].logIndex"),
    (_log(transactionIndex="x"), "bad_quantity", "log[0].transactionIndex"),
    (_log(blockTimestamp="0xffffffffffff"), "quantity_out_of_range", "log[0].blockTimestamp"),
    (_log(address="0x1234"), "bad_address", "log[0].address"),
    (_log(topics=[TRANSFER, "0x" + "f" * 64, "0x" + "0" * 24 + BOB[2:]]), "bad_address",
     "log[0].topics[1]"),
    (_log(topics=[TRANSFER, "0xabc", "0x" + "0" * 64]), "bad_hash", "log[0].topics[1]"),
    (_log(topics=[TRANSFER] * 5), "bad_topics", "log[0].topics"),
    (_log(topics={"0": TRANSFER}), "bad_topics", "log[0].topics"),
    (_log(removed="yes"), "bad_removed", "log[0].removed"),
])
def test_malformed_logs_are_refused_with_reason_and_place(log, reason, location):
    err = _refused(json.dumps([log]).encode())
    assert (err.reason, err.location) == (reason, location)


def test_a_float_quantity_is_refused():
    err = _refused(b'[' + json.dumps(_log()).encode()[:-1] + b', "blockNumber": 16.0}]')
    assert err.reason == "bad_quantity"


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty_file"),
    (b"  \n", "empty_file"),
    (b'{"jsonrpc": "2.0", "id": 1, "error": {"code": -32005, "message": "limit"}}',
     "jsonrpc_error"),
    (b'{"jsonrpc": "2.0", "id": 1, "result": null}', "unexpected_result"),
    (b'{"jsonrpc": "2.0", "id": 1, "result": [', "json_syntax"),
    (b'{"foo": 1}', "unknown_shape"),
    (b'"logs"', "unknown_shape"),
    (b"[1]", "not_a_log"),
    (b"\xff\xfe[]", "encoding"),
    (b"[NaN]", "json_syntax"),
    (b"[" * 100000, "json_syntax"),
    (b"hello world\n", "unknown_shape"),
    (b'{"network": "eip155:1", "latest_block": 1, "logs": {}}', "unknown_shape"),
    (b'{"network": "eip155:1", "latest_block": "soon", "logs": []}', "bad_quantity"),
])
def test_malformed_files_are_refused(data, reason):
    assert _refused(data).reason == reason


def test_json_lines_errors_name_the_line():
    good = json.dumps(_log()).encode()
    assert len(chain.parse(good + b"\n\n" + good + b"\n").chain_logs) == 2
    err = _refused(good + b"\n" + good[:-5] + b"\n")
    assert (err.reason, err.location) == ("json_syntax", "line 2")
    err = _refused(good + b"\n" + json.dumps(_log(data="0x01")).encode())
    assert (err.reason, err.location) == ("bad_value", "line 2: data")


def test_a_cut_csv_row_is_refused(etl):
    text = (etl / "test_extract_token_transfers_job/logs/logs.csv").read_bytes()
    header, first = text.split(b"\n")[:2]
    err = _refused(header + b"\n" + first[: first.index(b',"')])  # cut before the topics
    assert (err.reason, err.location) == ("row_length", "line 2")
    err = _refused(text[: text.rindex(b",")])  # cut inside the quoted topics
    assert (err.reason, err.location) == ("csv_syntax", "line 4")


# --- render ------------------------------------------------------------------------------------


def _chain_log(**changes) -> ChainLog:
    fields = dict(network="eip155:84532", block_number=16, block_hash="0x" + "cd" * 32,
                  block_timestamp=dt.datetime(2026, 10, 30, 12, 0, 5), transaction_hash=TX,
                  log_index=2, token_address=USDC, from_address=ALICE, to_address=BOB,
                  value=1000, removed=False)
    return ChainLog(**(fields | changes))


def _file(*logs: ChainLog) -> ParsedFile:
    return ParsedFile(format=chain.FORMAT, kind=chain.KIND, chain_logs=list(logs))


def test_render_writes_exact_eth_getlogs_logs():
    reorg = _file(_chain_log(), _chain_log(removed=True))
    doc = json.loads(chain.render(reorg, latest_block=20))
    assert (doc["network"], doc["latest_block"]) == ("eip155:84532", 20)
    assert doc["logs"][0] == {
        "address": USDC,
        "topics": [TRANSFER, "0x" + "0" * 24 + ALICE[2:], "0x" + "0" * 24 + BOB[2:]],
        "data": "0x" + "0" * 61 + "3e8",
        "blockNumber": "0x10", "transactionHash": TX, "blockHash": "0x" + "cd" * 32,
        "logIndex": "0x2", "removed": False, "blockTimestamp": "0x6ae486c5",
    }
    assert doc["logs"][1]["removed"] is True
    parsed, head = chain.parse_with_head(chain.render(reorg, latest_block=20))
    assert parsed.chain_logs == reorg.chain_logs and head.latest_block == 20


def test_render_of_a_real_file_round_trips(etl):
    parsed = chain.parse(etl / STREAM / "expected_logs.json", "eip155-1/logs.jsonl")
    assert chain.parse(chain.render(parsed, latest_block=17173050)).chain_logs == parsed.chain_logs


def test_render_refuses_what_it_cannot_write():
    with pytest.raises(ValueError, match="network"):
        chain.render(_file())
    assert json.loads(chain.render(_file(), network="eip155:1")) == {
        "network": "eip155:1", "latest_block": None, "logs": []}
    with pytest.raises(ValueError, match="network"):
        chain.render(_file(_chain_log(), _chain_log(network="eip155:1")))
    with pytest.raises(ValueError, match="latest_block"):
        chain.render(_file(_chain_log()), latest_block=15)
    with pytest.raises(ValueError, match="uint256"):
        chain.render(_file(_chain_log(value=2**256)))
    with pytest.raises(ValueError, match="fraction"):
        chain.render(_file(_chain_log(block_timestamp=dt.datetime(2026, 1, 1, 0, 0, 0, 5))))


_hex20 = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
_hex32 = st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())
_chain_logs = st.builds(
    ChainLog,
    network=st.just("eip155:84532"),
    block_number=st.integers(0, 2**40),
    block_hash=st.none() | _hex32,
    block_timestamp=st.none() | st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(9999, 1, 1))
    .map(lambda d: d.replace(microsecond=0)),
    transaction_hash=_hex32,
    log_index=st.integers(0, 2**63 - 1),
    token_address=_hex20, from_address=_hex20, to_address=_hex20,
    value=st.integers(0, 2**256 - 1),
    removed=st.booleans(),
)


@settings(max_examples=100, deadline=None)
@given(logs=st.lists(_chain_logs, max_size=6), extra=st.integers(0, 10))
def test_render_parse_round_trip(logs, extra):
    latest = max((log.block_number for log in logs), default=0) + extra
    data = chain.render(_file(*logs), latest_block=latest, network="eip155:84532")
    parsed, head = chain.parse_with_head(data, "eip155-84532/logs.json")
    assert parsed.chain_logs == logs and head.latest_block == latest
    assert chain.sniff(data[:4096], "logs.json")


# --- fuzz: damaged real files never raise anything but ParseError ------------------------------


_FUZZED = {
    "getlogs": f"{ETL}/DERIVED_usdc_mainnet_eth_getLogs_17173049-17173050.json",
    "filterlogs": f"{ETL}/test_export_token_transfers_job/block_with_transfers/"
                  "web3_response.eth_getFilterLogs_0x0.json",
    "receipt": f"{ETL}/{RECEIPTS}/web3_response.eth_getTransactionReceipt_"
               "0xcea6f89720cc1d2f46cc7a935463ae0b99dd5fad9c91bb7357de5421511cee49.json",
    "jsonl": f"{ETL}/{STREAM}/expected_logs.json",
    "csv": f"{ETL}/test_extract_token_transfers_job/logs/logs.csv",
}


@pytest.mark.parametrize("sample", sorted(_FUZZED))
def test_fuzzed_real_files_parse_or_raise_parse_error(shared_data, sample):
    data = (shared_data / _FUZZED[sample]).read_bytes()
    if sample == "jsonl":
        data = b"\n".join(data.split(b"\n")[:40])  # the first 40 logs keep each example fast

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(damaged=_damaged(data))
    def check(damaged: bytes) -> None:
        try:
            result = chain.parse(damaged, "eip155-1/logs.json")
        except ParseError as err:
            assert err.reason and err.message
        else:
            assert isinstance(result, ParsedFile)

    check()


def test_deep_nesting_is_refused_even_when_a_library_raised_the_recursion_limit():
    """py_ecc (with eth-account) sets the process's recursion limit to 100,000; json's C scanner
    would then overflow a thread's stack on a deeply nested file. The parser caps it."""
    import sys
    import threading

    sys.setrecursionlimit(100_000)  # restored after the test (tests/conftest.py)
    outcome = []
    old_size = threading.stack_size(1024 * 1024)
    try:
        worker = threading.Thread(target=lambda: outcome.append(_refused(b"[" * 200_000).reason))
        worker.start()
        worker.join()
    finally:
        threading.stack_size(old_size)
    assert outcome == ["json_syntax"]
