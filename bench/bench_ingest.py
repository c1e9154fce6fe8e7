"""Issue 2 benchmarks.

Ingestion: signed GitHub webhooks per second through the real trigger function (HMAC check, tenant lookup,
parsing, sealing, queueing into Azurite), as a ratio to raw `QueueClient.send_message` calls of the same
message size against the same Azurite. Target >= 0.8.

Cold start is measured in bench/bench_coldstart.py: a fresh process until the first answer of each ingestion
route. Timing `import function_app` alone hid the imports deferred to the first request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import statistics
import time
import uuid
from pathlib import Path

import azure.functions as func

from bench.common import Ratio

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = ROOT / "tests/fixtures/github/deployment_protection_rule.requested.json"


def ingestion(count: int = 400) -> Ratio:
    from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy

    import function_app
    from devstack.stack import start_local_stack
    from gatekeeper.events.github import parse_github
    from gatekeeper.ingest.queue import encode_message
    from gatekeeper.services import set_services

    handler = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}["github_webhook"]
    with start_local_stack() as stack:
        set_services(stack.services)
        secret = stack.secret("env:GK_CONTOSO_GITHUB_SECRET").encode()
        template = json.loads(PAYLOAD.read_text())
        requests = []
        for index in range(count):
            payload = dict(
                template,
                deployment_callback_url=template["deployment_callback_url"].replace(
                    "289782451", str(10_000_000 + index)
                ),
            )
            body = json.dumps(payload).encode()
            headers = {
                "Content-Type": "application/json",
                "X-GitHub-Event": "deployment_protection_rule",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
            }
            requests.append(func.HttpRequest("POST", "http://localhost/api/github/webhook", headers=headers, body=body))
        handler(requests[0])  # warm the tenant cache and key cache, as a running app would be

        raw_queue = stack.storage.queue(
            "bench-raw",
            message_encode_policy=BinaryBase64EncodePolicy(),
            message_decode_policy=BinaryBase64DecodePolicy(),
        )
        raw_queue.create_queue()
        # The baseline sends messages of the size the handler queues (a sealed event).
        event = parse_github("deployment_protection_rule", template, tenant_id="contoso", delivery_id=None)
        message = encode_message(stack.services.sealer, event, uuid.uuid4().hex).encode()

        def raw() -> float:
            start = time.perf_counter()
            for _ in range(count):
                raw_queue.send_message(message)
            return count / (time.perf_counter() - start)

        def real() -> float:
            start = time.perf_counter()
            for request in requests:
                response = handler(request)
                assert response.status_code == 202, response.get_body()
            return count / (time.perf_counter() - start)

        raw_rates, real_rates = [], []
        for _ in range(3):  # interleaved, so drift on a shared machine hits both alike
            raw_rates.append(raw())
            real_rates.append(real())
        set_services(None)
    return Ratio(
        "ingestion: signed GitHub events through the handler",
        statistics.median(real_rates),
        statistics.median(raw_rates),
        "events/s",
        ">= 0.8",
    )


def run() -> list[Ratio]:
    return [ingestion()]
