"""A merchant's webhook endpoint, as the demo runs it: verifies each Clearhouse-Signature with
the merchant's secret and dedupes by event id, the way a merchant's backend should."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serving import signing


class WebhookReceiver:
    def __init__(self, secrets: dict[str, str]):
        self.secrets = secrets  # merchant id -> webhook secret
        self.seen: set[str] = set()
        self.verified = self.duplicates = self.rejected = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                merchant_id = self.path.rstrip("/").rsplit("/", 1)[-1]
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    signing.verify(receiver.secrets.get(merchant_id, ""), body,
                                   self.headers.get(signing.SIGNATURE_HEADER), time.time())
                except signing.SignatureError:
                    with receiver._lock:
                        receiver.rejected += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                event_id = self.headers.get(signing.EVENT_ID_HEADER, "")
                with receiver._lock:
                    if event_id in receiver.seen:
                        receiver.duplicates += 1
                    else:
                        receiver.seen.add(event_id)
                        receiver.verified += 1
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/webhooks"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.server.server_close()
