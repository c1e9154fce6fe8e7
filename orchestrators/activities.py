"""Activity functions: thin bindings from the Functions activity trigger to `gatekeeper.gates.activities`,
with the services from the registry (`gatekeeper.gates.services`). Plain functions; `orchestrators/__init__`
registers them on the blueprint under the names in `names.py`."""

from __future__ import annotations

from typing import Any

from gatekeeper.gates import activities as impl
from gatekeeper.gates import services


def gate_evaluate(payload: dict[str, Any]) -> dict[str, Any]:
    return impl.evaluate(services.get(), payload)


def gate_request_approval(payload: dict[str, Any]) -> dict[str, Any]:
    return impl.request_approval(services.get(), payload)


def gate_notify(payload: dict[str, Any]) -> dict[str, Any]:
    return impl.notify(services.get(), payload)


def gate_callback(payload: dict[str, Any]) -> dict[str, Any]:
    return impl.callback(services.get(), payload)


def gate_open_human_task(payload: dict[str, Any]) -> dict[str, Any]:
    return impl.open_human_task(services.get(), payload)


def gate_record_outcome(payload: dict[str, Any]) -> dict[str, Any]:
    return impl.record_outcome(services.get(), payload)


def gate_audit(payload: dict[str, Any]) -> dict[str, Any]:
    return impl.audit(services.get(), payload)
