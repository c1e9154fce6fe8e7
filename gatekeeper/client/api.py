"""A typed client for the action-approval API (`/api/actions`), for scripts and automation agents.

    client = GatekeeperClient("https://gatekeeper.contoso.com", token_provider=get_token)
    approval = client.request(command=["terraform", "apply", "plan.tfplan"], action="infrastructure_change",
                              environment="production", idempotency_key=run_key)
    state = approval.wait(timeout=1800)
    if state.approved: ...; approval.report("executed", exit_code=0)

Why it looks like this: it imports requests, tenacity and the product's bounded JSON reader only (no Azure
SDK), so an agent or a build step loads it quickly. Credentials go to `base_url`'s origin and nowhere else:
redirects are refused (a custom header like `x-functions-key` would survive one) and every URL is built from
`base_url` and a validated action id, never taken from an answer. A plain-http URL is refused unless it is
loopback. Every call that can fail transiently (connection errors, timeouts, 429, 502-504) is retried with
jittered exponential backoff; a `Retry-After` is honoured (capped). POSTs are safe to retry because the
idempotency key makes a repeated request the same action.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import requests

from gatekeeper.client.errors import ClientError, InvalidRequest, Unavailable, UnexpectedResponse

# The policy vocabulary (gatekeeper.events.model.ActionKind; a unit test keeps the two equal). Kept here as
# plain strings so the client does not import the event model (pydantic) to check an argument.
ACTION_KINDS = (
    "build",
    "test",
    "deploy",
    "rollback",
    "infrastructure_change",
    "privilege_escalation",
    "data_export",
    "secret_access",
)
STATUSES = ("pending", "approved", "denied", "expired", "cancelled", "human_only")
DENIED_STATUSES = frozenset({"denied", "expired", "cancelled", "human_only"})
OUTCOMES = ("executed", "skipped")
# Context keys of the contract and whether each is a string or a list of strings.
CONTEXT_FIELDS: dict[str, type] = {
    "repository": str,
    "ref": str,
    "commit": str,
    "run_url": str,
    "version_tags": list,
    "artifacts": list,
    "ticket": str,
    "plan_digest": str,
    "plan_url": str,
}
KEY_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # idempotency keys and action ids
PLAN_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
ENVIRONMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._/-]{0,99}$")  # the server's pattern (docs/openapi/actions.yaml)
RESOURCE = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")
MAX_RESOURCE_CHARS = 200
MAX_COMMAND_CHARS = 8192
MAX_ARGV_ITEMS = 256
MAX_CONTEXT_STRING = 2048
MAX_CONTEXT_ITEMS = 64
MAX_DETAIL_CHARS = 500
MAX_POLL_SECONDS = 25  # the server's bound for ?wait (under the Functions HTTP timeout)
MIN_TIMEOUT_SECONDS = 60  # what the server accepts for an action's timeout (PT1M..P7D)
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
MAX_RETRY_AFTER = 60.0
MAX_ANSWER_BYTES = 1 << 20
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
TENANT_HEADER = "X-Gatekeeper-Tenant"
KEY_HEADER = "x-functions-key"

Command = str | Sequence[str]
TokenProvider = Callable[[], str]
Outcome = Literal["executed", "skipped"]


# --- durations ---------------------------------------------------------------------------------------------

_ISO_DURATION = re.compile(r"^P(?:(\d{1,3})D)?(?:T(?=\d)(?:(\d{1,4})H)?(?:(\d{1,6})M)?(?:(\d{1,7})S)?)?$")
_SHORT_DURATION = re.compile(r"^(\d{1,7})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | int | float | timedelta, *, field: str = "timeout", minimum: int = 1) -> int:
    """Seconds from an ISO 8601 duration (`PT30M`, `P1DT2H`), a short form (`90s`, `30m`, `2h`, `1d`),
    a number of seconds or a timedelta; `minimum` seconds to 7 days. Otherwise InvalidRequest naming `field`."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise InvalidRequest(f"{field}: expected a duration, not a boolean", field=field)
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        iso = _ISO_DURATION.fullmatch(text.upper())
        short = _SHORT_DURATION.fullmatch(text.lower())
        if iso and text.upper() != "P":
            d, h, m, s = (int(g or 0) for g in iso.groups())
            seconds = d * 86400 + h * 3600 + m * 60 + s
        elif short:
            seconds = int(short.group(1)) * _UNIT_SECONDS[short.group(2)]
        else:
            raise InvalidRequest(
                f"{field}: {value[:40]!r} is not a duration (ISO 8601 like PT30M, or 90s, 30m, 2h, 1d)", field=field
            )
    if not minimum <= seconds <= MAX_TIMEOUT_SECONDS:
        shown = format_duration(minimum)
        raise InvalidRequest(f"{field}: must be between {shown} and 7 days", field=field)
    return int(seconds)


def format_duration(seconds: int) -> str:
    """The ISO 8601 duration the API takes (`PT1H30M`); whole seconds, hours as the largest unit."""
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    parts = (f"{h}H" if h else "") + (f"{m}M" if m else "") + (f"{s}S" if s else "")
    return "PT" + (parts or "0S")


# --- values ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionState:
    """The state of one action as `GET /api/actions/{id}` (or the request's answer) reports it."""

    id: str
    status: str
    level: str | None = None
    decision: str | None = None
    reason: str | None = None
    decided_by: str | None = None
    decided_at: str | None = None
    approval_url: str | None = None
    status_url: str | None = None
    command: Any = None
    action: str | None = None
    environment: str | None = None
    outcome: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    @property
    def pending(self) -> bool:
        return self.status == "pending"

    @property
    def denied(self) -> bool:
        """Denied, expired, cancelled or human only: the command must not run."""
        return self.status in DENIED_STATUSES

    @classmethod
    def from_answer(cls, body: Any) -> ActionState:
        if not isinstance(body, dict):
            raise UnexpectedResponse("the answer is not a JSON object")
        action_id, status = body.get("id"), body.get("status")
        if not isinstance(action_id, str) or not KEY_PATTERN.fullmatch(action_id):
            raise UnexpectedResponse("the answer has no valid action id", field="id")
        if status not in STATUSES:
            raise UnexpectedResponse(f"the answer has an unknown status {str(status)[:40]!r}", field="status")

        def text(name: str) -> str | None:
            value = body.get(name)
            return value if isinstance(value, str) else None

        return cls(
            id=action_id,
            status=status,
            level=text("level"),
            decision=text("decision"),
            reason=text("reason"),
            decided_by=text("decided_by"),
            decided_at=text("decided_at"),
            approval_url=text("approval_url"),
            status_url=text("status_url"),
            command=body.get("command"),
            action=text("action"),
            environment=text("environment"),
            outcome=text("outcome"),
            raw=dict(body),
        )

    def to_json(self) -> dict[str, Any]:
        """The contract's fields (what `--json` prints), plus `approved` for scripts."""
        return {
            "id": self.id,
            "status": self.status,
            "approved": self.approved,
            "level": self.level,
            "decision": self.decision,
            "reason": self.reason,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "approval_url": self.approval_url,
            "status_url": self.status_url,
            "command": self.command,
            "action": self.action,
            "environment": self.environment,
            "outcome": self.outcome,
        }


def _encodable(text: str) -> bool:
    """Text that encodes as UTF-8: a lone surrogate cannot be sent, sealed or shown."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_command(command: Any) -> str | list[str]:
    """The exact command as text or argv, bounded; InvalidRequest naming `command` otherwise."""
    if isinstance(command, str):
        if not command.strip() or len(command) > MAX_COMMAND_CHARS or "\x00" in command or not _encodable(command):
            raise InvalidRequest(f"command: must be 1..{MAX_COMMAND_CHARS} characters of text", field="command")
        return command
    if isinstance(command, Sequence) and not isinstance(command, bytes | bytearray):
        argv = list(command)
        if not argv or len(argv) > MAX_ARGV_ITEMS:
            raise InvalidRequest(f"command: argv must have 1..{MAX_ARGV_ITEMS} items", field="command")
        for i, item in enumerate(argv):
            if not isinstance(item, str) or "\x00" in item or not _encodable(item):
                raise InvalidRequest(f"command[{i}]: must be text", field=f"command[{i}]")
        if not argv[0].strip() or sum(len(a) for a in argv) > MAX_COMMAND_CHARS:
            raise InvalidRequest(f"command: argv must be 1..{MAX_COMMAND_CHARS} characters", field="command")
        return argv
    raise InvalidRequest("command: expected text or a list of arguments", field="command")


def check_context(context: Mapping[str, Any] | None) -> dict[str, Any]:
    """The optional context, limited to the contract's keys and bounded; empty values are left out."""
    if context is None:
        return {}
    if not isinstance(context, Mapping):
        raise InvalidRequest("context: expected an object", field="context")
    out: dict[str, Any] = {}
    for key, value in context.items():
        where = f"context.{key}"
        kind = CONTEXT_FIELDS.get(key)
        if kind is None:
            raise InvalidRequest(f"{where}: unknown key; expected one of {', '.join(CONTEXT_FIELDS)}", field=where)
        if value is None or value == "" or value == []:
            continue
        if kind is str:
            if not isinstance(value, str) or len(value) > MAX_CONTEXT_STRING or not _encodable(value):
                raise InvalidRequest(f"{where}: expected text of at most {MAX_CONTEXT_STRING} characters", field=where)
        else:
            if not isinstance(value, list | tuple) or len(value) > MAX_CONTEXT_ITEMS:
                raise InvalidRequest(f"{where}: expected a list of at most {MAX_CONTEXT_ITEMS} items", field=where)
            for i, item in enumerate(value):
                if not isinstance(item, str) or not item or len(item) > MAX_CONTEXT_STRING or not _encodable(item):
                    raise InvalidRequest(f"{where}[{i}]: expected non-empty text", field=f"{where}[{i}]")
            value = list(value)
        if key == "plan_digest" and not PLAN_DIGEST.fullmatch(value):
            raise InvalidRequest(f"{where}: expected sha256:<64 lower-case hex digits>", field=where)
        if key in ("run_url", "plan_url") and urlsplit(value).scheme not in ("https", "http"):
            raise InvalidRequest(f"{where}: expected an http(s) URL", field=where)
        out[key] = value
    return out


def check_key(value: str, field: str) -> str:
    if not isinstance(value, str) or not KEY_PATTERN.fullmatch(value):
        raise InvalidRequest(f"{field}: expected 1..128 characters of A-Z a-z 0-9 . _ : -", field=field)
    return value


def check_base_url(base_url: str) -> str:
    """`https://host[:port][/prefix]` (the `/api` prefix added by the client), or plain http to loopback
    only: a credential never crosses a network in clear text."""
    field = "base_url"
    if not isinstance(base_url, str) or not base_url.strip():
        raise InvalidRequest("base_url: the Gatekeeper URL is required (GATEKEEPER_URL)", field=field)
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidRequest(f"base_url: {base_url[:80]!r} is not an http(s) URL", field=field)
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidRequest("base_url: must not carry credentials, a query or a fragment", field=field)
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise InvalidRequest("base_url: plain http is only allowed to localhost; use https", field=field)
    path = parts.path.rstrip("/")
    path = path.removesuffix("/api")
    return f"{parts.scheme}://{parts.netloc}{path}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def derive_idempotency_key(command: Command, action: str, environment: str, resource: str | None, run: str) -> str:
    """A key that is the same for the same command, target and run (`run` names one attempt of one job,
    e.g. `github:<run id>:<attempt>:<job>`), so a retried step finds its pending action instead of asking
    people twice, and a new run asks anew. Used by the CLI and the drop-in steps; `request()` without a key
    uses a random one (an agent has no run to name, and a stale approval must never be replayed)."""
    material = json.dumps(
        {
            "command": check_command(command),
            "action": action,
            "environment": environment,
            "resource": resource,
            "run": run,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return "gk1:" + hashlib.sha256(material.encode()).hexdigest()


# --- the client ----------------------------------------------------------------------------------------------


class _Transient(Exception):
    """A failure worth retrying, with the server's Retry-After when it gave one."""

    def __init__(self, detail: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


class _Unauthorized(Exception):
    def __init__(self, error: InvalidRequest) -> None:
        super().__init__(str(error))
        self.error = error


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, min(when.timestamp() - time.time(), MAX_RETRY_AFTER))


class GatekeeperClient:
    """One Gatekeeper deployment and one credential: the tenant's API key (`api_key` with `tenant`), a bearer
    token (`token`: Entra or GitHub OIDC) or a `token_provider` called before each request (so a long wait
    outlives a short-lived token)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        tenant: str | None = None,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        retry_budget: float = 60.0,
        connect_timeout: float = 5.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = check_base_url(base_url)
        given = [name for name, v in (("api_key", api_key), ("token", token), ("token_provider", token_provider)) if v]
        if len(given) != 1:
            raise InvalidRequest(
                "credentials: give exactly one of api_key (with tenant), token or token_provider"
                + (f"; got {', '.join(given)}" if given else ""),
                field="credentials",
            )
        if api_key is not None and not tenant:
            raise InvalidRequest("tenant: the API key needs the tenant id it belongs to", field="tenant")
        self._api_key = api_key
        self._tenant = tenant
        self._token = token
        self._token_provider = token_provider
        self.retry_budget = retry_budget
        self._connect_timeout = connect_timeout
        self._session = session or requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._backoff_random = random.Random()  # noqa: S311 - jitter, not a secret

    def __repr__(self) -> str:  # never the credential
        return f"GatekeeperClient({self.base_url!r})"

    # -- the four routes ------------------------------------------------------------------------------------

    def request(
        self,
        command: Command,
        action: str,
        environment: str,
        *,
        resource: str | None = None,
        context: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        timeout: str | int | float | timedelta | None = None,
    ) -> Approval:
        """Ask for approval of one exact command. Without `idempotency_key` a random one is used (and kept
        on the returned Approval, so the call can be repeated with it). Returns at once: pending (L2) or
        already decided (L0/L1 approved, L3 human only)."""
        body: dict[str, Any] = {
            "command": check_command(command),
            "action": self._check_action(action),
            "target": {"environment": self._check_environment(environment)},
            "idempotency_key": check_key(idempotency_key, "idempotency_key")
            if idempotency_key is not None
            else f"gk-random:{uuid.uuid4().hex}",
        }
        if resource is not None:
            if not isinstance(resource, str) or not RESOURCE.fullmatch(resource):
                raise InvalidRequest(
                    f"target.resource: expected 1..{MAX_RESOURCE_CHARS} characters of text", field="target.resource"
                )
            body["target"]["resource"] = resource
        checked = check_context(context)
        if checked:
            body["context"] = checked
        if timeout is not None:
            body["timeout"] = format_duration(parse_duration(timeout, minimum=MIN_TIMEOUT_SECONDS))
        answer = self._call("POST", "/api/actions", body=body, ok=(200, 201, 202))
        return Approval(self, ActionState.from_answer(answer), body["idempotency_key"])

    def get(self, action_id: str, *, wait: int = 0) -> ActionState:
        """The action's state; with `wait` (0..25 s) the server answers as soon as it leaves `pending`."""
        if isinstance(wait, bool) or not isinstance(wait, int) or not 0 <= wait <= MAX_POLL_SECONDS:
            raise InvalidRequest(f"wait: expected whole seconds 0..{MAX_POLL_SECONDS}", field="wait")
        params = {"wait": str(wait)} if wait else None
        answer = self._call("GET", self._action_path(action_id), params=params, read_timeout=wait + 15.0)
        return ActionState.from_answer(answer)

    def cancel(self, action_id: str) -> ActionState:
        """Withdraw a pending request (the requester's credential). 409 if already decided: InvalidRequest
        with code `conflict`-like; read the state with `get` then."""
        return ActionState.from_answer(self._call("POST", self._action_path(action_id) + "/cancel", body={}))

    def report(
        self, action_id: str, outcome: Outcome, *, exit_code: int | None = None, detail: str | None = None
    ) -> None:
        """Tell Gatekeeper whether the command ran (audited). `executed` on an action that was not approved is
        refused (409 `not-approved`) and recorded as an attempt."""
        if outcome not in OUTCOMES:
            raise InvalidRequest("outcome: expected 'executed' or 'skipped'", field="outcome")
        body: dict[str, Any] = {"outcome": outcome}
        if exit_code is not None:
            if isinstance(exit_code, bool) or not isinstance(exit_code, int) or not -(2**31) <= exit_code < 2**31:
                raise InvalidRequest("exit_code: expected a 32-bit integer", field="exit_code")
            body["exit_code"] = exit_code
        if detail:
            body["detail"] = str(detail)[:MAX_DETAIL_CHARS]
        self._call("POST", self._action_path(action_id) + "/report", body=body, ok=(200, 202, 204))

    # -- plumbing -------------------------------------------------------------------------------------------

    @staticmethod
    def _check_action(action: str) -> str:
        if action not in ACTION_KINDS:
            raise InvalidRequest(
                f"action: {str(action)[:40]!r} is not an action kind; expected one of {', '.join(ACTION_KINDS)}",
                field="action",
            )
        return action

    @staticmethod
    def _check_environment(environment: str) -> str:
        if not isinstance(environment, str) or not environment.strip() or not ENVIRONMENT.fullmatch(environment):
            raise InvalidRequest(
                "target.environment: expected 1..100 of A-Z a-z 0-9 space . _ / - (starting with a letter or digit)",
                field="target.environment",
            )
        return environment

    @staticmethod
    def _action_path(action_id: str) -> str:
        return "/api/actions/" + quote(check_key(action_id, "id"), safe="")

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json, application/problem+json", "User-Agent": "gatekeeper-client/1"}
        if self._api_key is not None:
            headers[KEY_HEADER] = self._api_key
            headers[TENANT_HEADER] = str(self._tenant)
        else:
            token = self._token if self._token is not None else self._provided_token()
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _provided_token(self) -> str:
        assert self._token_provider is not None
        try:
            token = self._token_provider()
        except ClientError:
            raise
        except Exception as exc:  # the provider's own failure (metadata endpoint down, CLI missing)
            raise Unavailable(f"credentials: the token provider failed: {type(exc).__name__}") from None
        if not isinstance(token, str) or not token.strip():
            raise InvalidRequest("credentials: the token provider returned no token", field="credentials")
        return token.strip()

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        read_timeout: float = 20.0,
        ok: tuple[int, ...] = (200,),
    ) -> Any:
        from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_random_exponential

        deadline = self._clock() + self.retry_budget
        backoff = wait_random_exponential(multiplier=0.5, max=20)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                return float(retry_after) + self._backoff_random.uniform(0, 1)
            if isinstance(exc, _Unauthorized):
                return 0.0
            return float(backoff(state))

        def stop(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Unauthorized):  # one fresh token, then the answer stands
                return state.attempt_number > 1
            return self._clock() + (state.upcoming_sleep or 0.0) > deadline

        retrying = Retrying(
            retry=retry_if_exception_type((_Transient, _Unauthorized)),
            wait=wait,
            stop=stop,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(self._once, method, path, body, params, read_timeout, ok)
        except _Transient as exc:
            raise Unavailable(
                f"Gatekeeper is unavailable: {exc.detail}", status=exc.status, retry_after=exc.retry_after
            ) from None
        except _Unauthorized as exc:
            raise exc.error from None

    def _once(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        params: dict[str, str] | None,
        read_timeout: float,
        ok: tuple[int, ...],
    ) -> Any:
        try:
            response = self._session.request(
                method,
                self.base_url + path,
                json=body,
                params=params,
                headers=self._headers(),
                timeout=(self._connect_timeout, read_timeout),
                allow_redirects=False,
                stream=True,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Transient(f"{type(exc).__name__} calling {method} {path}") from None
        with response:
            raw = response.raw.read(MAX_ANSWER_BYTES + 1, decode_content=True) if response.raw else b""
            status = response.status_code
            if status in TRANSIENT_STATUSES:
                raise _Transient(f"HTTP {status}", status, _retry_after(response.headers.get("Retry-After")))
            if len(raw) > MAX_ANSWER_BYTES:
                raise UnexpectedResponse(f"the answer to {method} {path} is over {MAX_ANSWER_BYTES} bytes")
            document = _json_or_none(raw)
            if status in ok:
                return document
            if 300 <= status < 400:
                raise UnexpectedResponse(
                    f"HTTP {status} redirect refused: credentials are only sent to {self.base_url}", status=status
                )
            error = _problem_error(status, document)
            if status == 401 and self._token_provider is not None and isinstance(error, InvalidRequest):
                invalidate = getattr(self._token_provider, "invalidate", None)
                if callable(invalidate):
                    invalidate()  # the next attempt fetches a fresh token instead of the cached one
                raise _Unauthorized(error)
            raise error


def _json_or_none(raw: bytes) -> Any:
    if not raw:
        return None
    from gatekeeper import json_bounded

    try:
        return json_bounded.loads(raw)
    except ValueError:
        return None


def _problem_error(status: int, problem: Any) -> ClientError:
    """The client error for a refusal, carrying the RFC 9457 problem's code, detail and field."""
    doc = problem if isinstance(problem, dict) else {}
    type_uri = doc.get("type")
    code = type_uri.rstrip("/").rsplit("/", 1)[-1] if isinstance(type_uri, str) and type_uri else None
    field = doc.get("field") if isinstance(doc.get("field"), str) else None
    detail = doc.get("detail") if isinstance(doc.get("detail"), str) else doc.get("title")
    text = str(detail)[:500] if detail else f"HTTP {status}"
    if status in (401, 403):
        field = field or "credentials"
    kind: type[ClientError] = InvalidRequest if 400 <= status < 500 else UnexpectedResponse
    return kind(text, field=field, status=status, code=code, problem=doc)


# --- an approval in flight -----------------------------------------------------------------------------------


class Approval:
    """One requested action: its latest state, its idempotency key, and what the requester can do next."""

    def __init__(self, client: GatekeeperClient, state: ActionState, idempotency_key: str) -> None:
        self.client = client
        self.state = state
        self.idempotency_key = idempotency_key

    def __repr__(self) -> str:
        return f"Approval(id={self.id!r}, status={self.state.status!r})"

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def approved(self) -> bool:
        return self.state.approved

    def refresh(self, wait: int = 0) -> ActionState:
        self.state = self.client.get(self.id, wait=wait)
        return self.state

    def wait(self, timeout: float | timedelta | None = None, *, min_interval: float = 1.0) -> ActionState:
        """Long-poll until the action leaves `pending` or `timeout` seconds (default: no local limit) pass;
        returns the last state (still `pending` when the time ran out). A server that answers `pending`
        before its wait is over is not hammered: polls are at least `min_interval` (jittered) apart."""
        limit = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        clock, sleep = self.client._clock, self.client._sleep
        deadline = None if limit is None else clock() + max(0.0, float(limit))
        while self.state.pending:
            remaining = MAX_POLL_SECONDS if deadline is None else deadline - clock()
            if remaining <= 0:
                break
            started = clock()
            self.refresh(wait=max(1, min(MAX_POLL_SECONDS, math.ceil(remaining))))
            if self.state.pending:
                spent = clock() - started
                pause = min_interval * self.client._backoff_random.uniform(1.0, 1.5) - spent
                if pause > 0 and (deadline is None or clock() + pause < deadline):
                    sleep(pause)
        return self.state

    def cancel(self) -> ActionState:
        """Withdraw the request. If it was decided meanwhile (409), the decided state is returned instead."""
        try:
            self.state = self.client.cancel(self.id)
        except InvalidRequest as exc:
            if exc.status != 409:
                raise
            self.state = self.client.get(self.id)
        return self.state

    def report(self, outcome: Outcome, *, exit_code: int | None = None, detail: str | None = None) -> None:
        self.client.report(self.id, outcome, exit_code=exit_code, detail=detail)
