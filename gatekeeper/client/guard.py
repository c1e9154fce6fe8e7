"""`requires_approval`: run a privileged call only once a person (or policy) approved that exact command.

As a decorator:

    @requires_approval(client, action="data_export", environment="production",
                       command=lambda table, to: f"export {table} to {to}")
    def export(table: str, to: str) -> int: ...

    result = export("customers", "s3://bucket")   # the function's result, or a falsy Denied

As a context manager:

    with requires_approval(client, command="rotate-keys --all", action="secret_access",
                           environment="production") as gate:
        if gate:
            rotate_keys()

Why a quiet `Denied` value and not an exception: a denial is an expected answer, not a failure; an agent or a
pipeline carries on without that one action (the issue's "dies quietly"). Failures to reach Gatekeeper still
raise (`Unavailable`): the call never runs without an approval. What happened is reported back (audited):
`executed` with the exit status after the call ran (0, or 1 when it raised), `skipped` when it did not.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from gatekeeper.client.api import ActionState, Approval, Command, GatekeeperClient, Outcome
from gatekeeper.client.errors import ClientError

P = ParamSpec("P")
R = TypeVar("R")
MAX_REPR_CHARS = 2000


@dataclass(frozen=True)
class Denied:
    """The quiet answer when the action may not run (denied, expired, cancelled, human only, or still pending
    when the local wait ended). Falsy, so `if result:` reads naturally."""

    action_id: str
    status: str
    reason: str | None = None
    decided_by: str | None = None
    approval_url: str | None = None

    def __bool__(self) -> bool:
        return False

    @classmethod
    def of(cls, state: ActionState) -> Denied:
        return cls(state.id, state.status, state.reason, state.decided_by, state.approval_url)


def default_command(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    """What the approver sees when no `command` is given: the function and the argument names, never their
    values (they could hold a secret, and the command is shown, audited and exported). Give `command` (text,
    argv, or a callable of the call's arguments) to show what the call will do."""
    shown = [f"<{len(args)} positional>"] if args else []
    shown += [f"{name}=..." for name in kwargs]
    text = f"{func.__module__}.{func.__qualname__}({', '.join(shown)})"
    return text if len(text) <= MAX_REPR_CHARS else text[: MAX_REPR_CHARS - 3] + "..."


def report_quietly(approval: Approval, outcome: Outcome, exit_code: int | None, detail: str | None = None) -> None:
    """Best effort: the call has happened (or not) either way; a failed report must not change that."""
    with contextlib.suppress(ClientError):
        approval.report(outcome, exit_code=exit_code, detail=detail)


class requires_approval:
    """Ask Gatekeeper before running one command; see the module docstring."""

    def __init__(
        self,
        client: GatekeeperClient,
        *,
        action: str,
        environment: str,
        command: Command | Callable[..., Command] | None = None,
        resource: str | None = None,
        context: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        timeout: float | timedelta | None = None,
        wait_timeout: float | timedelta | None = None,
    ) -> None:
        self.client = client
        self.action = action
        self.environment = environment
        self.command = command
        self.resource = resource
        self.context = context
        self.idempotency_key = idempotency_key
        self.timeout = timeout  # how long people have (sent to Gatekeeper)
        self.wait_timeout = wait_timeout if wait_timeout is not None else timeout  # how long this process waits
        self._approval: Approval | None = None
        self._reported = False

    # -- the decision -------------------------------------------------------------------------------------

    def decide(self, command: Command) -> Approval:
        """Request and wait. If the local wait ends first, the request is withdrawn (a decision arriving
        after nobody waits would approve nothing); if it was decided meanwhile, that decision counts."""
        approval = self.client.request(
            command,
            self.action,
            self.environment,
            resource=self.resource,
            context=self.context,
            idempotency_key=self.idempotency_key,
            timeout=self.timeout,
        )
        approval.wait(self.wait_timeout)
        if approval.state.pending:
            approval.cancel()
        return approval

    def _report(self, approval: Approval, outcome: Outcome, exit_code: int | None, detail: str | None = None) -> None:
        """Once per `with` block (a body's `skip()` wins over the exit's `executed`)."""
        if not self._reported:
            self._reported = True
            report_quietly(approval, outcome, exit_code, detail)

    # -- decorator ----------------------------------------------------------------------------------------

    def __call__(self, func: Callable[P, R]) -> Callable[P, R | Denied]:
        guard = self

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Denied:
            spec = guard.command
            if callable(spec):
                command = spec(*args, **kwargs)
            elif spec is None:
                command = default_command(func, args, kwargs)
            else:
                command = spec
            approval = guard.decide(command)
            if not approval.approved:
                report_quietly(approval, "skipped", None, f"not run: {approval.state.status}")
                return Denied.of(approval.state)
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                report_quietly(approval, "executed", 1, f"raised {type(exc).__name__}")
                raise
            report_quietly(approval, "executed", 0)
            return result

        return wrapper

    # -- context manager ------------------------------------------------------------------------------------

    def __enter__(self) -> Approved | Denied:
        if self.command is None or callable(self.command):
            raise TypeError("requires_approval as a context manager needs the exact command (text or argv)")
        self._reported = False
        self._approval = self.decide(self.command)
        if self._approval.approved:
            return Approved(self._approval, self)
        self._report(self._approval, "skipped", None, f"not run: {self._approval.state.status}")
        return Denied.of(self._approval.state)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        approval, self._approval = self._approval, None
        if approval is None or not approval.approved:
            return
        if exc is not None:
            self._report(approval, "executed", 1, f"raised {exc_type.__name__ if exc_type else 'exception'}")
        else:
            self._report(approval, "executed", 0)


class Approved:
    """The truthy answer inside `with requires_approval(...)`: the state, and `skip()` for a body that
    decided not to run the command after all (reported as `skipped` instead of `executed`)."""

    def __init__(self, approval: Approval, guard: requires_approval) -> None:
        self.approval = approval
        self._guard = guard

    def __bool__(self) -> bool:
        return True

    @property
    def action_id(self) -> str:
        return self.approval.id

    @property
    def state(self) -> ActionState:
        return self.approval.state

    def skip(self, detail: str | None = None) -> None:
        self._guard._report(self.approval, "skipped", None, detail)
