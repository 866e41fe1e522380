"""The `clearhouse` command."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from datetime import date, timedelta

from ml.cli import add_parser as add_ml_parser


def _settings():
    """The settings, or one line saying which variable is wrong (exit 1); the folders under
    HOME created."""
    from pydantic import ValidationError

    from warehouse.settings import get_settings

    try:
        settings = get_settings()
    except ValidationError as exc:
        reasons = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        sys.exit(f"clearhouse: invalid settings: {reasons}")
    settings.ensure_dirs()
    return settings


def _cli_actor() -> str:
    """Who made a change from the command line, for the audit log."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in this environment
        return "cli"


def _database_errors(func):
    """An operator command that cannot open or use the API's database ends with one line on
    stderr naming CLEARHOUSE_DATABASE_URL (never its password) and exit status 1."""

    @functools.wraps(func)
    def wrapper(args) -> None:
        from sqlalchemy.exc import ArgumentError, DBAPIError

        try:
            func(args)
        except (DBAPIError, ArgumentError) as exc:
            from sqlalchemy.engine import make_url

            from warehouse.settings import get_settings

            try:
                where = make_url(get_settings().oltp_url).render_as_string(hide_password=True)
            except ArgumentError:
                where = "(not a URL)"
            cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            sys.exit(f"clearhouse: cannot use the API database CLEARHOUSE_DATABASE_URL={where}: "
                     f"{cause[0] if cause else type(exc).__name__}")

    return wrapper


@_database_errors
def cmd_db_upgrade(_args) -> None:
    from warehouse.migrate import upgrade

    upgrade(_settings().oltp_url)
    print("database migrated to head")


@_database_errors
def cmd_admin_bootstrap(args) -> None:
    """The platform admin of --email (created once, audit-logged) and a new token for it."""
    from sqlalchemy.orm import Session

    from serving.auth import issue_operator_token
    from serving.errors import ApiError
    from serving.services.admin import bootstrap_admin
    from warehouse.connections import oltp_engine
    from warehouse.migrate import upgrade

    settings = _settings()
    upgrade(settings.oltp_url)
    with Session(oltp_engine(settings), expire_on_commit=False) as session:
        try:
            user = bootstrap_admin(session, args.email, actor=_cli_actor())
        except ApiError as exc:
            sys.exit(f"error: {exc.message}")
        session.commit()
        token = issue_operator_token(settings, user, days=args.days)
    print(json.dumps({"user_id": user.id, "email": user.email, "role": user.role, "token": token}))


@_database_errors
def cmd_merchants_create(args) -> None:
    """Register a merchant (audit-logged as the API's POST /merchants is); print its first key."""
    from pydantic import ValidationError
    from sqlalchemy.orm import Session

    from serving.errors import ApiError
    from serving.schemas import MerchantCreate
    from serving.services.admin import audit_merchant_created, create_merchant
    from warehouse.connections import oltp_engine
    from warehouse.migrate import upgrade

    try:
        body = MerchantCreate(name=args.name, agent_id=args.agent,
                              settlement_currency=args.settlement_currency)
    except ValidationError as exc:
        sys.exit("error: " + "; ".join(f"{'.'.join(map(str, error['loc']))}: {error['msg']} "
                                       f"(got {error['input']!r})" for error in exc.errors()))
    settings = _settings()
    upgrade(settings.oltp_url)
    with Session(oltp_engine(settings), expire_on_commit=False) as session:
        try:
            merchant, key = create_merchant(session, body)
            audit_merchant_created(session, merchant, actor=_cli_actor())
        except ApiError as exc:
            sys.exit(f"error: {exc.message}")
        session.commit()
    print(json.dumps({"id": merchant.id, "name": merchant.name, "api_key": key}))


@_database_errors
def cmd_audit_verify(args) -> None:
    """Walk the audit log's hash chain; exit 1 with the first bad entry when it was tampered."""
    from sqlalchemy.orm import Session

    from warehouse.audit import verify
    from warehouse.connections import oltp_engine, read_only

    with Session(read_only(oltp_engine(_settings()))) as session:
        result = verify(session, expected_head=args.head)
    if not result.ok:
        where = f" at entry {result.first_bad_id}" if result.first_bad_id is not None else ""
        print(f"audit log TAMPERED{where}: {result.reason} ({result.entries} entries read)",
              file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"ok": True, "entries": result.entries, "head": result.head}))


def cmd_serve(args) -> None:
    import uvicorn

    settings = _settings()
    uvicorn.run("serving.app:create_app", factory=True, host=args.host or settings.api_host,
                port=args.port or settings.api_port, workers=args.workers)


def cmd_pipeline(args) -> None:
    """One run of the pipeline job's partition --as-of (default today), or with --through one
    run per day from --as-of to --through, in day order (a backfill); one JSON line per run."""
    from orchestration.run import run_pipeline

    days = args.day
    as_of = args.as_of
    closes: list[date | None] = [as_of]
    if args.through:
        through = args.through
        if as_of is None or through < as_of:
            raise SystemExit("--through needs --as-of, on or before it")
        closes = [date.fromordinal(d) for d in range(as_of.toordinal(), through.toordinal() + 1)]
    for close in closes:
        try:
            result = run_pipeline(_settings(), days=days, verbose=args.verbose, as_of=close)
        except (ValueError, RuntimeError) as exc:  # the run's own log above says what failed
            raise SystemExit(f"clearhouse pipeline: {exc}") from None
        files = {str(k): v for k, v in result["statement_files"].items()}
        print(json.dumps({"as_of": close.isoformat() if close else None}
                         | {k: v for k, v in result.items() if k != "statement_files"}
                         | {"statement_files": files}), flush=True)


def cmd_dev(args) -> None:
    """`dagster dev` on the same state as the demo (Dagster's storage under HOME/dagster)."""
    import os
    import signal

    from orchestration.run import dagster_instance

    settings = _settings()
    dagster_instance(settings).dispose()  # writes HOME/dagster/dagster.yaml, sets DAGSTER_HOME
    # A shell without job control (a script's `make dev &`, an IDE task) starts background
    # commands with SIGINT ignored, and an ignored signal stays ignored across exec. `dagster dev`
    # then installs no Ctrl-C handler and maps SIGTERM to what SIGINT does, so it and its webserver,
    # daemon and code server would ignore both SIGINT and SIGTERM. Default them before the exec.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.execvp(sys.executable, [sys.executable, "-m", "dagster", "dev", "-m",
                               "orchestration.definitions", "--host", args.host, "--port",
                               str(args.port or settings.dagster_port)])


def cmd_demo(args) -> None:
    from clearhouse.demo import run_demo

    run_demo(_settings(), payments=args.payments,
             day=args.day, seed=args.seed)


HOUSEKEEPING_EVERY = timedelta(minutes=1)


def cmd_webhooks_run(args) -> None:
    """The API's background worker: every --interval seconds (or once) enqueue outbox events and
    deliver due webhooks; once a minute write off x402 calls left unsettled
    (serving.x402.booking) and prune Idempotency-Keys past their TTL."""
    import logging
    import time
    from datetime import UTC, datetime

    import httpx
    from sqlalchemy.orm import Session

    from serving.services.idempotency import prune_expired
    from serving.webhooks import run_once
    from serving.x402.booking import write_off_abandoned
    from warehouse.connections import oltp_engine
    from warehouse.migrate import upgrade

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the migration check is not news
    settings = _settings()
    upgrade(settings.oltp_url)
    engine = oltp_engine(settings)
    written_off_at = None
    with httpx.Client() as client:
        while True:
            now = datetime.now(UTC)
            result = run_once(engine, client, now, batch=args.batch)
            # once a minute, not every tick: a call is only written off after minutes, and a key
            # expires after hours
            if written_off_at is None or now - written_off_at >= HOUSEKEEPING_EVERY:
                with Session(engine) as session, session.begin():
                    result["x402_abandoned"] = write_off_abandoned(session, now)
                with Session(engine) as session, session.begin():
                    result["idempotency_keys_expired"] = prune_expired(
                        session, now, settings.idempotency_ttl_hours)
                written_off_at = now
            if args.once:
                print(json.dumps(result))
                return
            if any(result.values()):
                logging.getLogger("clearhouse.webhooks").info("%s", json.dumps(result))
            try:
                time.sleep(args.interval)
            except KeyboardInterrupt:
                return


def cmd_channels_deliver_callbacks(args) -> None:
    """Play the simulated channels: send their signed callbacks to the API."""
    from datetime import UTC, datetime

    import httpx
    from sqlalchemy.orm import Session

    from serving.channel_simulator import deliver_pending_callbacks, ensure_callback_secrets
    from warehouse.connections import oltp_engine

    settings = _settings()
    engine = oltp_engine(settings)
    with Session(engine) as session:
        ensure_callback_secrets(session)
        session.commit()
    base_url = args.api_url or f"http://{settings.api_host}:{settings.api_port}"
    with httpx.Client(base_url=base_url) as client:
        print(json.dumps(deliver_pending_callbacks(engine, client, datetime.now(UTC))))


def cmd_ingest(args) -> None:
    """Hand files to the landing zone and load them now; prints one JSON line per file.
    Exit status 1 when any file was quarantined."""
    from pathlib import Path

    from ingest.files.formats import sniff_source
    from ingest.files.loader import land, load_landing

    settings = _settings()
    todo = []
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            sys.exit(f"clearhouse ingest: {name}: no such file")
        with path.open("rb") as fh:
            source = args.source or sniff_source(fh.read(4096), path.name)
        todo.append((source, land(settings, path, source)))
    report = load_landing(settings, paths=todo)
    for outcome in report.files:
        print(json.dumps({k: v for k, v in vars(outcome).items() if v not in (None, [], {})}))
    print(json.dumps(report.summary()))
    if report.count("quarantined"):
        sys.exit(1)


def cmd_agent_research(args) -> None:
    """Research companies on a merchant's x402-priced API, paying with a token or an account."""
    from datetime import UTC, datetime
    from pathlib import Path

    from clearhouse.agent.research import run_research

    account = None
    if args.private_key:
        from eth_account import Account

        account = Account.from_key(args.private_key)
    report = Path(args.report) if args.report else (
        _settings().home_dir / "agent" / f"research_{datetime.now(UTC):%Y%m%dT%H%M%S}.md")
    summary = run_research(args.base_url, args.merchant, args.companies, token=args.token,
                           account=account, report_path=report,
                           max_per_call_minor=args.max_per_call_minor)
    spent = {code: str(money) for code, money in summary.spent().items()}
    print(json.dumps({"report": str(summary.report_path), "spent": spent,
                      "paid_calls": len(summary.paid), "refused": len(summary.refused),
                      "stopped_by": summary.stopped_by}))


def _chain_network(name: str):
    from serving.x402.networks import network

    found = network(name)
    if found is None:
        sys.exit(f"error: unknown network {name!r}")
    return found


def cmd_chain_export(args) -> None:
    """Write the simulated chain's Transfer logs of a day (default today, UTC) into the landing
    zone, one file per network that has logs (HOME/landing/chain/<network>/); one JSON line per
    file, with its path. A day without logs writes nothing and says so on stderr."""
    from datetime import UTC, datetime

    from clearhouse.sim_chain import export
    from warehouse.connections import oltp_engine

    settings = _settings()
    now = datetime.now(UTC)
    day = args.day or now.date()
    written = export(oltp_engine(settings), settings.landing_dir, now=now, days=[day])
    for done in written:
        print(json.dumps({"path": str(done.path), "logs": done.logs, "removed": done.removed,
                          "latest_block": done.latest_block}))
    if not written:
        print(f"clearhouse chain export: no Transfer logs on the simulated chain for {day} "
              f"(UTC); nothing written to {settings.landing_dir / 'chain'}", file=sys.stderr)


def cmd_chain_reorg(args) -> None:
    """Development only: drop the simulated chain's last N blocks (their transfers undone)."""
    from datetime import UTC, datetime

    from clearhouse.sim_chain import reorg
    from warehouse.connections import oltp_engine
    from warehouse.settings import DEV_ENVIRONMENTS

    settings = _settings()
    if settings.environment not in DEV_ENVIRONMENTS:
        sys.exit(f"error: chain reorg is for development and test, not {settings.environment}")
    logs = reorg(oltp_engine(settings), network=_chain_network(args.network), depth=args.depth,
                 now=datetime.now(UTC))
    print(json.dumps({"network": args.network, "depth": args.depth, "removed_logs": len(logs),
                      "transactions": [log.tx_hash for log in logs]}))


def _day(value: str) -> date:
    """A day argument (YYYY-MM-DD): a malformed one is argparse's usage line and exit 2."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {value!r}") from None


def _positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return number


def _token_days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {value!r}") from None
    if not 1 <= days <= 365:
        raise argparse.ArgumentTypeError(f"must be 1 to 365 days, got {days}")
    return days


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clearhouse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="the API's database").add_subparsers(dest="db_cmd", required=True)
    db.add_parser("upgrade", help="run migrations to head").set_defaults(func=cmd_db_upgrade)

    admin = sub.add_parser("admin", help="operators").add_subparsers(dest="admin_cmd", required=True)
    boot = admin.add_parser("bootstrap", help="create a platform admin and print its token")
    boot.add_argument("--email", default="admin@clearhouse.local")
    boot.add_argument("--days", type=_token_days, default=30,
                      help="token lifetime in days, 1-365 (as POST /users' token_days)")
    boot.set_defaults(func=cmd_admin_bootstrap)

    merchants = sub.add_parser("merchants").add_subparsers(dest="merchants_cmd", required=True)
    create = merchants.add_parser("create", help="register a merchant; prints id and API key")
    create.add_argument("name")
    create.add_argument("--agent", default=None, help="the merchant's direct agent id")
    create.add_argument("--settlement-currency", default="USD")
    create.set_defaults(func=cmd_merchants_create)

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(dest="audit_cmd",
                                                                        required=True)
    audit_verify = audit.add_parser("verify", help="check the audit log's hash chain (exit 1 if "
                                    "tampered)")
    audit_verify.add_argument("--head", default=None,
                              help="the head hash anchored earlier: also detects a truncated tail")
    audit_verify.set_defaults(func=cmd_audit_verify)

    serve = sub.add_parser("serve", help="run the API")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None, help="default: CLEARHOUSE_API_PORT or 8000")
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    pipeline = sub.add_parser("pipeline", help="run extract -> dbt -> publish (and statement files)")
    pipeline.add_argument("--day", action="append", default=[], type=_day,
                          help="write statement files for this finished day (YYYY-MM-DD)")
    pipeline.add_argument("--verbose", action="store_true", help="show Dagster's and dbt's logs")
    pipeline.add_argument("--as-of", type=_day, help="close to this day (YYYY-MM-DD): settlement periods "
                          "ending before it close, breaks age to it; default today (UTC)")
    pipeline.add_argument("--through", type=_day, help="backfill: one run per day from --as-of to this day "
                          "(YYYY-MM-DD), in order")
    pipeline.set_defaults(func=cmd_pipeline)

    hooks = sub.add_parser("webhooks", help="merchant webhooks").add_subparsers(
        dest="webhooks_cmd", required=True)
    hooks_run = hooks.add_parser("run", help="deliver outbox events to merchants' callback URLs")
    hooks_run.add_argument("--once", action="store_true", help="one pass, print a summary, exit")
    hooks_run.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
    hooks_run.add_argument("--batch", type=int, default=100, help="deliveries per pass")
    hooks_run.set_defaults(func=cmd_webhooks_run)

    chans = sub.add_parser("channels", help="the simulated channels").add_subparsers(
        dest="channels_cmd", required=True)
    callbacks = chans.add_parser("deliver-callbacks",
                                 help="send the simulated channels' signed callbacks to the API")
    callbacks.add_argument("--api-url", default=None,
                           help="default: http://CLEARHOUSE_API_HOST:CLEARHOUSE_API_PORT")
    callbacks.set_defaults(func=cmd_channels_deliver_callbacks)

    dev = sub.add_parser("dev", help="dagster dev on this state (HOME/dagster)")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=None,
                     help="default: CLEARHOUSE_DAGSTER_PORT, else 3000")
    dev.set_defaults(func=cmd_dev)

    ingest = sub.add_parser("ingest", help="load statement/bill/chain/FX files now "
                            "(copied into HOME/landing/<source>/, then loaded or quarantined)")
    ingest.add_argument("files", nargs="+", metavar="FILE")
    ingest.add_argument("--source", default=None,
                        help="landing folder (bank, psp, chain, fx, ...); default: by format")
    ingest.set_defaults(func=cmd_ingest)

    agent = sub.add_parser("agent", help="an AI agent buying per call (x402)").add_subparsers(
        dest="agent_cmd", required=True)
    research = agent.add_parser("research", help="research companies on a merchant's x402 API; "
                                "prints the report path and the spend")
    research.add_argument("--base-url", required=True, help="the Clearhouse API, e.g. "
                          "http://127.0.0.1:8000")
    research.add_argument("--merchant", required=True, help="the selling merchant's id")
    pay_with = research.add_mutually_exclusive_group(required=True)
    pay_with.add_argument("--token", help="an agent payment token (cpt_...)")
    pay_with.add_argument("--private-key", help="hex key of a funded wallet (pays x402 exact)")
    research.add_argument("--max-per-call-minor", type=_positive, default=None,
                          help="refuse any call priced above this (USDC atomic units)")
    research.add_argument("--report", default=None,
                          help="default: HOME/agent/research_<time>.md")
    research.add_argument("companies", nargs="+", metavar="COMPANY")
    research.set_defaults(func=cmd_agent_research)

    chain_cmd = sub.add_parser("chain", help="the simulated chain").add_subparsers(
        dest="chain_cmd", required=True)
    chain_export = chain_cmd.add_parser("export", help="write a day's Transfer logs into the "
                                        "landing zone (HOME/landing/chain/)")
    chain_export.add_argument("--day", default=None, type=_day,
                              help="YYYY-MM-DD (default: today, UTC)")
    chain_export.set_defaults(func=cmd_chain_export)
    chain_reorg = chain_cmd.add_parser("reorg", help="development only: drop the last N blocks "
                                       "(for trying reconciliation)")
    chain_reorg.add_argument("--depth", type=_positive, required=True, help="blocks to drop")
    chain_reorg.add_argument("--network", default="eip155:84532")
    chain_reorg.set_defaults(func=cmd_chain_reorg)

    demo = sub.add_parser("demo", help="simulate a day through the API and run the pipeline")
    demo.add_argument("--payments", type=int, default=3000)
    demo.add_argument("--day", default=None, type=_day,
                      help="the simulated day (default: yesterday, UTC)")
    demo.add_argument("--seed", type=int, default=42)
    demo.set_defaults(func=cmd_demo)
    add_ml_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
