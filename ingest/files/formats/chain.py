"""ERC-20 Transfer logs in the `eth_getLogs` shape -> `ChainLog` records.

Accepted file shapes (UTF-8, an optional BOM is ignored):

1. A JSON-RPC response whose `result` is a list of logs (`eth_getLogs`, `eth_getFilterLogs`,
   `eth_getFilterChanges`), or a receipt (`eth_getTransactionReceipt`: `result.logs`). A
   response carrying `error` is refused (`jsonrpc_error`).
2. A bare JSON array of logs.
3. JSON Lines, one log object per line (ethereum-etl's `export_receipts_and_logs` / `stream`
   output: snake_case keys, decimal ints). Blank lines are skipped.
4. ethereum-etl's logs CSV (`log_index,transaction_hash,...,topics`, topics comma-joined).
5. The Clearhouse chain file, which the platform's simulated chain writes with `render`:

       {"network": "eip155:84532",     CAIP-2 chain id, required
        "latest_block": 31337,         JSON integer or null: the newest block the node had seen
                                       when it wrote the file; confirmations are counted against
                                       it (a log in block `latest_block` has 1 confirmation)
        "logs": [ <eth_getLogs log objects, hex quantities, plus "blockTimestamp" when known> ]}

   A reorg is written as the same log again with `"removed": true`. Other top-level keys are
   ignored (room for additions); every log's block must be <= latest_block.

A log object has `address`, `topics` (list, or a comma-joined string), `data`, `blockNumber`,
`transactionHash`, `logIndex` (all required), and optional `blockHash`, `transactionIndex`,
`blockTimestamp`, `removed` (default false). The snake_case spellings (`block_number`, ...) are
read too. Quantities are hex strings ("0x1060a39") or decimal integers (JSON ints or digit
strings); block timestamps are Unix seconds and become naive UTC datetimes. Every log is
validated - a bad hash, hex or quantity anywhere refuses the file - but only ERC-20 Transfers
become records: topics[0] == keccak("Transfer(address,address,uint256)") with exactly 3 topics.
Such a log must decode - zero-padded address topics, data of exactly one 32-byte word (the
uint256 value, kept as an exact int) - or the file is refused. 4-topic Transfers (ERC-721) and
other Transfer-topic layouts are skipped and counted in a warning; other events are skipped
silently.

Network: the chain file's `network`; else a name segment `eip155-<id>` / `eip155:<id>` /
`eip155_<id>` (a landing folder such as `landing/chain/eip155-84532/...` or a file name prefix
`eip155-1_logs.json`); else "eip155:1" with a `network_defaulted` warning. A file whose own
network disagrees with its name is refused (`network_mismatch`).

`ParsedFile.chain_heads` is `{network: latest_block}` when the file states latest_block (only
the chain file does). `parse_with_head` also returns a `ChainHead`: where the network came from,
the file's shape and how many logs of each kind were skipped.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from ingest.files.records import ChainLog, ParsedFile, ParseError, Warning_, read_source

FORMAT = "chain_logs"
KIND = "chain_logs"

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
DEFAULT_NETWORK = "eip155:1"
MAX_UINT256 = 2**256 - 1
# Block numbers, log indexes and timestamps land in BIGINT columns.
MAX_QUANTITY = 2**63 - 1
MAX_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z, the last second a datetime holds

_HEX_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,16}")
_DEC_QUANTITY = re.compile(r"[0-9]{1,19}")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
_NETWORK = re.compile(r"eip155:[1-9][0-9]{0,31}")
_NAME_NETWORK = re.compile(r"(?:^|[/\\])eip155[-:_]([1-9][0-9]{0,31})(?=$|[-_./\\])")
_CSV_REQUIRED = {"address", "topics", "data", "block_number", "transaction_hash", "log_index"}

# Each log field with the spellings it is read under (JSON-RPC first, then ethereum-etl).
_ALIASES = {
    "blockNumber": ("blockNumber", "block_number"),
    "blockHash": ("blockHash", "block_hash"),
    "blockTimestamp": ("blockTimestamp", "block_timestamp"),
    "transactionHash": ("transactionHash", "transaction_hash"),
    "transactionIndex": ("transactionIndex", "transaction_index"),
    "logIndex": ("logIndex", "log_index"),
    "address": ("address",),
    "topics": ("topics",),
    "data": ("data",),
    "removed": ("removed",),
}


@dataclass(frozen=True, slots=True)
class ChainHead:
    """What a chain file says besides its Transfer records (for the load report)."""

    network: str
    network_source: str  # "file" | "name" | "default"
    latest_block: int | None  # only the Clearhouse chain file carries it
    shape: str  # "jsonrpc" | "receipt" | "array" | "jsonl" | "csv" | "chain_file"
    logs_read: int  # every log in the file, Transfer or not
    # skip reason -> count: "erc721", "other_transfer" (1 or 2 topics), "other_event"
    skipped: dict[str, int] = field(default_factory=dict)


# --- parse -----------------------------------------------------------------------------------


_RPC_RESULT = re.compile(rb'"result"\s*:\s*(\[\s*[^\]\s]|\{)')


def sniff(head: bytes, name: str) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"{", b"["):
        if b'"topics"' in head:
            return True
        if b'"logs"' in head and b'"network"' in head:
            return True
        # A JSON-RPC answer whose result is a non-empty list or an object (logs, a receipt),
        # whatever the file's name: a response cut before its first "topics" then gets its own
        # reason (json_syntax) instead of unknown_format. An empty result or an error says
        # nothing of the method, so those go by the name (eth_getLogs_..., ...receipt...).
        if b'"jsonrpc"' in head and _RPC_RESULT.search(head):
            return True
        lowered = name.lower()
        return b'"jsonrpc"' in head and ("getlogs" in lowered or "filterlogs" in lowered
                                         or "receipt" in lowered)
    first_line = text.split(b"\n", 1)[0]
    return all(col in first_line for col in (b"log_index", b"transaction_hash", b"topics"))


def parse(source: bytes | Path, name: str | None = None) -> ParsedFile:
    return parse_with_head(source, name)[0]


def parse_with_head(source: bytes | Path, name: str | None = None) -> tuple[ParsedFile, ChainHead]:
    text = _decode(read_source(source))
    shape, items, file_network, latest_block = _read_shape(text)
    network, network_source = _network(file_network, name)
    parsed = ParsedFile(format=FORMAT, kind=KIND)
    skipped: Counter[str] = Counter()
    logs_read = 0
    for where, item in items:
        logs_read += 1
        log = _read_log(item, where, network)
        if isinstance(log, str):
            skipped[log] += 1
        else:
            parsed.chain_logs.append(log)
    _check_latest_block(parsed.chain_logs, latest_block)
    if latest_block is not None:
        parsed.chain_heads[network] = latest_block
    parsed.warnings.extend(_warnings(skipped, network_source, network))
    head = ChainHead(network, network_source, latest_block, shape, logs_read, dict(skipped))
    return parsed, head


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError("encoding", f"not UTF-8: {exc.reason}", f"byte {exc.start}") from None
    if not text.strip():
        raise ParseError("empty_file", "the file has no content")
    return text


def _read_shape(text: str) -> tuple[str, Iterator[tuple[str, Any]], str | None, int | None]:
    """(shape, (location, log) pairs, network from the file, latest_block) of any known shape."""
    first = text.lstrip()[0]
    if first not in "[{":
        return "csv", _csv_logs(text), None, None
    try:
        doc = _json_loads(text)
    except ValueError as exc:
        if first == "{" and _is_json_lines(text):
            return "jsonl", _json_lines(text), None, None
        raise _json_error(exc, None) from None
    except RecursionError:
        raise ParseError("json_syntax", "JSON nested too deeply") from None
    if isinstance(doc, list):
        return "array", _indexed(doc), None, None
    if not isinstance(doc, dict):
        raise ParseError("unknown_shape", "the JSON document is neither an object nor an array")
    if {"jsonrpc", "result", "error"} & doc.keys():
        return _jsonrpc(doc)
    if "logs" in doc:
        return _chain_file(doc)
    if "topics" in doc:  # JSON Lines with a single line
        return "jsonl", iter([("line 1", doc)]), None, None
    raise ParseError("unknown_shape", "a JSON object that is not a JSON-RPC response or a log file")


# json's C scanner recurses per nesting level and stops at the recursion limit. Some libraries
# raise that limit for the whole process (py_ecc, imported with eth-account, sets 100,000); a
# deeply nested file would then overflow the C stack - a crash, not a RecursionError. Parse
# under a limit the stack can hold (real logs nest five levels deep).
_PARSE_RECURSION_LIMIT = 2000


def _json_loads(text: str) -> Any:
    # Floats and NaN are never valid here; Decimal keeps them from being silently accepted.
    limit = sys.getrecursionlimit()
    if limit > _PARSE_RECURSION_LIMIT:
        sys.setrecursionlimit(_PARSE_RECURSION_LIMIT)
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    finally:
        sys.setrecursionlimit(limit)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_error(exc: ValueError, where: str | None) -> ParseError:
    if isinstance(exc, json.JSONDecodeError):
        location = where or f"line {exc.lineno} column {exc.colno}"
        return ParseError("json_syntax", exc.msg, location)
    return ParseError("json_syntax", str(exc), where)


def _is_json_lines(text: str) -> bool:
    """True when the first line is a whole JSON object by itself (so it is not pretty-printed)."""
    first_line = text.lstrip().split("\n", 1)[0]
    try:
        return isinstance(_json_loads(first_line), dict)
    except (ValueError, RecursionError):
        return False


def _json_lines(text: str) -> Iterator[tuple[str, Any]]:
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            item = _json_loads(line)
        except ValueError as exc:
            raise _json_error(exc, where) from None
        except RecursionError:
            raise ParseError("json_syntax", "JSON nested too deeply", where) from None
        yield where, item


def _indexed(items: list[Any]) -> Iterator[tuple[str, Any]]:
    return ((f"log[{i}]", item) for i, item in enumerate(items))


def _jsonrpc(doc: dict[str, Any]) -> tuple[str, Iterator[tuple[str, Any]], None, None]:
    if doc.get("error") is not None:
        raise ParseError("jsonrpc_error", f"the node answered with an error: {doc['error']!r:.200}")
    result = doc.get("result")
    if isinstance(result, list):
        return "jsonrpc", _indexed(result), None, None
    if isinstance(result, dict) and isinstance(result.get("logs"), list):
        return "receipt", _indexed(result["logs"]), None, None
    raise ParseError("unexpected_result", "`result` is neither a list of logs nor a receipt",
                     "result")


def _chain_file(doc: dict[str, Any]) -> tuple[str, Iterator[tuple[str, Any]], str, int | None]:
    logs, network = doc["logs"], doc.get("network")
    if not isinstance(logs, list):
        raise ParseError("unknown_shape", "`logs` must be a list", "logs")
    if not isinstance(network, str) or not _NETWORK.fullmatch(network):
        raise ParseError("bad_network", f"`network` must be a CAIP-2 id such as "
                         f"'eip155:84532', got {network!r:.80}", "network")
    latest = doc.get("latest_block")
    latest_block = None if latest is None else _quantity(latest, "latest_block")
    return "chain_file", _indexed(logs), network, latest_block


def _csv_logs(text: str) -> Iterator[tuple[str, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [col.strip() for col in next(reader, [])]
        if not set(header) >= _CSV_REQUIRED:
            raise ParseError("unknown_shape", "neither JSON nor an ethereum-etl logs CSV "
                             f"(columns {sorted(_CSV_REQUIRED)})", "line 1")
        for row in reader:
            where = f"line {reader.line_num}"
            if not row:
                continue
            if len(row) != len(header):
                raise ParseError("row_length", f"{len(row)} cells, the header has {len(header)}",
                                 where)
            # An empty CSV cell is a missing value.
            yield where, {col: cell or None for col, cell in zip(header, row, strict=True)}
    except csv.Error as exc:
        raise ParseError("csv_syntax", str(exc), f"line {reader.line_num}") from None


def _network(file_network: str | None, name: str | None) -> tuple[str, str]:
    match = _NAME_NETWORK.search(name or "")
    name_network = f"eip155:{match.group(1)}" if match else None
    if file_network and name_network and file_network != name_network:
        raise ParseError("network_mismatch", f"the file says {file_network}, its name "
                         f"{name!r} says {name_network}", "network")
    if file_network:
        return file_network, "file"
    if name_network:
        return name_network, "name"
    return DEFAULT_NETWORK, "default"


def _check_latest_block(logs: list[ChainLog], latest_block: int | None) -> None:
    if latest_block is None or not logs:
        return
    newest = max(log.block_number for log in logs)
    if newest > latest_block:
        raise ParseError("latest_block_behind", f"a log is in block {newest}, after latest_block "
                         f"{latest_block}", "latest_block")


def _warnings(skipped: Counter[str], network_source: str, network: str) -> list[Warning_]:
    warnings = []
    if network_source == "default":
        warnings.append(Warning_("network_defaulted", "neither the file nor its name names the "
                                 f"network; assumed {network}"))
    if skipped["erc721"]:
        warnings.append(Warning_("erc721_transfers_skipped", f"{skipped['erc721']} ERC-721 "
                                 "Transfer logs (4 topics) skipped"))
    if skipped["other_transfer"]:
        warnings.append(Warning_("nonstandard_transfers_skipped", f"{skipped['other_transfer']} "
                                 "Transfer-topic logs with neither 3 nor 4 topics skipped"))
    return warnings


# --- one log ---------------------------------------------------------------------------------


def _read_log(item: Any, where: str, network: str) -> ChainLog | str:
    """The log as a ChainLog if it is an ERC-20 Transfer, else why it was skipped.

    Every log is validated in full, Transfer or not: a garbled field means a garbled file.
    """
    if not isinstance(item, dict):
        raise ParseError("not_a_log", f"a log must be a JSON object, got {type(item).__name__}",
                         where)
    topics = _topics(_get(item, "topics", where), _at(where, "topics"))
    data = _hex_data(_get(item, "data", where), _at(where, "data"))
    token_address = _address(_get(item, "address", where), _at(where, "address"))
    block_number = _quantity(_get(item, "blockNumber", where), _at(where, "blockNumber"))
    block_hash = _optional_hash(_get(item, "blockHash", where, required=False),
                                _at(where, "blockHash"))
    block_timestamp = _timestamp(_get(item, "blockTimestamp", where, required=False),
                                 _at(where, "blockTimestamp"))
    transaction_hash = _hash(_get(item, "transactionHash", where), _at(where, "transactionHash"))
    log_index = _quantity(_get(item, "logIndex", where), _at(where, "logIndex"))
    removed = _removed(_get(item, "removed", where, required=False), _at(where, "removed"))
    tx_index = _get(item, "transactionIndex", where, required=False)
    if tx_index is not None:  # not kept
        _quantity(tx_index, _at(where, "transactionIndex"))
    skip = _transfer_kind(topics)
    if skip:
        return skip
    return ChainLog(
        network=network,
        block_number=block_number,
        block_hash=block_hash,
        block_timestamp=block_timestamp,
        transaction_hash=transaction_hash,
        log_index=log_index,
        token_address=token_address,
        from_address=_topic_address(topics[1], _at(where, "topics[1]")),
        to_address=_topic_address(topics[2], _at(where, "topics[2]")),
        value=_uint256(data, _at(where, "data")),
        removed=removed,
    )


def _at(where: str, field_path: str) -> str:
    """ "log[3].data" in JSON arrays, "line 7: data" in JSON Lines and CSV."""
    return f"{where}: {field_path}" if where.startswith("line") else f"{where}.{field_path}"


def _transfer_kind(topics: list[str]) -> str | None:
    """None for an ERC-20 Transfer, else the skip reason."""
    if not topics or topics[0] != TRANSFER_TOPIC:
        return "other_event"
    if len(topics) == 3:
        return None
    return "erc721" if len(topics) == 4 else "other_transfer"


def _get(item: dict[str, Any], key: str, where: str, *, required: bool = True) -> Any:
    for spelling in _ALIASES[key]:
        value = item.get(spelling)
        if value is not None:
            return value
    if required:
        raise ParseError("missing_field", f"the log has no {key}", _at(where, key))
    return None


def _quantity(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _HEX_QUANTITY.fullmatch(value):
        number = int(value, 16)
    elif isinstance(value, str) and _DEC_QUANTITY.fullmatch(value):
        number = int(value)
    else:
        raise ParseError("bad_quantity", f"{value!r:.80} is neither a hex quantity nor a "
                         "decimal integer", where)
    if not 0 <= number <= MAX_QUANTITY:
        raise ParseError("quantity_out_of_range", f"{number} is out of range", where)
    return number


def _timestamp(value: Any, where: str) -> dt.datetime | None:
    if value is None:
        return None
    seconds = _quantity(value, where)
    if seconds > MAX_TIMESTAMP:
        raise ParseError("quantity_out_of_range", f"timestamp {seconds} is out of range", where)
    return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)


def _hash(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _HASH.fullmatch(value):
        raise ParseError("bad_hash", f"{value!r:.80} is not a 32-byte 0x hash", where)
    return value.lower()


def _optional_hash(value: Any, where: str) -> str | None:
    return None if value is None else _hash(value, where)


def _address(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise ParseError("bad_address", f"{value!r:.80} is not a 20-byte 0x address", where)
    return value.lower()


def _hex_data(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _DATA.fullmatch(value):
        raise ParseError("bad_hex", f"{value!r:.80} is not 0x-prefixed hex bytes", where)
    return value.lower()


def _topics(value: Any, where: str) -> list[str]:
    if isinstance(value, str):  # ethereum-etl CSV: comma-joined
        value = [t.strip() for t in value.split(",")] if value.strip() else []
    if not isinstance(value, list) or len(value) > 4:  # LOG0..LOG4: at most 4 topics
        raise ParseError("bad_topics", "topics must be a list of at most 4 hashes", where)
    return [_hash(topic, f"{where}[{i}]") for i, topic in enumerate(value)]


def _topic_address(topic: str, where: str) -> str:
    if topic[2:26].strip("0"):
        raise ParseError("bad_address", "an address topic must be 12 zero bytes and 20 address "
                         f"bytes, got {topic}", where)
    return "0x" + topic[26:]


def _uint256(data: str, where: str) -> int:
    if len(data) != 66:
        raise ParseError("bad_value", f"Transfer data must be one 32-byte word, got "
                         f"{(len(data) - 2) // 2} bytes", where)
    value = int(data, 16)
    if value > MAX_UINT256:  # unreachable with 32 bytes; kept as the contract's statement
        raise ParseError("bad_value", "value exceeds uint256", where)
    return value


def _removed(value: Any, where: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):  # CSV cells
        return value.lower() == "true"
    raise ParseError("bad_removed", f"removed must be true or false, got {value!r:.40}", where)


# --- render ----------------------------------------------------------------------------------


def render(parsed: ParsedFile, *, latest_block: int | None = None,
           network: str | None = None) -> bytes:
    """The Clearhouse chain file for these logs (one log per line), which `parse` reads back.

    `network` defaults to the logs' own (they must all agree); `latest_block` is the newest block
    the writer's node had seen (default: `parsed.chain_heads[network]`, else null = unknown). `transactionIndex` is not written: ChainLog
    does not keep it. Build the input as
    `ParsedFile(format=FORMAT, kind=KIND, chain_logs=[ChainLog(...), ...])`.
    """
    network = _render_network(parsed.chain_logs, network)
    if latest_block is None:
        latest_block = parsed.chain_heads.get(network)
    if latest_block is not None:
        if not 0 <= latest_block <= MAX_QUANTITY:
            raise ValueError(f"latest_block {latest_block} is out of range")
        newest = max((log.block_number for log in parsed.chain_logs), default=0)
        if newest > latest_block:
            raise ValueError(f"a log is in block {newest}, after latest_block {latest_block}")
    lines = [json.dumps(_render_log(log)) for log in parsed.chain_logs]
    head = f'{{"network": {json.dumps(network)}, "latest_block": {json.dumps(latest_block)}, '
    body = '"logs": [\n' + ",\n".join(lines) + "\n]}\n" if lines else '"logs": []}\n'
    return (head + body).encode("utf-8")


def _render_network(logs: list[ChainLog], network: str | None) -> str:
    networks = {log.network for log in logs}
    if network is None:
        if len(networks) != 1:
            raise ValueError(f"pass network=: the logs are on {sorted(networks) or 'no network'}")
        network = networks.pop()
    elif networks - {network}:
        raise ValueError(f"logs on {sorted(networks - {network})} in a file for {network}")
    if not _NETWORK.fullmatch(network):
        raise ValueError(f"network must be a CAIP-2 eip155 id, got {network!r}")
    return network


def _render_log(log: ChainLog) -> dict[str, Any]:
    for name in ("token_address", "from_address", "to_address"):
        if not _ADDRESS.fullmatch(getattr(log, name)):
            raise ValueError(f"{name} {getattr(log, name)!r} is not a 0x address")
    if not _HASH.fullmatch(log.transaction_hash):
        raise ValueError(f"transaction_hash {log.transaction_hash!r} is not a 0x hash")
    if log.block_hash is not None and not _HASH.fullmatch(log.block_hash):
        raise ValueError(f"block_hash {log.block_hash!r} is not a 0x hash")
    if not 0 <= log.value <= MAX_UINT256:
        raise ValueError(f"value {log.value} is not a uint256")
    out: dict[str, Any] = {
        "address": log.token_address.lower(),
        "topics": [TRANSFER_TOPIC, _address_topic(log.from_address),
                   _address_topic(log.to_address)],
        "data": f"0x{log.value:064x}",
        "blockNumber": _hex_quantity(log.block_number),
        "transactionHash": log.transaction_hash.lower(),
        "blockHash": log.block_hash.lower() if log.block_hash else None,
        "logIndex": _hex_quantity(log.log_index),
        "removed": log.removed,
    }
    if log.block_timestamp is not None:
        out["blockTimestamp"] = _hex_quantity(_unix_seconds(log.block_timestamp))
    return out


def _address_topic(address: str) -> str:
    return "0x" + "0" * 24 + address[2:].lower()


def _hex_quantity(number: int) -> str:
    if not 0 <= number <= MAX_QUANTITY:
        raise ValueError(f"{number} is out of range for a quantity")
    return hex(number)


def _unix_seconds(when: dt.datetime) -> int:
    """Seconds since the epoch of a naive-UTC (or aware) datetime with no fraction of a second."""
    if when.microsecond:
        raise ValueError(f"block timestamp {when} has a fraction of a second")
    aware = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    return int(aware.timestamp())
