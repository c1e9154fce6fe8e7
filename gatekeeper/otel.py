"""OpenTelemetry behind `gatekeeper.telemetry`: the meters its metrics go to, and Azure Monitor's exporter.

Why a module of its own: `gatekeeper.telemetry` is imported by every step and must stay light; OpenTelemetry
and the Azure Monitor distro (about 0.25 s of imports) are loaded only here, and this module only when the
composition root configures telemetry (`gatekeeper.services.azure_monitor`), on the first event of a process
whose APPLICATIONINSIGHTS_CONNECTION_STRING is set. Tests build an `OtelSink` over the SDK's in-memory
reader and exporter, so the instruments and the custom events are the ones production sends.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import SpanProcessor

from gatekeeper.telemetry import LOGGER_NAME, METRICS, Metric, MetricAttribute

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.sdk._logs import LoggerProvider

METER_NAME = "gatekeeper"

# Instrumentations the distro may enable: HTTP clients (Graph over httpx; GitHub, Azure DevOps, webhooks over
# requests) and the Azure SDK (storage, Key Vault) become dependencies; what the app does not use stays off.
INSTRUMENTATIONS: dict[str, dict[str, bool]] = {
    "azure_sdk": {"enabled": True},
    "httpx": {"enabled": True},
    "httpx2": {"enabled": False},
    "requests": {"enabled": True},
    "urllib3": {"enabled": True},
    "urllib": {"enabled": False},
    "django": {"enabled": False},
    "fastapi": {"enabled": False},
    "flask": {"enabled": False},
    "psycopg2": {"enabled": False},
}


# Span attributes that carry a URL or its query. The HTTP instrumentations record the full URL of every outbound
# call; a callback URL's query may carry a key (`?code=`, gatekeeper.integrations.urls) and Autotask's zone
# discovery names the API user, so only the URL without its query may leave the process.
URL_ATTRIBUTES = ("http.url", "url.full", "http.target")
QUERY_ATTRIBUTES = ("url.query",)


def _without_query(value: str) -> str:
    return value.split("?", 1)[0].split("#", 1)[0]


class QueryRedaction(SpanProcessor):
    """When a span starts, its URL attributes lose their query strings and fragments, before any exporter sees
    the span."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        attributes = span.attributes or {}
        for name in URL_ATTRIBUTES:
            value = attributes.get(name)
            if isinstance(value, str) and ("?" in value or "#" in value):
                span.set_attribute(name, _without_query(value))
        for name in QUERY_ATTRIBUTES:
            if name in attributes:
                span.set_attribute(name, "REDACTED")


class OtelSink:
    """The product's instruments on one meter provider; with a logger provider, the telemetry logger's
    records also go to it (the distro attaches its own handler instead, so production passes none)."""

    def __init__(self, meter_provider: MeterProvider, logger_provider: LoggerProvider | None = None) -> None:
        meter = meter_provider.get_meter(METER_NAME)
        self._instruments: dict[Metric, Any] = {}
        for metric, spec in METRICS.items():
            create = meter.create_counter if spec.kind == "counter" else meter.create_histogram
            self._instruments[metric] = create(metric.value, unit=spec.unit, description=spec.description)
        if logger_provider is not None:
            from opentelemetry.instrumentation.logging.handler import LoggingHandler

            _export_events(LoggingHandler(logger_provider=logger_provider))

    def measure(self, metric: Metric, value: float, attributes: Mapping[str, MetricAttribute]) -> None:
        instrument = self._instruments[metric]
        if METRICS[metric].kind == "counter":
            instrument.add(value, dict(attributes))
        else:
            instrument.record(value, dict(attributes))


def _export_events(handler: logging.Handler | None = None) -> None:
    """Events go to the exporter only (one copy, as custom events), not also up to the host's trace log."""
    logger = logging.getLogger(LOGGER_NAME)
    if handler is not None:
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def configure_azure_monitor(connection_string: str, credential: TokenCredential) -> OtelSink:
    """Azure Monitor's OpenTelemetry distro for this process: custom events from the telemetry logger,
    metrics, and dependency traces, authenticated with `credential` (Entra ID: the component has local
    authentication disabled, so no instrumentation key is ever used). Live metrics and performance
    counters stay off: the Functions host reports the process, and each is another thread and connection.
    Dependencies keep their URLs without the query (`QueryRedaction`)."""
    from azure.monitor.opentelemetry import configure_azure_monitor as distro
    from opentelemetry import metrics

    distro(
        connection_string=connection_string,
        credential=credential,
        logger_name=LOGGER_NAME,
        enable_live_metrics=False,
        enable_performance_counters=False,
        instrumentation_options=INSTRUMENTATIONS,
        span_processors=[QueryRedaction()],  # before the exporter's own processor sees a span
    )
    _export_events()
    return OtelSink(metrics.get_meter_provider())
