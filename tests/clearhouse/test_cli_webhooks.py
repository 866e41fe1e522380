"""`clearhouse webhooks run --once` (the background worker: webhooks, x402 write-offs) and
`clearhouse channels deliver-callbacks` (no network)."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from clearhouse.cli import main
from tests.serving.webhook_helpers import add_event, configure_webhook
from warehouse.connections import oltp_engine
from warehouse.models import Channel


def run(capsys, *argv) -> dict:
    main(list(argv))
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_webhooks_run_once_enqueues_and_attempts(make_settings, capsys):
    make_settings()
    assert run(capsys, "webhooks", "run", "--once") == {"enqueued": 0, "delivered": 0,
                                                         "retrying": 0, "dead": 0,
                                                         "x402_abandoned": 0,
                                                         "idempotency_keys_expired": 0}
    merchant = run(capsys, "merchants", "create", "Hooked")
    engine = oltp_engine()
    # No webhook secret: the attempt is counted and nothing is sent (so no network here).
    configure_webhook(engine, merchant["id"], secret=None)
    add_event(engine, merchant["id"])
    assert run(capsys, "webhooks", "run", "--once") == {"enqueued": 1, "delivered": 0,
                                                         "retrying": 1, "dead": 0,
                                                         "x402_abandoned": 0,
                                                         "idempotency_keys_expired": 0}


def test_channels_deliver_callbacks_with_nothing_pending(make_settings, capsys):
    make_settings()
    run(capsys, "admin", "bootstrap")
    assert run(capsys, "channels", "deliver-callbacks", "--api-url",
               "http://127.0.0.1:9") == {"delivered": 0, "failed": 0, "skipped": 0}
    with Session(oltp_engine()) as session:  # every simulated channel can sign
        assert all(session.scalars(select(Channel.callback_secret)))
