"""An alert for a watch whose record keeps changing (gatekeeper/rollback/alerts.py `_record`): a case the third
hand sweep of planted bugs found untested (docs/mutation.md). Storage is Azurite behind a loopback proxy speaking
the Tables wire format that refuses every conditional write of the watch's row with 412, as the service answers
a writer whose ETag is stale; everything else reaches Azurite unchanged. The rig is
tests/integration/test_rollback_routes.py's."""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from gatekeeper.rollback.store import WatchStore
from tests.integration.test_rollback_routes import (  # noqa: F401 - the fixtures are used by name
    FIRED,
    call,
    env,
    issuer,
    raised,
)
from tests.support.gatekeeper_env import API_KEY

pytestmark = pytest.mark.azurite


class _StaleWrites(BaseHTTPRequestHandler):
    """Forwards to Azurite's Tables endpoint; a conditional replace (`If-Match` other than `*`) of a row whose key
    contains `row` is answered 412 `UpdateConditionNotSatisfied` and counted."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    upstream: tuple[str, int] = ("127.0.0.1", 0)
    row = ""
    refused: list[str]

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if_match = self.headers.get("If-Match")
        if self.command in ("PUT", "MERGE") and if_match not in (None, "*") and self.row in self.path:
            self.refused.append(self.path)
            error = b'{"odata.error":{"code":"UpdateConditionNotSatisfied","message":{"value":"stale ETag"}}}'
            self.send_response(412)
            self.send_header("x-ms-error-code", "UpdateConditionNotSatisfied")
            self.send_header("Content-Type", "application/json;odata=minimalmetadata")
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        connection = http.client.HTTPConnection(*self.upstream, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        connection.request(self.command, self.path, body=body or None, headers=headers)
        answer = connection.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        connection.close()

    do_GET = do_POST = do_PUT = do_MERGE = do_DELETE = do_PATCH = _forward

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def stale_writes(env) -> Iterator[list[str]]:
    """The route's request storage through the proxy; yields the list of refused writes."""
    runtime = env["runtime"]
    storage = runtime.services.request_storage
    found = re.search(r"TableEndpoint=(http://[^;]+)", storage.connection_string or "")
    assert found is not None
    upstream = urlsplit(found.group(1))
    refused: list[str] = []
    handler = type(
        "Handler",
        (_StaleWrites,),
        {"upstream": (upstream.hostname, upstream.port), "row": env["watch"], "refused": refused},
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxied = (storage.connection_string or "").replace(
        found.group(1), f"http://127.0.0.1:{server.server_address[1]}{upstream.path}"
    )
    runtime.services.__dict__["request_storage"] = replace(storage, connection_string=proxied)
    try:
        yield refused
    finally:
        server.shutdown()
        server.server_close()


def test_an_alert_for_a_watch_that_keeps_changing_is_still_answered_and_audited(env, stale_writes):
    """Ten conditional writes lost in a row (`WatchStore.change` gives up with LookupError): the alert is not
    counted against the watch and wakes nothing, but the sender gets its 202 naming the watch, and the alert is
    audited on it; the store's give-up does not escape as a 500."""
    headers = {"X-Gatekeeper-Tenant": env["runtime"].tenant_id, "x-functions-key": API_KEY}
    answer = call(env, "azure_monitor_alert", "azure-monitor/alerts", body=FIRED, headers=headers)
    assert answer.status_code == 202, answer.get_body()
    assert json.loads(answer.get_body())["watches"] == [env["watch"]]
    assert len(stale_writes) == 10  # every attempt of the store's ETag loop tried and refused
    assert raised(env) == []
    runtime = env["runtime"]
    record = WatchStore(runtime.storage, runtime.tenant_id, runtime.services.sealer).load(env["watch"])
    assert record is not None and record.alerts == () and record.wakes == 0
    audited = [r for r in runtime.services.audit_for(runtime.tenant_id).records() if r.instance_id == env["watch"]]
    assert [(r.kind, r.data["result"]) for r in audited] == [("health_check", "fail")]
