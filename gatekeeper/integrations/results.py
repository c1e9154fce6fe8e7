"""The outcome of one pipeline callback, small and JSON-safe so it can travel through an orchestration
history and into the audit log as is. Defined with the `PipelineTarget` port in `gatekeeper.ports`.

`callback_result` is the one way an adapter turns a sent call into that result and its log line, so every
CI's callback logs and reports alike, and never a secret: the detail is `retry.describe`'s line with the
call's credentials removed (callers name a URL only by `urls.safe_url`, never with its query).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from gatekeeper.ports import CallbackAction, CallbackResult, CallbackTarget

if TYPE_CHECKING:
    from gatekeeper.integrations.retry import HttpOutcome

__all__ = ["CallbackAction", "CallbackResult", "CallbackTarget", "callback_result"]


def callback_result(
    outcome: HttpOutcome,
    what: str,
    secrets: Iterable[str | None],
    *,
    target: CallbackTarget,
    action: CallbackAction = "complete",
    log: logging.Logger | None = None,
    attempts: int | None = None,
) -> CallbackResult:
    """The result of a call sent with `retry.send_with_retry`: ok, status and attempts from `outcome`
    (`attempts` when the caller made several rounds), the detail naming `what` with `secrets` removed.
    With `log` (the adapter's own logger), the detail is logged there too: info when the pipeline
    acknowledged, error when not."""
    from gatekeeper.integrations.retry import describe  # the adapters have it loaded; the port's importers need not

    detail = describe(outcome, what, secrets)
    if log is not None:
        (log.info if outcome.ok else log.error)("%s", detail, stacklevel=2)  # the record names the adapter's line
    return CallbackResult(
        ok=outcome.ok,
        status_code=outcome.status_code,
        attempts=outcome.attempts if attempts is None else attempts,
        detail=detail,
        target=target,
        action=action,
    )
