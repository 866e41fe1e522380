"""The simulated chain from the operator's side: export its Transfer logs into the landing zone
(as a node's eth_getLogs would serve them) so the pipeline ingests them, and reorg it in
development to try reconciliation. The chain itself is serving/x402/chain.py."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from ingest.files.formats import chain as chain_format
from ingest.files.records import ChainLog, ParsedFile
from serving.x402 import chain
from serving.x402.networks import NETWORKS, Network
from warehouse.models import SimChainLog


@dataclass(frozen=True)
class Export:
    path: Path
    logs: int
    removed: int
    latest_block: int


def export_day(session: Session, net: Network, landing_dir: Path, day: date,
               now: datetime) -> Export | None:
    """Write the day's Transfer logs (block time in `day`, UTC) as a chain file under
    landing/chain/, the way a node's eth_getLogs returns them; a reorged log appears twice, the
    second time with removed: true. Re-exporting a day rewrites the file; ingest keeps only new
    facts, so nothing doubles.

    A log's `logIndex` is its sequence number on the simulated chain (the row id): unique within
    its block as on a real chain, and the same in every export. A node numbers a block's logs
    0..n-1, but numbering them here at export would renumber a block's logs when a transaction
    mined in it commits after an export (ingest keys a log by transaction and index)."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    first = chain.block_at(net, start)
    last = chain.block_at(net, start + timedelta(days=1)) - 1
    rows = session.scalars(select(SimChainLog).where(
        SimChainLog.network == net.caip2, SimChainLog.block_number.between(first, last))
        .order_by(SimChainLog.block_number, SimChainLog.id)).all()
    if not rows:
        return None
    head = chain.block_at(net, now)
    logs = []
    for row in rows:
        log = ChainLog(network=net.caip2, block_number=row.block_number,
                       block_hash=chain.block_hash(net, row.block_number),
                       block_timestamp=row.block_timestamp.astimezone(UTC).replace(tzinfo=None),
                       transaction_hash=row.tx_hash, log_index=row.id,
                       token_address=row.asset, from_address=row.from_address,
                       to_address=row.to_address, value=row.value, removed=False)
        logs.append(log)
        if row.removed:  # the reorg's removal notice follows the log
            logs.append(replace(log, removed=True))
    body = chain_format.render(ParsedFile(format=chain_format.FORMAT, kind=chain_format.KIND,
                                          chain_logs=logs), latest_block=head, network=net.caip2)
    folder = landing_dir / "chain" / net.caip2.replace(":", "-")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"x402_{day.isoformat()}_{head}.json"
    tmp = folder / f".{path.name}.part"  # dot files are not picked up
    tmp.write_bytes(body)
    tmp.replace(path)  # the sensor never sees half a file
    removed = sum(1 for row in rows if row.removed)
    return Export(path, len(rows), removed, head)


def days_with_logs(session: Session, net: Network) -> list[date]:
    """Every UTC day from the network's first logged block to its last (export_day skips the empty
    ones)."""
    first, last = session.execute(select(func.min(SimChainLog.block_number),
                                         func.max(SimChainLog.block_number))
                                  .where(SimChainLog.network == net.caip2)).one()
    if first is None:
        return []
    day, end = chain.block_time(net, first).date(), chain.block_time(net, last).date()
    days = []
    while day <= end:
        days.append(day)
        day += timedelta(days=1)
    return days


def export(engine: Engine, landing_dir: Path, *, now: datetime,
           days: list[date] | None = None) -> list[Export]:
    """Write a chain file per network and day that has logs (`days`: only those)."""
    written = []
    with Session(engine) as session:
        for net in NETWORKS.values():
            for day in days if days is not None else days_with_logs(session, net):
                done = export_day(session, net, landing_dir, day, now)
                if done is not None:
                    written.append(done)
    return written


def reorg(engine: Engine, *, network: Network, depth: int, now: datetime) -> list[SimChainLog]:
    """Drop the network's last `depth` blocks; returns the logs that became removed."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        return chain.reorg(session, network, depth=depth, now=now)
