"""`clearhouse agent research`, `clearhouse chain export` and `clearhouse chain reorg`."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from eth_account import Account
from sqlalchemy.orm import Session

from clearhouse import cli
from clearhouse.agent import research
from clearhouse.cli import build_parser, main
from serving import cache
from serving.x402 import chain
from tests.clearhouse.x402_market import PRICES, SEPOLIA, USDC, build_market
from tests.serving.helpers import make_api
from warehouse.connections import oltp_engine
from warehouse.migrate import upgrade
from warehouse.money import Money


def lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.strip().splitlines() if line]


def test_parser_agent_research():
    args = build_parser().parse_args(["agent", "research", "--base-url", "http://api", "--merchant",
                                      "mer_1", "--token", "cpt_x.y", "Acme", "Globex"])
    assert args.func is cli.cmd_agent_research
    assert (args.base_url, args.merchant, args.token, args.private_key, args.companies) == (
        "http://api", "mer_1", "cpt_x.y", None, ["Acme", "Globex"])
    args = build_parser().parse_args(["agent", "research", "--base-url", "http://api", "--merchant",
                                      "mer_1", "--private-key", "0xab", "--max-per-call-minor",
                                      "5000", "Acme"])
    assert (args.private_key, args.token, args.max_per_call_minor) == ("0xab", None, 5000)


@pytest.mark.parametrize("argv", [
    ["agent", "research", "--base-url", "u", "--merchant", "m", "Acme"],  # no way to pay
    ["agent", "research", "--base-url", "u", "--merchant", "m", "--token", "t",
     "--private-key", "k", "Acme"],  # two ways to pay
    ["agent", "research", "--base-url", "u", "--merchant", "m", "--token", "t"],  # no company
    ["chain", "reorg"],  # depth is required
    ["chain", "reorg", "--depth", "0"],
    ["chain", "export", "--network", "eip155:1"],  # no such option
])
def test_parser_refuses(argv, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)


def test_parser_chain():
    args = build_parser().parse_args(["chain", "export", "--day", "2026-01-02"])
    assert (args.func, args.day) == (cli.cmd_chain_export, date(2026, 1, 2))
    assert build_parser().parse_args(["chain", "export"]).day is None
    args = build_parser().parse_args(["chain", "reorg", "--depth", "3"])
    assert (args.func, args.depth, args.network) == (cli.cmd_chain_reorg, 3, "eip155:84532")


@pytest.fixture
def market(make_settings, monkeypatch):
    """The in-process API; the CLI's research runs against it instead of a server."""
    cache.clear()
    settings = make_settings()
    upgrade(settings.oltp_url)
    built = build_market(make_api(settings))
    real = research.run_research
    monkeypatch.setattr(research, "run_research",
                        lambda *a, **kw: real(*a, http=built.api.client, **kw))
    yield built
    cache.clear()


def test_agent_research_with_a_token(market, capsys, tmp_path):
    issued = market.issue_token(amount_minor=1_000_000)
    capsys.readouterr()
    main(["agent", "research", "--base-url", "http://testserver", "--merchant", market.seller_id,
          "--token", issued["token"], "--report", str(tmp_path / "r.md"), "Acme", "Globex"])
    (out,) = lines(capsys)
    spent = int(market.token(issued["id"])["spent_minor"])
    assert spent == 2 * PRICES["/company/detail"] + PRICES["/company/officers"]
    assert out == {"report": str(tmp_path / "r.md"), "spent": {"USDC": str(Money(spent, "USDC"))},
                   "paid_calls": 3, "refused": 0, "stopped_by": None}
    assert "## Globex" in (tmp_path / "r.md").read_text()


def test_agent_research_with_a_private_key(market, capsys):
    account = Account.create()
    market.fund(account.address, 60_000)  # detail, then officers is refused
    capsys.readouterr()
    main(["agent", "research", "--base-url", "http://testserver", "--merchant", market.seller_id,
          "--private-key", account.key.hex(), "Acme"])
    (out,) = lines(capsys)
    assert out["spent"] == {"USDC": str(Money(PRICES["/company/detail"], "USDC"))}
    assert (out["paid_calls"], out["refused"], out["stopped_by"]) == (1, 1, "insufficient_funds")
    assert out["report"].startswith(str(market.api.settings.home_dir / "agent"))
    assert market.balance(account.address) == 60_000 - PRICES["/company/detail"]


def test_chain_export_and_reorg(make_settings, capsys):
    settings = make_settings()
    main(["db", "upgrade"])
    engine = oltp_engine(settings)
    payer = Account.create().address
    with Session(engine) as session, session.begin():
        minted = chain.mint(session, SEPOLIA, USDC.address, payer, 70_000, datetime.now(UTC))
        tx_hash = minted.tx_hash
    capsys.readouterr()

    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    main(["chain", "export", "--day", yesterday])
    out, err = capsys.readouterr()
    assert out == ""  # no logs that day, no file, and a line saying so
    assert err == (f"clearhouse chain export: no Transfer logs on the simulated chain for "
                   f"{yesterday} (UTC); nothing written to {settings.landing_dir / 'chain'}\n")
    assert not list((settings.landing_dir / "chain").rglob("*.json"))
    main(["chain", "export"])
    (exported,) = lines(capsys)
    assert (exported["logs"], exported["removed"]) == (1, 0)
    body = json.loads(Path(exported["path"]).read_text())
    # The line says where the file went: HOME/landing/chain/<network>/.
    assert Path(exported["path"]).parent == settings.landing_dir / "chain" / "eip155-84532"
    assert [log["transactionHash"] for log in body["logs"]] == [tx_hash]

    main(["chain", "reorg", "--depth", "50"])
    (reorged,) = lines(capsys)
    assert (reorged["removed_logs"], reorged["transactions"]) == (1, [tx_hash])
    with Session(engine) as session:
        assert chain.balance_of(session, SEPOLIA, USDC.address, payer) == 0
    main(["chain", "export"])
    (again,) = lines(capsys)
    assert (again["logs"], again["removed"]) == (1, 1)


def test_chain_reorg_is_for_development_only(make_settings, monkeypatch):
    production = make_settings().model_copy(update={"environment": "production"})
    monkeypatch.setattr(cli, "_settings", lambda: production)
    with pytest.raises(SystemExit, match="development and test"):
        main(["chain", "reorg", "--depth", "3"])
