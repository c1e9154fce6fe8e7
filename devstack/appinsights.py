"""Local Application Insights ingestion endpoint: the track API Azure Monitor's OpenTelemetry exporter sends to.

    POST {IngestionEndpoint}/v2.1/track
    Content-Type: application/json   (optionally Content-Encoding: gzip)
    Authorization: Bearer <Entra token for https://monitor.azure.com>
    [ {"name": "Microsoft.ApplicationInsights.Event", "time": ..., "iKey": ..., "tags": {...},
       "data": {"baseType": "EventData", "baseData": {"name": ..., "properties": {...}, "measurements": {...}}}},
      ... ]

Answers 200 `{"itemsReceived": n, "itemsAccepted": n, "errors": []}`, or 401 without a bearer token for the
monitor audience: the Gatekeeper component has local authentication disabled, so the service refuses telemetry
that only carries the instrumentation key. 400 for a body that is not a JSON array of envelopes. Over TLS with
a throw-away CA, because the exporter (azure-core) sends bearer tokens over https only.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

from devstack.server import Response, bearer_token, json_response
from devstack.tls import TlsLocalServer

AUDIENCE = "https://monitor.azure.com/"  # the exporter asks for "https://monitor.azure.com//.default"
INSTRUMENTATION_KEY = "00000000-0000-4000-8000-000000000001"  # identifies the component, grants nothing


class LocalAppInsightsServer(TlsLocalServer):
    name = "local Application Insights"

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[dict[str, Any]] = []

    @property
    def connection_string(self) -> str:
        """A connection string as the component gives it (Bicep's `properties.ConnectionString`)."""
        return f"InstrumentationKey={INSTRUMENTATION_KEY};IngestionEndpoint=https://127.0.0.1:{self.port}/"

    def custom_events(self, name: str | None = None) -> list[dict[str, Any]]:
        """baseData of every EventData envelope received (customEvents), optionally of one name."""
        with self._lock:
            found = [e["data"]["baseData"] for e in self.envelopes if e["data"].get("baseType") == "EventData"]
        return [d for d in found if name is None or d.get("name") == name]

    def metrics(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every data point of every MetricData envelope (customMetrics), with the envelope's properties."""
        points = []
        with self._lock:
            for envelope in self.envelopes:
                data = envelope["data"]
                if data.get("baseType") != "MetricData":
                    continue
                for point in data["baseData"].get("metrics", []):
                    if name is None or point.get("name") == name:
                        points.append({**point, "properties": data["baseData"].get("properties") or {}})
        return points

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        if method != "POST" or not path.endswith("/track"):
            return json_response(404, {"error": "not found"})
        if bearer_token(headers) != f"local:{AUDIENCE}":
            return json_response(401, {"itemsReceived": 0, "itemsAccepted": 0, "errors": [{"statusCode": 401}]})
        try:
            raw = gzip.decompress(body) if headers.get("content-encoding", "").lower() == "gzip" else body
            batch = json.loads(raw)
        except (OSError, ValueError):
            return json_response(400, {"itemsReceived": 0, "itemsAccepted": 0, "errors": [{"message": "not JSON"}]})
        if not isinstance(batch, list) or not all(_is_envelope(e) for e in batch):
            return json_response(400, {"itemsReceived": 0, "itemsAccepted": 0, "errors": [{"message": "envelopes"}]})
        with self._lock:
            self.envelopes.extend(batch)
        return json_response(200, {"itemsReceived": len(batch), "itemsAccepted": len(batch), "errors": []})


def _is_envelope(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("name"), str)
        and isinstance(item.get("time"), str)
        and item.get("iKey") == INSTRUMENTATION_KEY
        and isinstance(item.get("data"), dict)
        and isinstance(item["data"].get("baseType"), str)
        and isinstance(item["data"].get("baseData"), dict)
    )
