"""Issue 6 item 7: "a failing blocking check stops downstream assets with a clear message"; issue
7 item 8: "failures say which expectation, how many rows". Through `clearhouse pipeline` (what
the demo and operators run): a bad raw.payments row stops dbt (it does), but the command ends
with "the pipeline run failed (a dbt test or a step)", naming neither the check nor the
expectation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from clearhouse.cli import main
from serving import risk
from serving.routing import HEALTH, clear_config_cache
from tests.serving.helpers import make_api
from warehouse.migrate import upgrade


def test_the_pipeline_command_names_the_failed_blocking_check(make_settings):
    HEALTH.reset()
    clear_config_cache()
    settings = make_settings()
    upgrade(settings.oltp_url)
    api = make_api(settings)
    try:
        _, key = api.merchant(kyc_tier=3)
        paid = api.pay(key, amount="1000")
        assert paid.status_code == 201, paid.text
        # A corrupt source row: refunded more than the amount.
        with api.engine.begin() as conn:
            conn.execute(text("UPDATE payments SET refunded_minor = amount_minor + 1"))
        today = datetime.now(UTC).date().isoformat()
        with pytest.raises(SystemExit) as stopped:
            main(["pipeline", "--as-of", today])
        message = str(stopped.value)
        # Expected: the check and its failed expectation; actual: "a dbt test or a step".
        assert "gx_raw_payments" in message, message
        assert "unrefunded_minor" in message and "1 rows" in message, message
    finally:
        risk.set_score_hook(None)
        HEALTH.reset()
        clear_config_cache()
