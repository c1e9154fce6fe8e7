"""The `EventPublisher` adapter for Azure Event Grid: CloudEvents 1.0 batches to a topic with the
`azure-eventgrid` SDK's `EventGridPublisherClient`, authenticated with the process's managed identity
(bearer token for `https://eventgrid.azure.net/.default`; the topic has local auth disabled).

Why bounded: publishing runs inside a gate or watch activity, so it must never hold the gate up. The SDK's
own retry policy (azure-core `RetryPolicy`: 408/429/5xx and connection errors, honouring `Retry-After`) gets
a small budget per call (`attempts`, `backoff`, `timeout_seconds`); a batch still refused after it is a
`PublishResult(ok=False)` the caller audits, never an exception. The SDK is imported on the first publish,
never on an ingestion route (cold start).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from gatekeeper.ports import MeshEvent, PublishResult

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger("gatekeeper.integrations.eventgrid")

EVENTS_PATH = "/api/events"
DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF_SECONDS = 0.5
DEFAULT_TIMEOUT_SECONDS = 5.0
SDK_MODEL_LOGGER = "azure.eventgrid._legacy._generated._serialization"


class _PipelineOptionsNoise(logging.Filter):
    """The SDK hands a send's per-call pipeline options (retry, timeouts, TLS) to its CloudEvent model too,
    which logs a warning per option and event ("... is not a known attribute of class CloudEvent"). Those
    lines say nothing (the pipeline does use the options), so exactly they are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is not a known attribute of class" not in record.getMessage()


_NOISE_FILTER = _PipelineOptionsNoise()


def topic_endpoint(url: str) -> str:
    """The topic's publish URL: `https://<topic>.<region>-1.eventgrid.azure.net/api/events` (Bicep's
    `properties.endpoint`); a bare host gets the documented `/api/events` path."""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/") or EVENTS_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def topic_name(url: str) -> str:
    """The deployment's name in every event's `source`: the topic's own name (first label of its host)."""
    host = urlsplit(url.strip()).hostname or "local"
    label = host.split(".")[0]
    return label if label.replace("-", "").isalnum() else "local"


class DisabledPublisher:
    """Publishing is off (no topic configured): every batch is reported as skipped, nothing is sent."""

    def publish(self, tenant_id: str, events: tuple[MeshEvent, ...]) -> PublishResult:
        return PublishResult(ok=True, skipped=True, detail="event mesh off: no topic configured")


class EventGridPublisher:
    """Publishes CloudEvents batches to one Event Grid topic. Thread-safe; the client is built once."""

    def __init__(
        self,
        endpoint: str,
        credential: TokenCredential,
        *,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff: float = DEFAULT_BACKOFF_SECONDS,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        connection_verify: str | bool = True,
    ) -> None:
        self.endpoint = topic_endpoint(endpoint)
        self._credential = credential
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._timeout = timeout_seconds
        self._verify = connection_verify
        self._client: Any = None
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                from azure.eventgrid import EventGridPublisherClient

                logging.getLogger(SDK_MODEL_LOGGER).addFilter(_NOISE_FILTER)  # idempotent: one filter object
                self._client = EventGridPublisherClient(self.endpoint, self._credential)
            return self._client

    def publish(self, tenant_id: str, events: tuple[MeshEvent, ...]) -> PublishResult:
        if not events:
            return PublishResult(ok=True)
        from azure.core.exceptions import AzureError, HttpResponseError
        from azure.core.messaging import CloudEvent

        batch = [
            CloudEvent(
                source=e.source,
                type=e.type,
                data=e.data,
                subject=e.subject,
                time=e.time,
                id=e.id,
                datacontenttype="application/json",
                extensions=dict(e.extensions) or None,
            )
            for e in events
        ]
        try:
            self._get_client().send(
                batch,
                retry_total=self._attempts - 1,
                retry_backoff_factor=self._backoff,
                retry_backoff_max=max(self._backoff, 4.0),
                connection_timeout=self._timeout,
                read_timeout=self._timeout,
                connection_verify=self._verify,
            )
        except HttpResponseError as exc:
            code = exc.status_code
            log.warning("event mesh refused %d event(s) for %s: HTTP %s", len(batch), tenant_id, code)
            return PublishResult(ok=False, status_code=code, detail=f"Event Grid answered HTTP {code}")
        except AzureError as exc:  # connection refused, timeouts, token failures: named, never the token
            log.warning("event mesh unreachable for %s: %s", tenant_id, type(exc).__name__)
            return PublishResult(ok=False, detail=f"Event Grid unreachable: {type(exc).__name__}")
        return PublishResult(ok=True, published=len(batch), status_code=200)
