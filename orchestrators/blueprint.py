"""The one Durable Functions blueprint every flow module decorates its orchestrators and activities on,
and the typed call helpers the flows use: a contract model goes out as JSON, explicitly, at the call.

`function_app.py` registers `bp`; the local runner discovers the same registrations from it.
"""

from __future__ import annotations

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
