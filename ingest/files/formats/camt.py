"""ISO 20022 bank-to-customer cash management: camt.052 / camt.053 / camt.054, parser and renderer.

Reads any `urn:iso:std:iso:20022:tech:xsd:camt.05{2,3,4}.001.NN` Document (tested on versions 1 to
8). A statement is a camt.053 `Stmt`, a camt.052 `Rpt` (account report) or a camt.054 `Ntfctn`
(debit/credit notification); `message_type` says which.

Decisions (the loader and the reconciliation rely on them):

* Streaming. lxml `iterparse` reports only `Ntry` and statement ends; each entry is turned into
  lines and then removed from the tree, so memory holds the header of one statement plus the
  lines already read. A first, tiny pass reads the root to refuse non-camt files and DOCTYPEs.
* Batched entries. An entry with several `TxDtls` becomes one line per `TxDtls` (amount from
  `TxDtls/Amt`, else `AmtDtls/TxAmt/Amt`, sign from the detail's own `CdtDbtInd`, else the
  entry's) only when every detail has an amount in the entry's currency and their signed sum is
  exactly the entry's amount. Otherwise - details without amounts, in another currency (the
  camt.054 samples: a 200000 SEK entry over 3.10 + 3.20 + 3.20 CHF) or not adding up - the entry
  stays one line and takes its references from the first `TxDtls`. Split lines share
  `entry_reference` (`NtryRef`, else the entry's `AcctSvcrRef`, else "#<n>", the entry's 1-based
  position in its statement) so the entry can be rebuilt; every line gets `entry_reference` from
  `NtryRef`, else `AcctSvcrRef`.
* Status. `Sts` (v8: `Sts/Cd`) BOOK -> "booked", PDNG and FUTR -> "pending", INFO -> "info". An
  unknown code gives "info" and a warning `unknown_status` (never counted as booked). A missing
  `Sts` is a ParseError: the schema requires it in every version.
* Sign. CRDT positive, DBIT negative. `RvslInd` is informative only: `CdtDbtInd` already is the
  direction of the reversal booking (ISO usage rule).
* Counterparty. Credits: `Dbtr` (name from `Nm`, v8 `Pty/Nm` or `Agt/FinInstnId/Nm`, else
  `UltmtDbtr`) and `DbtrAcct`; debits: `Cdtr` / `CdtrAcct` likewise. Accounts: IBAN, else the
  other identification (`Othr/Id`, v1 `PrtryAcct/Id`, BBAN, UPIC).
* References. `bank_reference` = `AcctSvcrRef` (entry, else detail; a split line prefers its own
  detail's), `end_to_end_id` = `Refs/EndToEndId` ("NOTPROVIDED" dropped),
  `customer_reference` = `Refs/AcctOwnrTxId`, `remittance` = all `RmtInf/Ustrd` joined with " ",
  else the `Strd/CdtrRefInf/Ref`s, `transaction_code` = "Domn/Fmly/SubFmly" or `Prtry/Cd`.
* Dates. `Dt` or the date part of `DtTm` as written (the bank's local date, no shift to UTC).
  `created_at` keeps the written offset (aware), or is naive when the file gives none.
* Balances. Opening = first OPBD, else first PRCD; closing = first CLBD; each in minor units of
  its own `Amt/@Ccy`. Other balance types are not read. Statement currency = `Acct/Ccy`, else the
  opening/closing balance's, else the first entry's.
* Balance check. camt.053, and camt.052 when it has both balances: opening + booked lines (each
  entry counted once) == closing -> "ok", else "mismatch" and a `balance_mismatch` warning (also
  when a balance or booked entry is in another currency than the statement). A camt.053 without
  opening or closing gets "not_applicable" and a `balance_missing` warning; camt.054 and camt.052
  without both balances are "not_applicable".
* Transaction summary. `TxsSummry/TtlNtries` gives `control_count` (NbOfNtries) and
  `control_total_minor` (Sum, the unsigned total of the entries); those, the net total and the
  credit/debit totals are checked against the entries: any difference is a `summary_mismatch`
  warning.
* Amounts. Exact, via `to_minor`: extra decimals are accepted only when they are zeros
  ("27.050" EUR -> 2705), anything else is ParseError("amount_precision").

`render` writes a camt.053.001.08 document: one `Stmt` per Statement (OPBD/CLBD balances, the
TxsSummry control figures when the statement has them) and one `Ntry` per line, so that `parse`
gives back the same figures and references. A line's `entry_reference` is written as `NtryRef`;
as `parse` falls back to `AcctSvcrRef`, a line without one comes back with its bank reference.
Remittance is written as one `Ustrd` however long (the schema allows 140 characters).
"""

from __future__ import annotations

import datetime as dt
import io
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lxml import etree

from ingest.files.amounts import AmountError, currency_exponent, to_minor
from ingest.files.records import (
    ParsedFile,
    ParseError,
    Statement,
    StatementLine,
    Warning_,
    open_source,
)

FORMAT = "camt"
KIND = "bank_statement"

_NS_RE = re.compile(r"urn:iso:std:iso:20022:tech:xsd:camt\.05([234])\.001\.(\d{2})")
_SNIFF_RE = re.compile(rb"urn:iso:std:iso:20022:tech:xsd:camt\.05[234]\.|BkToCstmr")
# message-type digit -> (message_type, statement element)
_MESSAGES = {"2": ("camt.052", "Rpt"), "3": ("camt.053", "Stmt"), "4": ("camt.054", "Ntfctn")}
_STATUSES = {"BOOK": "booked", "PDNG": "pending", "FUTR": "pending", "INFO": "info"}
_CREDIT, _DEBIT = "CRDT", "DBIT"
_NOT_PROVIDED = frozenset({"NOTPROVIDED", "NOT PROVIDED"})

# Local names of every camt element the parser reads. `_LOCAL` maps a tag as lxml spells it -
# "{urn:...camt.053.001.02}Amt", or "Amt" when the default namespace was dropped (see
# `_PlainTags`) - to the interned local name: one dict lookup per child in the hot loop.
_NAMES = (
    "Acct", "AcctOwnrTxId", "AcctSvcrRef", "Agt", "Amt", "AmtDtls", "BBAN", "BIC", "BICFI",
    "BkTxCd", "Bal", "BookgDt", "BrnchId", "Ccy", "Cd", "CdOrPrtry", "CdtDbtInd", "Cdtr",
    "CdtrAcct", "CdtrRefInf", "CreDtTm", "CtctDtls", "Dbtr", "DbtrAcct", "Domn", "Dt", "DtTm",
    "ElctrncSeqNb", "EndToEndId", "FinInstnId", "Fmly", "FrDtTm", "FrToDt", "IBAN", "Id",
    "LglSeqNb", "Nm", "NbOfNtries", "Ntry", "NtryDtls", "NtryRef", "Othr", "PrtryAcct", "Prtry",
    "Pty", "Ref", "Refs", "RltdPties", "RmtInf", "Strd", "SubFmlyCd", "Sts", "Sum", "Svcr",
    "ToDtTm", "Tp", "TtlCdtNtries", "TtlDbtNtries", "TtlNetNtry", "TtlNetNtryAmt", "TtlNtries",
    "TxAmt", "TxDtls", "TxsSummry", "UPIC", "UltmtCdtr", "UltmtDbtr", "Ustrd", "ValDt",
    "Stmt", "Rpt", "Ntfctn",
)
_LOCAL: dict[Any, str] = {name: name for name in _NAMES}
_KNOWN_NAMESPACES: set[str] = set()


def _register_namespace(ns: str) -> None:
    if ns not in _KNOWN_NAMESPACES:
        _LOCAL.update({f"{{{ns}}}{name}": name for name in _NAMES})
        _KNOWN_NAMESPACES.add(ns)


# --- sniff -----------------------------------------------------------------------------------


def sniff(head: bytes, name: str) -> bool:
    """A camt.052/053/054 namespace or a BkToCstmr* message in the first 4 KiB."""
    return _SNIFF_RE.search(head[:4096]) is not None


# --- parse: the document -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Document:
    ns: str
    message_type: str  # "camt.053"
    message_name: str  # "BkToCstmrStmt"
    record_name: str  # "Stmt"


def parse(source: bytes | Path, name: str | None = None, *, fast: bool | None = None) -> ParsedFile:
    """`fast`: None reads a big file (`camt_fast.MIN_BYTES`) through the fast lane when it can,
    True tries the fast lane whatever the size, False never does. Either way the answer is the
    same: the fast lane declines what it cannot read exactly as the streaming parser does."""
    with open_source(source) as fh:
        document = _read_document(fh)
        parsed = _parse_fast(source, document, fast)
        if parsed is not None:
            return parsed
        fh.seek(0)
        return _Reader(document).read(_PlainTags(fh, document.ns))


def _parse_fast(source: bytes | Path, document: _Document, fast: bool | None) -> ParsedFile | None:
    from ingest.files.formats import camt_fast

    if fast is False:
        return None
    if isinstance(source, Path):
        if not fast and source.stat().st_size < camt_fast.MIN_BYTES:
            return None
        data = source.read_bytes()
    else:
        data = source if isinstance(source, bytes) else bytes(source)
        if not fast and len(data) < camt_fast.MIN_BYTES:
            return None
    runs = camt_fast.prepare(data, document.record_name)
    if runs is None:
        return None
    reader = _RunReader(document, runs)
    try:
        parsed = reader.read(_PlainTags(io.BytesIO(camt_fast.skeleton(data, runs)), document.ns))
    except (ParseError, camt_fast.Decline):  # the streaming parser says what is wrong, and where
        return None
    return reader.finish(parsed)


def _syntax_error(exc: etree.LxmlError) -> ParseError:
    line = getattr(exc, "lineno", None)
    message = getattr(exc, "msg", None) or str(exc)
    return ParseError("xml_syntax", message, f"line {line}" if line else None)


def _read_document(fh: IO[bytes]) -> _Document:
    """Reads up to the message element: is this a camt.052/053/054 Document?"""
    parser = etree.XMLPullParser(
        events=("start",), resolve_entities=False, no_network=True, load_dtd=False
    )
    starts: list[Any] = []
    try:
        while len(starts) < 2:
            chunk = fh.read(65536)
            if not chunk:
                parser.close()
                break
            parser.feed(chunk)
            starts.extend(element for _event, element in parser.read_events())
    except etree.LxmlError as exc:
        raise _syntax_error(exc) from None
    root = starts[0]
    if root.getroottree().docinfo.doctype:
        raise ParseError("not_camt", "a DOCTYPE is not allowed in a camt document", "line 1")
    qname = etree.QName(root)
    match = _NS_RE.fullmatch(qname.namespace or "")
    if qname.localname != "Document" or not match:
        raise ParseError(
            "not_camt",
            f"root element {root.tag!r} is not a camt.052/053/054 Document",
            f"/{qname.localname}",
        )
    message = starts[1] if len(starts) > 1 else None
    if message is None or message.getparent() is not root or not str(message.tag).startswith(
        f"{{{qname.namespace}}}BkToCstmr"
    ):
        raise ParseError("not_camt", "the Document holds no BkToCstmr* message", "/Document")
    message_type, record_name = _MESSAGES[match.group(1)]
    _register_namespace(qname.namespace)
    return _Document(qname.namespace, message_type, etree.QName(message).localname, record_name)


class _PlainTags:
    """The file as read by the main pass, its root's default camt namespace made a prefixed one.

    Why: lxml formats a "{namespace}Tag" string at every `.tag`, and reading ~30 tags per entry
    is most of the parser's time; un-namespaced tags cost about half. The rewrite only renames
    the declaration in the root's start tag (`xmlns="urn:..."` -> `xmlns:chnsN="urn:..."`, same
    line count); `_LOCAL` knows both spellings of every tag, so a file it does not apply to
    (a prefixed root, a root start tag beyond the first 64 KiB) parses the same, only slower.
    """

    def __init__(self, fh: IO[bytes], ns: str):
        self.fh = fh
        head = fh.read(65536)
        declaration = re.compile(
            rb"(?<=\s)xmlns(?=\s*=\s*([\"'])" + re.escape(ns.encode()) + rb"\1)"
        )
        prefix = next((p for p in (b"chns%d" % n for n in range(100)) if p not in head), None)
        self.pending = declaration.sub(b"xmlns:" + prefix, head, count=1) if prefix else head

    def read(self, size: int = -1) -> bytes:
        if self.pending:
            size = len(self.pending) if size < 0 else size
            chunk, self.pending = self.pending[:size], self.pending[size:]
            return chunk
        return self.fh.read(size)


# --- parse: small readers --------------------------------------------------------------------


def _text(element: Any) -> str | None:
    text = element.text
    if text:
        text = text.strip()
        return text or None
    return None


def _child(element: Any, name: str) -> Any:
    for child in element:
        if _LOCAL.get(child.tag) == name:
            return child
    return None


def _descend(element: Any, *names: str) -> Any:
    for name in names:
        if element is None:
            return None
        element = _child(element, name)
    return element


def _descend_text(element: Any, *names: str) -> str | None:
    element = _descend(element, *names)
    return None if element is None else _text(element)


_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}(?!\d)")  # a date, or a date-time's start
_DATE_NAMES = frozenset({"Dt", "DtTm"})
_DATES: dict[str, dt.date | None] = {}


def _date(text: str | None, where: str) -> dt.date | None:
    """The date part of an ISODate or ISODateTime, as written (cached: statements repeat them)."""
    if text is None:
        return None
    if text in _DATES:
        return _DATES[text]
    stripped = text.strip()
    try:
        if stripped and not _DATE_RE.match(stripped):
            raise ValueError(text)
        found = dt.date.fromisoformat(stripped[:10]) if stripped else None
    except ValueError:
        raise ParseError("bad_date", f"{stripped!r} is not a date", where) from None
    if len(_DATES) > 100_000:
        _DATES.clear()
    _DATES[text] = found
    return found


def _date_choice(element: Any, where: str) -> dt.date | None:
    """`BookgDt`, `ValDt`, `Bal/Dt`: a `Dt` or a `DtTm` child."""
    for child in element:
        if _LOCAL.get(child.tag) in _DATE_NAMES:
            return _date(child.text, where)
    return None


_DATETIME_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:[.,](\d+))?(Z|[+-]\d{2}:?\d{2})?"
)


def _datetime(text: str | None, where: str) -> dt.datetime | None:
    if text is None:
        return None
    match = _DATETIME_RE.fullmatch(text)
    try:
        if not match:
            raise ValueError(text)
        base, fraction, offset = match.groups()
        # Python reads at most 6 fraction digits; banks write up to 9.
        micro = f".{(fraction + '000000')[:6]}" if fraction else ""
        return dt.datetime.fromisoformat(base + micro + (offset or ""))
    except ValueError:
        raise ParseError("bad_datetime", f"{text!r} is not a date-time", where) from None


def _minor(text: str | None, currency: str | None, where: str) -> int:
    if currency is None:
        raise ParseError("missing_field", "amount has no Ccy attribute", where + "/@Ccy")
    if text is None:
        raise ParseError("missing_field", "amount is empty", where)
    try:
        return to_minor(text, currency)
    except AmountError as exc:
        raise ParseError(exc.reason, str(exc), where) from None


def _signed_amount(amount: Any, indicator: str | None, where: str) -> tuple[int, str]:
    """(signed minor units, currency) of an `Amt` element with its `CdtDbtInd`."""
    if amount is None:
        raise ParseError("missing_field", "no Amt", where + "/Amt")
    currency = amount.get("Ccy")
    minor = _minor(amount.text, currency, where + "/Amt")
    if indicator == _CREDIT:
        return minor, sys.intern(currency)
    if indicator == _DEBIT:
        return -minor, sys.intern(currency)
    if indicator is None:
        raise ParseError("missing_field", "no CdtDbtInd", where + "/CdtDbtInd")
    raise ParseError("bad_value", f"CdtDbtInd {indicator!r} is not CRDT/DBIT", where + "/CdtDbtInd")


def _account_id(account: Any) -> str | None:
    """`.../Acct/Id`: the IBAN, else the other identification's Id (or BBAN/UPIC text)."""
    ident = _child(account, "Id")
    if ident is None:
        return None
    for scheme in ident:
        name = _LOCAL.get(scheme.tag)
        if name in ("IBAN", "BBAN", "UPIC"):
            return _text(scheme)
        if name in ("Othr", "PrtryAcct"):
            return _descend_text(scheme, "Id")
    return None


_NOT_PARTY_NAMES = frozenset({"CtctDtls", "BrnchId"})


def _party_name(party: Any) -> str | None:
    """`Nm` of a party: v2-v7 `Dbtr/Nm`, v8 `Dbtr/Pty/Nm` or `Dbtr/Agt/FinInstnId/Nm`."""
    for element in party.iter("{*}Nm"):  # C-level search; skip a contact's or branch's name
        if _LOCAL.get(element.getparent().tag) not in _NOT_PARTY_NAMES:
            return _text(element)
    return None


# credit? -> (party, its account, ultimate party) on the other side
_SIDES = {True: ("Dbtr", "DbtrAcct", "UltmtDbtr"), False: ("Cdtr", "CdtrAcct", "UltmtCdtr")}


def _counterparty(parties: Any, credit: bool) -> tuple[str | None, str | None]:
    """(name, account) of the other side: the debtor of a credit, the creditor of a debit."""
    if parties is None:
        return None, None
    party_tag, account_tag, ultimate_tag = _SIDES[credit]
    name = account = ultimate = None
    for child in parties:
        tag = _LOCAL.get(child.tag)
        if tag == party_tag:
            name = _party_name(child)
        elif tag == account_tag:
            account = _account_id(child)
        elif tag == ultimate_tag:
            ultimate = _party_name(child)
    name = name or ultimate
    # Statements repeat their counterparties: share one string per distinct value.
    return (sys.intern(name) if name else None), (sys.intern(account) if account else None)


def _bank_code(code: Any) -> str | None:
    """`BkTxCd` as "PMNT/RCDT/ESCT" (Domn/Cd, Fmly/Cd, Fmly/SubFmlyCd), else `Prtry/Cd`."""
    domain: list[str] = []
    proprietary = None
    in_proprietary = False
    # One C-level pass in document order: Domn's codes come first, Prtry's after.
    for element in code.iter("{*}Domn", "{*}Prtry", "{*}Cd", "{*}SubFmlyCd"):
        name = _LOCAL.get(element.tag)
        if name == "Cd" or name == "SubFmlyCd":
            text = _text(element)
            if in_proprietary:
                proprietary = proprietary or text
            elif text:
                domain.append(text)
        else:
            in_proprietary = name == "Prtry"
    return sys.intern("/".join(domain)) if domain else proprietary


def _remittance(info: Any) -> str | None:
    """All `Ustrd` joined with " ", else the structured creditor references."""
    unstructured: list[str] = []
    references: list[str] = []
    for child in info:
        name = _LOCAL.get(child.tag)
        if name == "Ustrd":
            text = _text(child)
            if text:
                unstructured.append(text)
        elif name == "Strd" and not unstructured:
            reference = _descend_text(child, "CdtrRefInf", "Ref")
            if reference:
                references.append(reference)
    return " ".join(unstructured or references) or None


# --- parse: entries ----------------------------------------------------------------------------

# _read_detail's answer, in this order
_Detail = tuple  # (Amt element, CdtDbtInd, AcctSvcrRef, EndToEndId, AcctOwnrTxId,
#                   RltdPties element, remittance, bank code)
_NO_DETAIL: _Detail = (None,) * 8


def _read_detail(element: Any) -> _Detail:
    """What a line needs from one `TxDtls`."""
    amount = indicator = bank_ref = end_to_end = owner_ref = parties = remittance = code = None
    amount_details = None
    for child in element:
        name = _LOCAL.get(child.tag)
        if name is None:
            continue
        if name == "Refs":
            for ref in child:
                ref_name = _LOCAL.get(ref.tag)
                if ref_name == "EndToEndId":
                    end_to_end = _text(ref)
                elif ref_name == "AcctSvcrRef":
                    bank_ref = _text(ref)
                elif ref_name == "AcctOwnrTxId":
                    owner_ref = _text(ref)
        elif name == "RltdPties":
            parties = child
        elif name == "RmtInf":
            remittance = _remittance(child)
        elif name == "BkTxCd":
            code = _bank_code(child)
        elif name == "Amt":
            amount = child
        elif name == "CdtDbtInd":
            indicator = _text(child)
        elif name == "AmtDtls":
            amount_details = child
    if end_to_end is not None and end_to_end.upper() in _NOT_PROVIDED:
        end_to_end = None
    if amount is None and amount_details is not None:
        amount = _descend(amount_details, "TxAmt", "Amt")
    return amount, indicator, bank_ref, end_to_end, owner_ref, parties, remittance, code


def _read_entry(ntry: Any) -> tuple:
    """(signed minor, currency, CdtDbtInd, status code, booking date, value date, NtryRef,
    AcctSvcrRef, bank code, TxDtls elements) of one `Ntry`; error locations are relative."""
    amount = indicator = status = booking = value = entry_ref = bank_ref = code = None
    details: list[Any] = []
    for child in ntry:
        name = _LOCAL.get(child.tag)
        if name is None:
            continue
        if name == "Amt":
            amount = child
        elif name == "CdtDbtInd":
            indicator = _text(child)
        elif name == "Sts":
            status = child
        elif name == "BookgDt":
            booking = _date_choice(child, "/BookgDt")
        elif name == "ValDt":
            value = _date_choice(child, "/ValDt")
        elif name == "AcctSvcrRef":
            bank_ref = _text(child)
        elif name == "BkTxCd":
            code = _bank_code(child)
        elif name == "NtryDtls":
            details.extend(d for d in child if _LOCAL.get(d.tag) == "TxDtls")
        elif name == "NtryRef":
            entry_ref = _text(child)
        elif name == "TxDtls":  # camt v1 puts TxDtls straight under Ntry
            details.append(child)
    minor, currency = _signed_amount(amount, indicator, "")
    if status is None:
        raise ParseError("missing_field", "no Sts", "/Sts")
    # v1-v7: <Sts>BOOK</Sts>; v8: <Sts><Cd>BOOK</Cd></Sts>
    status_code = _text(status[0]) if len(status) else _text(status)
    return (
        minor, currency, indicator, status_code, booking, value, entry_ref, bank_ref, code, details
    )


def _split_amounts(
    minor: int, currency: str, indicator: str, details: list[_Detail]
) -> list[int] | None:
    """Signed amounts of the details when they add up exactly to the entry, else None."""
    amounts = []
    for number, detail in enumerate(details, 1):
        amount = detail[0]
        if amount is None or amount.get("Ccy") != currency:
            return None
        where = f"/NtryDtls/TxDtls[{number}]"
        amounts.append(_signed_amount(amount, detail[1] or indicator, where)[0])
    return amounts if sum(amounts) == minor else None


@dataclass(slots=True)
class _Totals:
    """What a statement's entries add up to, for the balance and summary checks."""

    count: int = 0
    unsigned: int = 0
    net: int = 0
    credit_count: int = 0
    credit_sum: int = 0
    debit_count: int = 0
    debit_sum: int = 0
    booked: dict[str, int] = field(default_factory=dict)  # currency -> signed booked sum
    lines: int = 0
    unknown_statuses: set[str] = field(default_factory=set)

    def add(self, minor: int, currency: str, credit: bool, status: str, code: str | None) -> None:
        self.count += 1
        self.net += minor
        if credit:
            self.credit_count += 1
            self.credit_sum += minor
            self.unsigned += minor
        else:
            self.debit_count += 1
            self.debit_sum -= minor
            self.unsigned -= minor
        if status == "booked":
            self.booked[currency] = self.booked.get(currency, 0) + minor
        elif code not in _STATUSES:
            self.unknown_statuses.add(str(code))


def _add_entry_lines(
    ntry: Any, statement_index: int, totals: _Totals, out: list[StatementLine]
) -> None:
    """Appends the entry's line(s) to `out` and counts the entry in `totals`."""
    (minor, currency, indicator, status_code, booking, value, entry_ref, bank_ref, code,
     elements) = _read_entry(ntry)
    status = _STATUSES.get(status_code or "", "info")
    credit = indicator == _CREDIT
    details = [_read_detail(element) for element in elements]
    amounts = _split_amounts(minor, currency, indicator, details) if len(details) > 1 else None
    if amounts is None:
        (_amount, _indicator, detail_bank_ref, end_to_end, owner_ref, parties, remittance,
         detail_code) = details[0] if details else _NO_DETAIL
        name, account = _counterparty(parties, credit)
        out.append(StatementLine(
            statement_index=statement_index, line_number=totals.lines,
            booking_date=booking, value_date=value, amount_minor=minor, currency=currency,
            status=status, bank_reference=bank_ref or detail_bank_ref,
            customer_reference=owner_ref, end_to_end_id=end_to_end, remittance=remittance,
            counterparty_name=name, counterparty_account=account,
            transaction_code=code or detail_code, entry_reference=entry_ref or bank_ref,
        ))
        totals.lines += 1
    else:
        shared = entry_ref or bank_ref or f"#{totals.count + 1}"
        for detail, amount in zip(details, amounts, strict=True):
            (_amount, detail_indicator, detail_bank_ref, end_to_end, owner_ref, parties,
             remittance, detail_code) = detail
            name, account = _counterparty(parties, (detail_indicator or indicator) == _CREDIT)
            out.append(StatementLine(
                statement_index=statement_index, line_number=totals.lines,
                booking_date=booking, value_date=value, amount_minor=amount, currency=currency,
                status=status, bank_reference=detail_bank_ref or bank_ref,
                customer_reference=owner_ref, end_to_end_id=end_to_end, remittance=remittance,
                counterparty_name=name, counterparty_account=account,
                transaction_code=detail_code or code, entry_reference=shared,
            ))
            totals.lines += 1
    totals.add(minor, currency, credit, status, status_code)


# --- parse: statements -------------------------------------------------------------------------


@dataclass(slots=True)
class _Balance:
    minor: int
    currency: str
    date: dt.date | None


@dataclass(slots=True)
class _Header:
    statement_id: str | None = None
    electronic_sequence: str | None = None
    legal_sequence: str | None = None
    created_at: dt.datetime | None = None
    from_date: dt.date | None = None
    to_date: dt.date | None = None
    account_id: str | None = None
    currency: str | None = None
    account_name: str | None = None
    servicer_bic: str | None = None
    balances: dict[str, _Balance] = field(default_factory=dict)  # first of each type code
    summary: Any = None  # TxsSummry element


def _read_header(record: Any, where: str) -> _Header:
    header = _Header()
    balances = 0
    for child in record:
        name = _LOCAL.get(child.tag)
        if name == "Id":
            header.statement_id = _text(child)
        elif name == "ElctrncSeqNb":
            header.electronic_sequence = _text(child)
        elif name == "LglSeqNb":
            header.legal_sequence = _text(child)
        elif name == "CreDtTm":
            header.created_at = _datetime(_text(child), where + "/CreDtTm")
        elif name == "FrToDt":
            header.from_date = _date(_descend_text(child, "FrDtTm"), where + "/FrToDt/FrDtTm")
            header.to_date = _date(_descend_text(child, "ToDtTm"), where + "/FrToDt/ToDtTm")
        elif name == "Acct":
            _read_account(child, header)
        elif name == "Bal":
            balances += 1
            _read_balance(child, header, f"{where}/Bal[{balances}]")
        elif name == "TxsSummry":
            header.summary = child
    return header


def _read_account(account: Any, header: _Header) -> None:
    header.account_id = _account_id(account)
    header.currency = _descend_text(account, "Ccy")
    header.account_name = _descend_text(account, "Nm")
    institution = _descend(account, "Svcr", "FinInstnId")
    if institution is not None:
        header.servicer_bic = _descend_text(institution, "BICFI") or _descend_text(
            institution, "BIC"
        )


_BALANCE_CODES = ("OPBD", "PRCD", "CLBD")


def _read_balance(balance: Any, header: _Header, where: str) -> None:
    """Keeps the first booked opening/previous-closing/closing balance; other types are skipped."""
    kind = _child(balance, "Tp")
    code = None
    if kind is not None:  # v2+: Tp/CdOrPrtry/Cd; v1: Tp/Cd
        code = _descend_text(kind, "CdOrPrtry", "Cd") or _descend_text(kind, "Cd")
    if code not in _BALANCE_CODES or code in header.balances:
        return
    minor, currency = _signed_amount(
        _child(balance, "Amt"), _descend_text(balance, "CdtDbtInd"), where
    )
    date_choice = _child(balance, "Dt")
    date = None if date_choice is None else _date_choice(date_choice, where + "/Dt")
    header.balances[code] = _Balance(minor, currency, date)


@dataclass(slots=True)
class _Summary:
    """`TxsSummry` figures in minor units of the statement currency (None when absent)."""

    count: int | None = None
    unsigned: int | None = None
    net: int | None = None
    credit_count: int | None = None
    credit_sum: int | None = None
    debit_count: int | None = None
    debit_sum: int | None = None


def _count(element: Any, where: str) -> int | None:
    text = _descend_text(element, "NbOfNtries")
    if text is None:
        return None
    if not text.isdigit():
        raise ParseError("bad_value", f"NbOfNtries {text!r} is not a number", where)
    return int(text)


def _read_summary(summary: Any, currency: str | None, where: str) -> _Summary:
    figures = _Summary()

    def amount(element: Any, path: str, *names: str) -> int | None:
        text = _descend_text(element, *names)
        if text is None or currency is None:
            return None
        return _minor(text, currency, f"{where}/{path}/{'/'.join(names)}")

    for child in summary:
        name = _LOCAL.get(child.tag)
        if name == "TtlNtries":
            figures.count = _count(child, f"{where}/TtlNtries/NbOfNtries")
            figures.unsigned = amount(child, "TtlNtries", "Sum")
            figures.net = _net_total(child, amount)
        elif name == "TtlCdtNtries":
            figures.credit_count = _count(child, f"{where}/TtlCdtNtries/NbOfNtries")
            figures.credit_sum = amount(child, "TtlCdtNtries", "Sum")
        elif name == "TtlDbtNtries":
            figures.debit_count = _count(child, f"{where}/TtlDbtNtries/NbOfNtries")
            figures.debit_sum = amount(child, "TtlDbtNtries", "Sum")
    return figures


def _net_total(totals: Any, amount: Any) -> int | None:
    """Signed net of `TtlNtries`: v3+ `TtlNetNtry/Amt` + `CdtDbtInd`, v2 `TtlNetNtryAmt` + it."""
    net = _child(totals, "TtlNetNtry")
    if net is not None:
        value, sign_holder = amount(net, "TtlNtries/TtlNetNtry", "Amt"), net
    else:
        value, sign_holder = amount(totals, "TtlNtries", "TtlNetNtryAmt"), totals
    if value is None:
        return None
    return -value if _descend_text(sign_holder, "CdtDbtInd") == _DEBIT else value


def _summary_differences(figures: _Summary, totals: _Totals) -> list[str]:
    pairs = (
        ("TtlNtries/NbOfNtries", figures.count, totals.count),
        ("TtlNtries/Sum", figures.unsigned, totals.unsigned),
        ("TtlNtries net", figures.net, totals.net),
        ("TtlCdtNtries/NbOfNtries", figures.credit_count, totals.credit_count),
        ("TtlCdtNtries/Sum", figures.credit_sum, totals.credit_sum),
        ("TtlDbtNtries/NbOfNtries", figures.debit_count, totals.debit_count),
        ("TtlDbtNtries/Sum", figures.debit_sum, totals.debit_sum),
    )
    return [
        f"{label} says {stated}, the entries give {actual}"
        for label, stated, actual in pairs
        if stated is not None and stated != actual
    ]


class _Reader:
    """One pass over the document: entries become lines, statements close with their checks."""

    def __init__(self, document: _Document):
        self.document = document
        self.statements: list[Statement] = []
        self.lines: list[StatementLine] = []
        self.warnings: list[Warning_] = []
        self.totals = _Totals()

    def record_path(self) -> str:
        doc = self.document
        return f"/Document/{doc.message_name}/{doc.record_name}[{len(self.statements) + 1}]"

    def read(self, fh: Any) -> ParsedFile:
        ns, doc = self.document.ns, self.document
        record_name = doc.record_name
        tags = ("Ntry", f"{{{ns}}}Ntry", record_name, f"{{{ns}}}{record_name}")
        events = etree.iterparse(
            fh, events=("end",), tag=tags, resolve_entities=False, no_network=True, load_dtd=False
        )
        lines, local = self.lines, _LOCAL
        try:
            for _event, element in events:
                parent = element.getparent()
                if parent is None:  # a root named like a record: not ours (checked up front)
                    continue
                if local.get(element.tag) == "Ntry":
                    if local.get(parent.tag) != record_name:
                        raise ParseError(
                            "unexpected_element", "Ntry outside a statement", self.record_path()
                        )
                    self.add_entry(element, lines)
                else:
                    self.close_statement(element, parent)
                element.clear()  # done with it: free its subtree, then unlink the empty shell
                parent.remove(element)
        except etree.LxmlError as exc:
            raise _syntax_error(exc) from None
        if not self.statements:
            raise ParseError(
                "no_statements",
                f"the {doc.message_name} message holds no {record_name}",
                f"/Document/{doc.message_name}",
            )
        return ParsedFile(
            format=FORMAT, kind=KIND, statements=self.statements,
            statement_lines=lines, warnings=self.warnings,
        )

    def add_entry(self, ntry: Any, lines: list[StatementLine]) -> None:
        totals = self.totals
        try:
            _add_entry_lines(ntry, len(self.statements), totals, lines)
        except ParseError as exc:  # locations inside an entry are relative to it
            where = f"{self.record_path()}/Ntry[{totals.count + 1}]{exc.location or ''}"
            raise ParseError(exc.reason, exc.message, where) from None

    def close_statement(self, record: Any, parent: Any) -> None:
        doc, where = self.document, self.record_path()
        if parent.tag not in (doc.message_name, f"{{{doc.ns}}}{doc.message_name}"):
            raise ParseError("unexpected_element", f"{doc.record_name} outside the message", where)
        header = _read_header(record, where)
        if header.account_id is None:
            raise ParseError("missing_field", "the account has no identification", where + "/Acct")
        opening = header.balances.get("OPBD") or header.balances.get("PRCD")
        closing = header.balances.get("CLBD")
        currency = header.currency or next(
            (b.currency for b in (opening, closing) if b is not None), self.first_currency()
        )
        statement = Statement(
            index=len(self.statements),
            message_type=doc.message_type,
            account_id=header.account_id,
            statement_id=header.statement_id,
            sequence_number=header.electronic_sequence or header.legal_sequence,
            currency=currency,
            servicer_bic=header.servicer_bic,
            account_name=header.account_name,
            created_at=header.created_at,
            from_date=header.from_date,
            to_date=header.to_date,
            opening_balance_minor=opening.minor if opening else None,
            opening_date=opening.date if opening else None,
            closing_balance_minor=closing.minor if closing else None,
            closing_date=closing.date if closing else None,
            opening_currency=opening.currency if opening else None,
            closing_currency=closing.currency if closing else None,
        )
        self.check_summary(statement, header, where)
        self.check_balance(statement, opening, closing)
        self.warn_unknown_statuses(statement.index)
        self.statements.append(statement)
        self.totals = _Totals()

    def first_currency(self) -> str | None:
        """The currency of the statement's first line (the statement's when nothing else says)."""
        return self.lines[-self.totals.lines].currency if self.totals.lines else None

    def warn(self, code: str, message: str, statement_index: int) -> None:
        self.warnings.append(Warning_(code, message, statement_index))

    def check_summary(self, statement: Statement, header: _Header, where: str) -> None:
        if header.summary is None:
            return
        figures = _read_summary(header.summary, statement.currency, where + "/TxsSummry")
        statement.control_count = figures.count
        statement.control_total_minor = figures.unsigned
        differences = _summary_differences(figures, self.totals)
        if differences:
            self.warn("summary_mismatch", "; ".join(differences), statement.index)

    def check_balance(
        self, statement: Statement, opening: _Balance | None, closing: _Balance | None
    ) -> None:
        message_type = statement.message_type
        if message_type == "camt.054" or opening is None or closing is None:
            if message_type == "camt.053":
                self.warn(
                    "balance_missing",
                    "no booked opening (OPBD/PRCD) or closing (CLBD) balance: "
                    "the statement's arithmetic cannot be checked",
                    statement.index,
                )
            return
        currency, booked = statement.currency, self.totals.booked
        foreign = sorted(
            {c for c in booked if c != currency}
            | {b.currency for b in (opening, closing) if b.currency != currency}
        )
        expected = opening.minor + booked.get(currency or "", 0)
        if not foreign and expected == closing.minor:
            statement.balance_check = "ok"
            return
        statement.balance_check = "mismatch"
        if foreign:
            message = f"balances or booked entries in {', '.join(foreign)}, not in {currency}"
        else:
            message = (
                f"opening {opening.minor} + booked entries {expected - opening.minor} = {expected}"
                f" {currency} minor units, but the closing balance is {closing.minor}"
            )
        self.warn("balance_mismatch", message, statement.index)

    def warn_unknown_statuses(self, statement_index: int) -> None:
        for code in sorted(self.totals.unknown_statuses):
            self.warn(
                "unknown_status",
                f"entry status {code!r} is not BOOK/PDNG/FUTR/INFO: read as 'info'",
                statement_index,
            )


class _RunReader(_Reader):
    """Reads the fast lane's skeleton: each placeholder entry adds its run's lines and totals."""

    def __init__(self, document: _Document, runs: list[Any]):
        super().__init__(document)
        self.runs = runs
        self.placed: list[tuple[int, int, Any]] = []  # (statement index, first line number, run)
        self.statement_first_currency: str | None = None

    def add_entry(self, ntry: Any, lines: list[StatementLine]) -> None:
        from ingest.files.formats.camt_fast import RUN_ATTRIBUTE, Decline

        index = ntry.get(RUN_ATTRIBUTE)
        if index is None or len(ntry):  # an entry the fast lane has not read
            raise Decline
        run = self.runs[int(index)]
        totals, read = self.totals, run.totals
        self.placed.append((len(self.statements), totals.lines, run))
        if not totals.lines:
            self.statement_first_currency = read.first_currency
        read.add_to(totals)

    def first_currency(self) -> str | None:
        return self.statement_first_currency if self.totals.lines else None

    def finish(self, parsed: ParsedFile) -> ParsedFile | None:
        """The file with its lines as one Arrow table (StatementLine's columns, in order)."""
        import pyarrow as pa

        if sorted(id(run) for _s, _b, run in self.placed) != sorted(id(r) for r in self.runs) \
                or parsed.statement_lines:
            return None
        tables = []
        for statement_index, first_line, run in self.placed:
            count = run.lines.num_rows
            tables.append(run.lines
                          .add_column(0, "line_number",
                                      pa.array(range(first_line, first_line + count), pa.int64()))
                          .add_column(0, "statement_index",
                                      pa.array([statement_index] * count, pa.int64())))
        parsed.statement_table = pa.concat_tables(tables)
        return parsed


# --- render ----------------------------------------------------------------------------------

_RENDER_NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
_STATUS_CODES = {"booked": "BOOK", "pending": "PDNG", "info": "INFO"}
_IBAN_RE = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{1,30}")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _esc(text: str) -> str:
    if _NOT_XML.search(text):
        raise ValueError(f"{text!r} holds characters XML 1.0 cannot carry")
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        .replace("\r", "&#13;")
    )


def _decimal(minor: int, currency: str) -> str:
    """Unsigned decimal text of minor units: 123456 EUR -> "1234.56"."""
    exponent = currency_exponent(currency)
    digits = str(abs(minor))
    if not exponent:
        return digits
    digits = digits.rjust(exponent + 1, "0")
    return f"{digits[:-exponent]}.{digits[-exponent:]}"


def _amount_xml(minor: int, currency: str) -> str:
    indicator = _DEBIT if minor < 0 else _CREDIT
    return (
        f'<Amt Ccy="{_esc(currency)}">{_decimal(minor, currency)}</Amt>'
        f"<CdtDbtInd>{indicator}</CdtDbtInd>"
    )


def _account_xml(account: str) -> str:
    if _IBAN_RE.fullmatch(account):
        return f"<Id><IBAN>{account}</IBAN></Id>"
    return f"<Id><Othr><Id>{_esc(account)}</Id></Othr></Id>"


def _bank_code_xml(code: str) -> str:
    parts = code.split("/")
    if len(parts) == 3 and all(parts):
        domain, family, sub_family = (_esc(part) for part in parts)
        return (
            f"<BkTxCd><Domn><Cd>{domain}</Cd><Fmly><Cd>{family}</Cd>"
            f"<SubFmlyCd>{sub_family}</SubFmlyCd></Fmly></Domn></BkTxCd>"
        )
    return f"<BkTxCd><Prtry><Cd>{_esc(code)}</Cd></Prtry></BkTxCd>"


def _balance_xml(code: str, minor: int, currency: str, date: dt.date | None) -> str:
    when = f"<Dt><Dt>{date.isoformat()}</Dt></Dt>" if date else ""
    return (
        f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>"
        f"{_amount_xml(minor, currency)}{when}</Bal>"
    )


def _details_xml(line: StatementLine) -> str:
    """`NtryDtls/TxDtls` with the line's references, counterparty and remittance."""
    refs = ""
    if line.end_to_end_id:
        refs += f"<EndToEndId>{_esc(line.end_to_end_id)}</EndToEndId>"
    if line.customer_reference:
        refs += f"<AcctOwnrTxId>{_esc(line.customer_reference)}</AcctOwnrTxId>"
    parties = ""
    if line.counterparty_name or line.counterparty_account:
        party, account = ("Cdtr", "CdtrAcct") if line.amount_minor < 0 else ("Dbtr", "DbtrAcct")
        if line.counterparty_name:
            parties += f"<{party}><Pty><Nm>{_esc(line.counterparty_name)}</Nm></Pty></{party}>"
        if line.counterparty_account:
            parties += f"<{account}>{_account_xml(line.counterparty_account)}</{account}>"
    body = (
        (f"<Refs>{refs}</Refs>" if refs else "")
        + (f"<RltdPties>{parties}</RltdPties>" if parties else "")
        + (f"<RmtInf><Ustrd>{_esc(line.remittance)}</Ustrd></RmtInf>" if line.remittance else "")
    )
    return f"<NtryDtls><TxDtls>{body}</TxDtls></NtryDtls>" if body else ""


def _entry_xml(line: StatementLine) -> str:
    try:
        status = _STATUS_CODES[line.status]
    except KeyError:
        raise ValueError(f"line status {line.status!r} has no camt code") from None
    return "".join((
        "<Ntry>",
        f"<NtryRef>{_esc(line.entry_reference)}</NtryRef>" if line.entry_reference else "",
        _amount_xml(line.amount_minor, line.currency),
        f"<Sts><Cd>{status}</Cd></Sts>",
        f"<BookgDt><Dt>{line.booking_date.isoformat()}</Dt></BookgDt>"
        if line.booking_date else "",
        f"<ValDt><Dt>{line.value_date.isoformat()}</Dt></ValDt>" if line.value_date else "",
        f"<AcctSvcrRef>{_esc(line.bank_reference)}</AcctSvcrRef>" if line.bank_reference else "",
        # BkTxCd is mandatory in the schema; an empty one reads back as no code
        _bank_code_xml(line.transaction_code) if line.transaction_code else "<BkTxCd/>",
        _details_xml(line),
        "</Ntry>\n",
    ))


def _statement_head_xml(statement: Statement) -> str:
    parts = [f"<Stmt><Id>{_esc(statement.statement_id or f'STMT-{statement.index + 1}')}</Id>"]
    if statement.sequence_number:
        parts.append(f"<ElctrncSeqNb>{_esc(statement.sequence_number)}</ElctrncSeqNb>")
    if statement.created_at:
        parts.append(f"<CreDtTm>{statement.created_at.isoformat()}</CreDtTm>")
    if statement.from_date and statement.to_date:
        parts.append(
            f"<FrToDt><FrDtTm>{statement.from_date.isoformat()}T00:00:00</FrDtTm>"
            f"<ToDtTm>{statement.to_date.isoformat()}T23:59:59</ToDtTm></FrToDt>"
        )
    parts.append(f"<Acct>{_account_xml(statement.account_id)}")
    if statement.currency:
        parts.append(f"<Ccy>{_esc(statement.currency)}</Ccy>")
    if statement.account_name:
        parts.append(f"<Nm>{_esc(statement.account_name)}</Nm>")
    if statement.servicer_bic:
        parts.append(f"<Svcr><FinInstnId><BICFI>{_esc(statement.servicer_bic)}</BICFI>"
                     "</FinInstnId></Svcr>")
    parts.append("</Acct>\n")
    parts.extend(_balances_xml(statement))
    parts.append(_summary_xml(statement))
    return "".join(parts)


def _balances_xml(statement: Statement) -> Iterable[str]:
    balances = (
        ("OPBD", statement.opening_balance_minor, statement.opening_currency,
         statement.opening_date),
        ("CLBD", statement.closing_balance_minor, statement.closing_currency,
         statement.closing_date),
    )
    for code, minor, currency, date in balances:
        if minor is None:
            continue
        currency = currency or statement.currency
        if not currency:
            raise ValueError(f"statement {statement.index} has balances but no currency")
        yield _balance_xml(code, minor, currency, date) + "\n"


def _summary_xml(statement: Statement) -> str:
    figures = ""
    if statement.control_count is not None:
        figures += f"<NbOfNtries>{statement.control_count}</NbOfNtries>"
    if statement.control_total_minor is not None and statement.currency:
        figures += f"<Sum>{_decimal(statement.control_total_minor, statement.currency)}</Sum>"
    return f"<TxsSummry><TtlNtries>{figures}</TtlNtries></TxsSummry>\n" if figures else ""


def render(
    parsed: ParsedFile,
    *,
    message_id: str | None = None,
    created_at: dt.datetime | None = None,
) -> bytes:
    """A camt.053.001.08 document of the parsed file's statements and lines (see module doc)."""
    if not parsed.statements:
        raise ValueError("nothing to render: the file has no statements")
    by_statement: dict[int, list[StatementLine]] = {s.index: [] for s in parsed.statements}
    for line in parsed.statement_lines:
        try:
            by_statement[line.statement_index].append(line)
        except KeyError:
            raise ValueError(f"line of unknown statement {line.statement_index}") from None
    first = parsed.statements[0]
    when = created_at or first.created_at or dt.datetime.now(dt.UTC).replace(microsecond=0)
    # BytesIO hands its buffer to getvalue() without a copy: peak memory ~ the document once.
    out = io.BytesIO()
    out.write(
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="{_RENDER_NS}"><BkToCstmrStmt>'
        f"<GrpHdr><MsgId>{_esc(message_id or first.statement_id or 'CLEARHOUSE')}</MsgId>"
        f"<CreDtTm>{when.isoformat()}</CreDtTm></GrpHdr>\n".encode()
    )
    for statement in parsed.statements:
        out.write(_statement_head_xml(statement).encode())
        lines = by_statement[statement.index]
        for start in range(0, len(lines), 10_000):  # encode in slices: bounded temporary text
            out.write("".join(map(_entry_xml, lines[start : start + 10_000])).encode())
        out.write(b"</Stmt>\n")
    out.write(b"</BkToCstmrStmt></Document>\n")
    return out.getvalue()
