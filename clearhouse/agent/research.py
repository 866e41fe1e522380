"""The demo's research agent: looks companies up on a merchant's x402-priced API and writes what
it learned, bought and spent as a markdown report.

Per company: the free /company/basic, then /company/detail, and /company/officers for every
second company. After a refusal that will not change for the next call (budget or funds gone, a
revoked or expired token) it stops buying and only reads what is free.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote

from clearhouse.agent.client import PayingClient, PaymentRefused, Purchase
from warehouse.money import Money

PAID_PATHS = ("/company/detail", "/company/officers")
STOP_BUYING = {"token_budget_exhausted", "insufficient_funds", "token_revoked", "token_expired",
               "token_invalid"}


@dataclass
class CompanyFindings:
    name: str
    facts: dict[str, dict | list | str] = field(default_factory=dict)  # path -> the answer
    #                                          (its JSON, or its text when it is not JSON)
    notes: list[str] = field(default_factory=list)  # refusals and failures, in words


@dataclass
class ResearchSummary:
    report_path: Path
    companies: list[CompanyFindings]
    purchases: list[Purchase]
    stopped_by: str | None  # the refusal that ended buying, if one did

    @property
    def paid(self) -> list[Purchase]:
        return [p for p in self.purchases if p.status == "paid"]

    @property
    def refused(self) -> list[Purchase]:
        return [p for p in self.purchases if p.status == "refused"]

    def spent(self) -> dict[str, Money]:
        """Money per currency, from the paid purchases."""
        totals: dict[str, int] = defaultdict(int)
        for p in self.paid:
            totals[p.currency] += p.amount_minor
        return {code: Money(minor, code) for code, minor in sorted(totals.items())}


def run_research(base_url: str, merchant_id: str, companies: list[str], *,
                 token: str | None = None, account=None, report_path: Path,
                 http=None, max_per_call_minor: int | None = None) -> ResearchSummary:
    """Research `companies` through /x402/{merchant_id}/ at base_url; write the report."""
    gateway = f"{base_url.rstrip('/')}/x402/{merchant_id}"
    findings, stopped_by = [], None
    with PayingClient(gateway, token=token, account=account, http=http,
                      max_per_call_minor=max_per_call_minor) as client:
        for i, name in enumerate(companies):
            found = CompanyFindings(name)
            findings.append(found)
            paths = ["/company/basic"]
            if stopped_by is None:
                paths += list(PAID_PATHS if i % 2 == 0 else PAID_PATHS[:1])
            for path in paths:
                try:
                    response = client.get(f"{path}?name={quote(name)}")
                except PaymentRefused as exc:
                    found.notes.append(f"{path} refused: {exc.reason} ({exc.message})")
                    if exc.reason in STOP_BUYING:
                        stopped_by = exc.reason
                        break
                    continue
                if response.status_code == 200:
                    found.facts[path] = _answer(response)
                else:
                    found.notes.append(f"{path} answered {response.status_code} (not charged)")
            if stopped_by is not None and "/company/detail" not in found.facts:
                found.notes.append("not researched further: buying stopped")
        purchases = list(client.purchases)
    summary = ResearchSummary(Path(report_path), findings, purchases, stopped_by)
    summary.report_path.parent.mkdir(parents=True, exist_ok=True)
    summary.report_path.write_text(render_report(summary, gateway, token=token, account=account))
    return summary


def _answer(response) -> dict | list | str:
    """The answer's JSON, or its text when it is not JSON (the call may have been paid for)."""
    try:
        return response.json()
    except ValueError:
        return response.text


def _facts_line(path: str, facts) -> str:
    """What a company-information answer says, in words; an answer of another shape (a seller
    whose API is not the demo's company API) as it came, so the paid calls are still reported."""
    try:
        return _company_facts_line(path, facts)
    except (AttributeError, KeyError, TypeError, ValueError):
        return json.dumps(facts, ensure_ascii=False)[:500]


def _company_facts_line(path: str, facts: dict) -> str:
    if path == "/company/basic":
        return f"{facts['sector']} company from {facts['country']}, founded {facts['founded']}"
    if path == "/company/detail":
        revenue = Money(int(facts["revenue_minor"]), facts["currency"])
        parent = f", parent {facts['parent']}" if facts.get("parent") else ""
        return (f"{facts.get('employees'):,} employees, revenue {revenue}, credit rating "
                f"{facts.get('credit_rating')}{parent}")
    if path == "/company/officers":
        return ", ".join(f"{o['role']} {o['name']}" for o in facts.get("officers", []))
    return str(facts)


def render_report(summary: ResearchSummary, gateway: str, *, token=None, account=None) -> str:
    payer = (f"agent payment token {next((p.payer for p in summary.paid if p.payer), '(unused)')}"
             if token else f"account {account.address} (x402 exact)")
    lines = ["# Company research", "",
             f"Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; data bought from {gateway}, "
             f"paid with {payer}.", ""]
    for found in summary.companies:
        lines.append(f"## {found.name}")
        for path, facts in found.facts.items():
            lines.append(f"- {path.rsplit('/', 1)[-1]}: {_facts_line(path, facts)}")
        lines += [f"- {note}" for note in found.notes]
        lines.append("")
    lines += ["## Purchases", "", "| # | resource | scheme | price | status | receipt or reason |",
              "|---|---|---|---|---|---|"]
    for i, p in enumerate(summary.purchases, 1):
        resource = unquote(p.url.split("/x402/", 1)[-1].split("/", 1)[-1])
        amount = str(Money(p.amount_minor, p.currency)) if p.currency else str(p.amount_minor)
        lines.append(f"| {i} | /{resource} | {p.scheme or '-'} | {amount} | {p.status} | "
                     f"{p.transaction or p.reason or ''} |")
    spent = summary.spent()
    total = ", ".join(str(m) for m in spent.values()) or "nothing"
    lines += ["", "## Spend", "",
              f"Spent {total} on {len(summary.paid)} paid calls; {len(summary.refused)} refused."]
    if summary.stopped_by:
        lines.append(f"Buying stopped after a refusal: {summary.stopped_by}.")
    return "\n".join(lines) + "\n"
