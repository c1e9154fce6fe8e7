"""The one Durable Functions blueprint every flow module decorates its orchestrators and activities on,
and the typed call helpers the flows use: a contract model goes out as JSON, explicitly, at the call.

`function_app.py` registers `bp`; the local runner discovers the same registrations from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df

if TYPE_CHECKING:  # the contracts are pydantic models; pydantic is imported with them, on the first run
    from pydantic import BaseModel

bp = df.Blueprint()


def call(context: Any, activity: Any, request: BaseModel) -> Any:
    """`context.call_activity` by reference, with the typed input serialised to a JSON document."""
    return context.call_activity(activity, request.model_dump(mode="json"))


def call_with_retry(context: Any, activity: Any, retry: df.RetryOptions, request: BaseModel) -> Any:
    return context.call_activity_with_retry(activity, retry, request.model_dump(mode="json"))


def once(step: str, request: Any, instance_id: str, body: Callable[[Any], BaseModel]) -> dict[str, Any]:
    """Run an activity's step once per input, however often the host runs the activity
    (`gatekeeper.gates.once`): `body(services)` gets the process's `Services` and returns the typed result,
    which goes back to the orchestration (and into the step's row) as JSON."""
    from gatekeeper.gates.once import run_once
    from gatekeeper.services import get_services

    services = get_services()
    payload = request.model_dump(mode="json")
    return run_once(
        services, step, request.tenant_id, instance_id, payload, lambda: body(services).model_dump(mode="json")
    )
