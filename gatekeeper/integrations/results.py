"""The outcome of one pipeline callback, small and JSON-safe so it can travel through an orchestration
history and into the audit log as is. Defined with the `PipelineTarget` port in `gatekeeper.ports`."""

from __future__ import annotations

from gatekeeper.ports import CallbackAction, CallbackResult, CallbackTarget

__all__ = ["CallbackAction", "CallbackResult", "CallbackTarget"]
