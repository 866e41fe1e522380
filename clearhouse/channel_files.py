"""What the simulated channels, banks, chain and ECB send back after a day: real-format files.

After the demo's day, every channel that captured money writes its settlement report in the
Clearhouse PSP CSV (`../shared/spec/psp-settlement-csv.md`): one row per payment and refund with
the channel's fee (the channel price in force), and one payout row per currency, paid T+N
(N = the channel's settlement window). The WeChat Pay channel also writes its own trade bill in
WeChat's v3 format. The payouts arrive at the platform's collection accounts, one bank per
currency family, each in its own statement format:

- EUR at a German bank: ISO 20022 camt.053;
- USD at a US bank: BAI2;
- every other fiat currency at a Dutch bank: SWIFT MT940;

each payout credit carrying the payout id (camt `Ustrd` and `EndToEndId`, MT940 field 86, BAI2
text). USDC paid through the crypto channel lands on Base as ERC-20 Transfer logs in
`eth_getLogs` shape (the channel reference is the transaction hash); ETH/BTC/USDT payments are
not modelled on a chain. The ECB's daily reference rates for the day are written too. Paid
x402 calls and agent-token payments write nothing here (see NO_FILES).

Everything is deterministic for a given database and day (no clock, no randomness), so a re-run
writes byte-identical files and the loader skips them by content hash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import and_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ingest.files import formats
from ingest.files.records import ChainLog, FxRate, ParsedFile, PspLine, Statement, StatementLine
from serving.services.payments import price_in_force
from warehouse.models import Channel, Payment, Refund
from warehouse.money import fee_minor

CAPTURED = ("success", "refunded", "partially_refunded", "refunding")
# Channels that send no file back: x402 settles on chain (serving/x402/chain.py exports its
# Transfer logs) and agent tokens move money between merchants inside the platform.
NO_FILES = ("x402", "agent_token")

# The platform's collection accounts, by the currency they take.
BANKS = {
    "camt": {"account": "DE89370400440532013000", "bic": "COBADEFFXXX", "name": "Clearhouse EUR"},
    "bai2": {"account": "4455667788", "bic": "SVBKUS6SXXX", "name": "Clearhouse USD"},
    "mt940": {"account": "NL91ABNA0417164300", "bic": "ABNANL2AXXX", "name": "Clearhouse FX"},
}
USDC_ON_BASE = "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"
PLATFORM_ADDRESS = "0x" + hashlib.sha256(b"clearhouse-platform-base").hexdigest()[:40]
BASE_NETWORK = "eip155:8453"
# The simulated day's euro reference rates: the ECB's of 2026-10-30 (the ECB does not publish
# TWD; TWD amounts stay in TWD).
# TWD is not an ECB currency; the demo's file carries a rate for it so that every demo currency
# converts into the merchants' settlement currencies (production would load a second source).
DEMO_ECB_RATES = {"USD": "1.1172", "JPY": "175.68", "GBP": "0.8338", "CNY": "7.4326",
                  "HKD": "8.7652", "CHF": "0.9194", "SGD": "1.4282", "TWD": "35.871"}


def bank_for(currency: str) -> str | None:
    if currency == "EUR":
        return "camt"
    if currency == "USD":
        return "bai2"
    if currency in ("USDC", "USDT", "ETH", "BTC"):
        return None
    return "mt940"


@dataclass
class _Event:
    kind: str  # payment | refund
    channel_id: str
    channel_reference: str | None
    merchant_reference: str
    at: dt.datetime
    currency: str
    gross: int
    fee: int


def _fee(session: Session, channel_id: str, currency: str, amount: int,
         at: dt.datetime) -> int:
    """The channel's fee: its price in force at the capture (no price: no fee)."""
    price = price_in_force(session, subject_type="channel", subject_id=channel_id,
                           currency=currency, at=at)
    return fee_minor(amount, price.rate_bps, price.fixed_minor or 0) if price else 0


def _naive(value: dt.datetime) -> dt.datetime:
    """Naive UTC, as the file records carry times."""
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def _events(session: Session, channels: dict[str, Channel], start: dt.datetime,
            end: dt.datetime) -> list[_Event]:
    silent = [c.id for c in channels.values() if c.channel_type in NO_FILES]
    events = []
    payments = session.scalars(select(Payment).where(and_(
        Payment.captured_at >= start, Payment.captured_at < end, Payment.status.in_(CAPTURED),
        Payment.channel_id.is_not(None), Payment.channel_id.not_in(silent),
        Payment.payment_method_type != "wallet")))
    for p in payments:
        channel_id, captured_at = p.channel_id, p.captured_at
        assert channel_id is not None and captured_at is not None  # the query's filters
        events.append(_Event("payment", channel_id, p.channel_reference, p.id,
                             _naive(captured_at), p.currency, p.amount_minor,
                             _fee(session, channel_id, p.currency, p.amount_minor, captured_at)))
    rows = session.execute(select(Refund, Payment.channel_id).join(
        Payment, Payment.id == Refund.payment_id).where(and_(
            Refund.succeeded_at >= start, Refund.succeeded_at < end,
            Refund.status == "succeeded", Payment.channel_id.is_not(None),
            Payment.channel_id.not_in(silent), Payment.payment_method_type != "wallet")))
    for refund, channel_id in rows:
        assert channel_id is not None and refund.succeeded_at is not None  # the query's filters
        # The simulated channels keep their fee on refunds (as most card acquirers do).
        events.append(_Event("refund", channel_id, refund.channel_reference, refund.id,
                             _naive(refund.succeeded_at), refund.currency, -refund.amount_minor, 0))
    events.sort(key=lambda e: (e.channel_id, e.at, e.merchant_reference))
    return events


def payout_id(channel_id: str, currency: str, day: dt.date) -> str:
    return f"po_{channel_id.removeprefix('ch_')}_{currency.lower()}_{day:%Y%m%d}"


def write_day(engine: Engine, landing: Path, day: dt.date) -> dict[str, int]:
    """Write the day's channel, bank, chain and FX files into `landing/<source>/`; returns the
    number of files per source."""
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    with Session(engine) as session:
        channels = {c.id: c for c in session.scalars(select(Channel))}
        events = _events(session, channels, start, start + dt.timedelta(days=1))
        # Opening balances of the collection accounts: every earlier payout (deterministic).
        earlier = _events(session, channels, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), start)
    written: dict[str, int] = defaultdict(int)
    payouts = _write_psp_files(landing, day, channels, events, written)
    _write_bank_statements(landing, day, channels, payouts, _payout_totals(channels, earlier),
                           written)
    _write_wechat_bill(landing, day, channels, events, written)
    _write_chain_logs(landing, day, channels, events, written)
    _write(landing / "fx" / f"eurofxref_{day.isoformat()}.csv", formats.module("ecb").render(
        ParsedFile(format="ecb_fx", kind="fx_rates", fx_rates=[
            FxRate(day, "EUR", code, rate, "ecb") for code, rate in DEMO_ECB_RATES.items()]),
        fmt="csv"), written, "fx")
    return dict(written)


def _write(path: Path, data: bytes, written: dict, source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A re-run writes the same bytes; the loader recognises them by hash and skips them.
    path.write_bytes(data)
    written[source] += 1


def _payout_totals(channels, events: list[_Event]) -> dict[tuple[str, str], int]:
    """Net paid per (bank format, currency) by all payouts of earlier days."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for e in events:
        bank = bank_for(e.currency)
        if bank and channels[e.channel_id].channel_type != "crypto":
            totals[(bank, e.currency)] += e.gross - e.fee
    return totals


def _write_psp_files(landing, day, channels, events, written) -> list[tuple[str, str, int,
                                                                             dt.date]]:
    by_channel: dict[str, list[_Event]] = defaultdict(list)
    for e in events:
        if channels[e.channel_id].channel_type != "crypto":  # crypto settles on chain
            by_channel[e.channel_id].append(e)
    payouts = []
    for channel_id, items in sorted(by_channel.items()):
        window = channels[channel_id].settlement_window_days or 0
        pay_day = day + dt.timedelta(days=window)
        lines: list[PspLine] = []
        net: dict[str, int] = defaultdict(int)
        for e in items:
            pid = payout_id(channel_id, e.currency, day)
            net[e.currency] += e.gross - e.fee
            lines.append(PspLine(
                line_number=len(lines) + 2, record_type=e.kind, channel=channel_id,
                channel_reference=e.channel_reference, merchant_reference=e.merchant_reference,
                transaction_at=e.at, currency=e.currency, gross_minor=e.gross, fee_minor=e.fee,
                net_minor=e.gross - e.fee, payout_id=pid, payout_date=pay_day))
        for currency, amount in sorted(net.items()):
            pid = payout_id(channel_id, currency, day)
            lines.append(PspLine(
                line_number=len(lines) + 2, record_type="payout", channel=channel_id,
                channel_reference=None, merchant_reference=None,
                transaction_at=dt.datetime(pay_day.year, pay_day.month, pay_day.day, 6),
                currency=currency, gross_minor=amount, fee_minor=0, net_minor=amount,
                payout_id=pid, payout_date=pay_day))
            payouts.append((channel_id, currency, amount, pay_day))
        name = f"{channel_id}_{day.isoformat()}.csv"
        _write(landing / "psp" / name, formats.module("psp_csv").render(
            ParsedFile(format="psp_csv", kind="psp_bill", psp_lines=lines)), written, "psp")
    return payouts


def _write_bank_statements(landing, day, channels, payouts, opening_totals, written) -> None:
    by_bank: dict[tuple[str, str], list] = defaultdict(list)
    for channel_id, currency, amount, pay_day in payouts:
        bank = bank_for(currency)
        if bank:
            by_bank[(bank, currency)].append((channel_id, amount, pay_day))
    for (bank, currency), items in sorted(by_bank.items()):
        info = BANKS[bank]
        opening = opening_totals.get((bank, currency), 0)
        pay_day = max(d for _c, _a, d in items)
        lines: list[StatementLine] = []
        for channel_id, amount, value_day in items:
            pid = payout_id(channel_id, currency, day)
            lines.append(StatementLine(
                statement_index=0, line_number=len(lines), booking_date=value_day,
                value_date=value_day, amount_minor=amount, currency=currency,
                bank_reference=f"B{hashlib.sha256(pid.encode()).hexdigest()[:14].upper()}",
                # The payout id where each format carries it: camt EndToEndId, MT940 :86:
                # /EREF/ (its :61: customer reference holds 16 characters), BAI2 customer
                # reference (BAI2 has no end-to-end field).
                customer_reference=pid if bank == "bai2" else pid[:16],
                end_to_end_id=pid, remittance=f"PAYOUT {pid}",
                counterparty_name=channels[channel_id].name,
                transaction_code={"camt": "PMNT/RCDT/ESCT", "bai2": "195", "mt940": "NTRF"}[bank]))
        closing = opening + sum(x.amount_minor for x in lines)
        account = info["account"] if bank != "mt940" else f"{info['account']}{currency}"
        statement = Statement(
            index=0, message_type="camt.053" if bank == "camt" else bank, account_id=account,
            statement_id=f"{pay_day:%Y%m%d}-{currency}", sequence_number=f"{pay_day:%Y%j}",
            currency=currency, servicer_bic=info["bic"], account_name=info["name"],
            created_at=dt.datetime(pay_day.year, pay_day.month, pay_day.day, 6),
            from_date=pay_day, to_date=pay_day, opening_balance_minor=opening,
            opening_date=pay_day, closing_balance_minor=closing, closing_date=pay_day,
            balance_check="ok")
        suffix = {"camt": "xml", "bai2": "bai2", "mt940": "sta"}[bank]
        _write(landing / "bank" / f"{bank}_{currency}_{pay_day.isoformat()}.{suffix}",
               formats.module(bank).render(ParsedFile(
                   format=bank, kind="bank_statement", statements=[statement],
                   statement_lines=lines)), written, "bank")


def _write_wechat_bill(landing, day, channels, events, written) -> None:
    lines = [e for e in events if channels[e.channel_id].channel_type == "wechat_pay"]
    if not lines:
        return
    bill = [PspLine(
        line_number=i + 2, record_type=e.kind, channel="wechat_pay",
        channel_reference=e.channel_reference, merchant_reference=e.merchant_reference,
        transaction_at=e.at, currency=e.currency, gross_minor=e.gross, fee_minor=e.fee,
        net_minor=e.gross - e.fee, status="SUCCESS" if e.kind == "payment" else "REFUND")
        for i, e in enumerate(lines)]
    _write(landing / "psp" / f"wechatpay_tradebill_ALL_{day.isoformat()}.csv",
           formats.module("wechat").render(ParsedFile(format="wechat", kind="psp_bill",
                                                      psp_lines=bill)), written, "psp")


def _write_chain_logs(landing, day, channels, events, written) -> None:
    usdc = [e for e in events if channels[e.channel_id].channel_type == "crypto"
            and e.currency == "USDC" and e.kind == "payment" and e.channel_reference]
    if not usdc:
        return
    # One block every 2 s on Base; block numbers derived from the time, so they are stable.
    genesis = dt.datetime(2023, 6, 15)
    logs = []
    for i, e in enumerate(usdc):
        block = int((e.at - genesis).total_seconds()) // 2
        payer = "0x" + hashlib.sha256(f"payer:{e.merchant_reference}".encode()).hexdigest()[:40]
        logs.append(ChainLog(
            network=BASE_NETWORK, block_number=block,
            block_hash="0x" + hashlib.sha256(f"block:{block}".encode()).hexdigest(),
            block_timestamp=e.at.replace(microsecond=0), transaction_hash=e.channel_reference,
            log_index=i % 50,
            token_address=USDC_ON_BASE, from_address=payer, to_address=PLATFORM_ADDRESS,
            value=e.gross, removed=False))
    latest = max(x.block_number for x in logs) + 600  # the node is 20 minutes further on
    _write(landing / "chain" / f"base_usdc_{day.isoformat()}.json",
           formats.module("chain").render(
               ParsedFile(format="chain_logs", kind="chain_logs", chain_logs=logs),
               latest_block=latest, network=BASE_NETWORK), written, "chain")
