"""psp-settlement-csv.md, rule by rule, through the loader (the landing zone's public surface)."""

from __future__ import annotations

import pytest

from ingest.files.formats import psp_csv
from ingest.files.loader import load_landing
from ingest.files.records import ParseError
from tests.dbt.reconciliation_spec.scenario import psp, row

AT = "2024-03-02T10:00:00Z"
GOOD = [row("payment", "pi_1", "pay_1", AT, "USD", 1_000, 29, "po_1", "2024-03-03"),
        row("payout", "", "", "", "USD", 971, 0, "po_1", "2024-03-03")]


def _land(settings, name, data):
    path = settings.landing_dir / "psp" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_payout_row_carrying_a_channel_reference_is_refused():
    """psp-settlement-csv.md: "`channel_reference` | the channel's id of the transaction (blank
    on payout rows)". A payout row with a channel reference breaks the format: refused with a
    reason naming its line, like every other rule of the format."""
    rows = [GOOD[0], row("payout", "pi_9", "", "", "USD", 971, 0, "po_1", "2024-03-03")]
    with pytest.raises(ParseError) as err:
        psp_csv.parse(psp(rows), "ch_x_2024-03-03.csv")
    assert err.value.location == "line 3"
    assert "channel_reference" in err.value.message


def test_a_bad_file_is_quarantined_with_its_reason_and_the_rest_of_the_batch_loads(make_settings):
    """A malformed line (net != gross - fee; an amount in major units; both references blank)
    quarantines its file with the reason and line; the other files of the batch load."""
    settings = make_settings()
    bad = {
        "ch_q1_2024-03-03.csv": (psp([GOOD[0].replace(",971,", ",970,")]), "net_mismatch"),
        "ch_q2_2024-03-03.csv": (psp([GOOD[0].replace("1000", "10.00")]), "bad_amount"),
        "ch_q3_2024-03-03.csv": (psp([GOOD[0].replace("pi_1,pay_1", ",")]), "missing_reference"),
        "ch_q4_2024-03-03.csv": (psp(GOOD).replace(b"USD", b"usd", 1), "unknown_currency"),
    }
    for name, (data, _) in bad.items():
        _land(settings, name, data)
    _land(settings, "ch_ok_2024-03-03.csv", psp(GOOD))
    report = load_landing(settings)
    outcome = {f.path.rsplit("/", 1)[-1]: f for f in report.files}
    assert outcome["ch_ok_2024-03-03.csv"].status == "loaded"
    assert outcome["ch_ok_2024-03-03.csv"].rows == 2
    for name, (_, reason) in bad.items():
        assert (outcome[name].status, outcome[name].reason, outcome[name].location) == \
            ("quarantined", reason, "line 2"), name
        assert (settings.quarantine_dir / "psp").is_dir()
