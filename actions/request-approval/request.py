#!/usr/bin/env python3
"""Ask Gatekeeper to approve one exact command from a CI step, wait, and say whether it may run.

Self-contained on purpose: Python 3.9+ standard library only, so it runs on any hosted runner or build agent
without installing anything. Used by the GitHub Action (action.yml next to this file) and the Azure Pipelines
step template (pipelines/templates/request-approval.yml); it speaks the same contract as
`python -m gatekeeper request` and exits with the same codes:

    0 approved (or, with on-deny skip, not approved: the step succeeds and `approved` is false)
    4 denied, expired, cancelled or human only (on-deny fail)
    3 Gatekeeper unavailable (always), or still pending when the local wait ended (on-deny fail)
    2 bad input (the message names the input)        1 anything unexpected

Report mode (GATEKEEPER_REPORT=executed|skipped, GATEKEEPER_ACTION_ID, GATEKEEPER_EXIT_CODE,
GATEKEEPER_REPORT_DETAIL; used by actions/report-outcome) tells Gatekeeper whether the guarded step ran.

Configuration comes from environment variables only (never from text pasted into a shell line, so a
command holding quotes or `$(...)` is data, not code): GATEKEEPER_COMMAND, GATEKEEPER_ACTION,
GATEKEEPER_ENVIRONMENT, GATEKEEPER_RESOURCE, GATEKEEPER_TIMEOUT, GATEKEEPER_ON_DENY (skip|fail),
GATEKEEPER_ARGV_JSON (the command as a JSON list instead of GATEKEEPER_COMMAND), GATEKEEPER_PLAN_FILE,
GATEKEEPER_PLAN_URL, GATEKEEPER_CONTEXT_FILE, GATEKEEPER_IDEMPOTENCY_KEY,
GATEKEEPER_WAIT_SECONDS (local limit), GATEKEEPER_URL; a credential from GATEKEEPER_TOKEN (Entra),
GATEKEEPER_API_KEY + GATEKEEPER_TENANT, or GitHub OIDC (ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN, audience
GATEKEEPER_AUDIENCE, default the Gatekeeper URL). Outputs go to $GITHUB_OUTPUT and $GITHUB_STEP_SUMMARY on
GitHub, to `##vso[task.setvariable ...;isOutput=true]` and an uploaded summary on Azure Pipelines.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import html
import ipaddress
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, Union

EXIT_APPROVED, EXIT_UNEXPECTED, EXIT_BAD_INPUT, EXIT_UNAVAILABLE, EXIT_DENIED = 0, 1, 2, 3, 4
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
DENIED = ("denied", "expired", "cancelled", "human_only")
KEY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_POLL = 25
MAX_RETRY_AFTER = 60.0
MAX_ANSWER = 1 << 20
DEFAULT_LOCAL_WAIT = 6 * 3600
GRACE = 30
CONTEXT_KEYS = (
    "repository",
    "ref",
    "commit",
    "run_url",
    "version_tags",
    "artifacts",
    "ticket",
    "plan_digest",
    "plan_url",
)
Command = Union[str, list[str]]  # noqa: UP007 - evaluated at runtime; the script runs on Python 3.9


class Failure(Exception):
    """Ends the script with `code`; `field` names the input at fault."""

    def __init__(self, code: int, message: str, field: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field, self.status = code, message, field, status


class Transient(Exception):
    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail, self.retry_after = detail, retry_after


def env(name: str) -> str:
    return (os.environ.get(name) or "").strip()


# --- inputs --------------------------------------------------------------------------------------------------

_ISO = re.compile(r"^P(?:(\d{1,3})D)?(?:T(?=\d)(?:(\d{1,4})H)?(?:(\d{1,6})M)?(?:(\d{1,7})S)?)?$")
_SHORT = re.compile(r"^(\d{1,7})([smhd])$")


def parse_duration(text: str, field: str, minimum: int = 1) -> int:
    iso, short = _ISO.match(text.upper()), _SHORT.match(text.lower())
    if iso and text.upper() != "P":
        d, h, m, s = (int(g or 0) for g in iso.groups())
        seconds = d * 86400 + h * 3600 + m * 60 + s
    elif short:
        seconds = int(short.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[short.group(2)]
    else:
        raise Failure(EXIT_BAD_INPUT, f"{field}: {text[:40]!r} is not a duration (PT30M, 30m, 2h)", field)
    if not minimum <= seconds <= 7 * 86400:
        raise Failure(EXIT_BAD_INPUT, f"{field}: must be between {format_duration(minimum)} and 7 days", field)
    return seconds


def format_duration(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return "PT" + ((f"{h}H" if h else "") + (f"{m}M" if m else "") + (f"{s}S" if s else "") or "0S")


def base_url(value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.query:
        raise Failure(
            EXIT_BAD_INPUT, "gatekeeper-url: expected https://host[/prefix] (GATEKEEPER_URL)", "gatekeeper-url"
        )
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise Failure(EXIT_BAD_INPUT, "gatekeeper-url: plain http only to localhost; use https", "gatekeeper-url")
    path = parts.path.rstrip("/")
    if path.endswith("/api"):
        path = path[:-4]
    return f"{parts.scheme}://{parts.netloc}{path}"


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _utf8(value: Any) -> bool:
    """Every string in `value` encodes as UTF-8 (no lone surrogates, which also stand for undecodable bytes
    in environment variables): what cannot be encoded cannot be sent, sealed or shown."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_command() -> Command:
    text = os.environ.get("GATEKEEPER_COMMAND") or ""
    argv = os.environ.get("GATEKEEPER_ARGV_JSON") or ""
    if text.strip() and argv.strip():
        raise Failure(EXIT_BAD_INPUT, "command: give the command text or an argv list, not both", "command")
    if argv.strip():
        try:
            value = json.loads(argv)
        except ValueError:
            value = None
        ok = isinstance(value, list) and 0 < len(value) <= 256 and all(isinstance(a, str) for a in value)
        if not ok or not _utf8(value):
            raise Failure(EXIT_BAD_INPUT, "argv: expected a JSON list of 1..256 strings", "argv")
        return value
    if not text.strip() or len(text) > 8192 or "\x00" in text or not _utf8(text):
        raise Failure(EXIT_BAD_INPUT, "command: the exact command (1..8192 characters) is required", "command")
    return text


def run_identity() -> str | None:
    """The same run string as gatekeeper.client.environment (so both derive the same idempotency key)."""
    if env("GITHUB_ACTIONS") == "true" and env("GITHUB_RUN_ID"):
        names = ("GITHUB_REPOSITORY", "GITHUB_RUN_ID")
        return ":".join(
            [
                "github",
                *(env(n) for n in names),
                env("GITHUB_RUN_ATTEMPT") or "1",
                env("GITHUB_JOB"),
                env("GITHUB_ACTION"),
            ]
        )
    if env("TF_BUILD").lower() == "true" and env("BUILD_BUILDID"):
        names = ("SYSTEM_COLLECTIONURI", "SYSTEM_TEAMPROJECT", "BUILD_BUILDID", "SYSTEM_JOBID")
        return ":".join(["ado", *(env(n) for n in names), env("SYSTEM_JOBATTEMPT") or "1"])
    return None


def derive_key(command: Command, action: str, environment: str, resource: str | None, run: str) -> str:
    material = json.dumps(
        {"command": command, "action": action, "environment": environment, "resource": resource, "run": run},
        sort_keys=True,
        separators=(",", ":"),
    )
    return "gk1:" + hashlib.sha256(material.encode()).hexdigest()


def run_context() -> dict[str, Any]:
    if env("GITHUB_ACTIONS") == "true" and env("GITHUB_RUN_ID"):
        server, repo, run, attempt = (
            env("GITHUB_SERVER_URL") or "https://github.com",
            env("GITHUB_REPOSITORY"),
            env("GITHUB_RUN_ID"),
            env("GITHUB_RUN_ATTEMPT"),
        )
        found = {
            "repository": repo,
            "ref": env("GITHUB_REF"),
            "commit": env("GITHUB_SHA"),
            "run_url": f"{server}/{repo}/actions/runs/{run}" + (f"/attempts/{attempt}" if attempt else "")
            if repo
            else "",
        }
    elif env("TF_BUILD").lower() == "true" and env("BUILD_BUILDID"):
        collection, project = env("SYSTEM_COLLECTIONURI"), env("SYSTEM_TEAMPROJECT")
        found = {
            "repository": env("BUILD_REPOSITORY_NAME"),
            "ref": env("BUILD_SOURCEBRANCH"),
            "commit": env("BUILD_SOURCEVERSION"),
            "run_url": f"{collection.rstrip('/')}/{project}/_build/results?buildId={env('BUILD_BUILDID')}"
            if collection and project
            else "",
        }
    else:
        return {}
    return {k: v for k, v in found.items() if v}


def read_context() -> dict[str, Any]:
    context = run_context()
    path = env("GATEKEEPER_CONTEXT_FILE")
    if path:
        try:
            with open(path, "rb") as handle:
                raw = handle.read(65537)
        except OSError as exc:
            message = f"context-file: {path}: cannot be read: {exc.strerror}"
            raise Failure(EXIT_BAD_INPUT, message, "context-file") from None
        if len(raw) > 65536:
            raise Failure(EXIT_BAD_INPUT, f"context-file: {path}: over 64 KiB", "context-file")

        def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            keys = [k for k, _ in pairs]
            repeated = sorted({k for k in keys if keys.count(k) > 1})
            if repeated:
                raise ValueError(f"key {repeated[0]!r} appears more than once")
            return dict(pairs)

        try:
            document = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
        except (ValueError, RecursionError) as exc:
            message = f"context-file: {path}: not valid JSON: {str(exc)[:120]}"
            raise Failure(EXIT_BAD_INPUT, message, "context-file") from None
        if not isinstance(document, dict):
            raise Failure(EXIT_BAD_INPUT, f"context-file: {path}: expected a JSON object", "context-file")
        for key, value in document.items():
            if key not in CONTEXT_KEYS:
                raise Failure(EXIT_BAD_INPUT, f"context-file: {path}: {key}: unknown key", "context-file")
            if not _utf8(value):
                message = f"context-file: {path}: {key}: holds text that is not valid Unicode (a lone surrogate)"
                raise Failure(EXIT_BAD_INPUT, message, "context-file")
            is_list = key in ("version_tags", "artifacts")
            ok = (
                (isinstance(value, list) and all(isinstance(v, str) for v in value) and len(value) <= 64)
                if is_list
                else isinstance(value, str) and len(value) <= 2048
            )
            if not ok:
                kind = "a list of text" if is_list else "text"
                raise Failure(EXIT_BAD_INPUT, f"context-file: {path}: {key}: expected {kind}", "context-file")
            context[key] = value
    plan = env("GATEKEEPER_PLAN_FILE")
    if plan:
        digest = hashlib.sha256()
        try:
            with open(plan, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError as exc:
            raise Failure(EXIT_BAD_INPUT, f"plan-file: {plan}: cannot be read: {exc.strerror}", "plan-file") from None
        context["plan_digest"] = "sha256:" + digest.hexdigest()
    plan_url = env("GATEKEEPER_PLAN_URL")
    if plan_url:
        if urllib.parse.urlsplit(plan_url).scheme not in ("https", "http"):
            raise Failure(EXIT_BAD_INPUT, "plan-url: expected an http(s) URL", "plan-url")
        context["plan_url"] = plan_url
    return context


# --- HTTP ----------------------------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Credentials go to the Gatekeeper URL only: a redirect is an error, never followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return min(float(value.strip()), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(when.timestamp() - time.time(), MAX_RETRY_AFTER)) if when.tzinfo else None


def _jwt_expiry(token: str) -> float | None:
    try:
        payload = token.split(".")[1]
        exp = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get("exp")
        return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None
    except (IndexError, ValueError, AttributeError):
        return None


class Credentials:
    """Headers for each request: a bearer token (Entra or a renewed GitHub OIDC token) or the API key."""

    def __init__(self, audience: str) -> None:
        self.token, self.api_key, self.tenant = (
            env("GATEKEEPER_TOKEN"),
            env("GATEKEEPER_API_KEY"),
            env("GATEKEEPER_TENANT"),
        )
        self.oidc_url, self.oidc_token = env("ACTIONS_ID_TOKEN_REQUEST_URL"), env("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        self.audience = env("GATEKEEPER_AUDIENCE") or audience
        if re.fullmatch(r"\$\([^)]*\)", self.api_key):  # Azure Pipelines left `$(name)`: no such secret variable
            raise Failure(
                EXIT_BAD_INPUT,
                f"credentials: GATEKEEPER_API_KEY is the unexpanded {self.api_key}; is that secret variable defined?",
                "credentials",
            )
        self._cached: str | None = None
        self._expires = 0.0
        if not self.token and not self.api_key and not (self.oidc_url and self.oidc_token):
            raise Failure(
                EXIT_BAD_INPUT,
                "credentials: none found; give the job `permissions: id-token: write`, "
                "or set api-key and tenant (GATEKEEPER_API_KEY, GATEKEEPER_TENANT) or GATEKEEPER_TOKEN",
                "credentials",
            )
        if not self.token and self.api_key and not self.tenant:
            raise Failure(EXIT_BAD_INPUT, "tenant: the API key needs its tenant id (GATEKEEPER_TENANT)", "tenant")

    @property
    def renewable(self) -> bool:
        return not self.token and not self.api_key

    def invalidate(self) -> None:
        self._cached = None

    def headers(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.api_key:
            return {"x-functions-key": self.api_key, "X-Gatekeeper-Tenant": self.tenant}
        if self._cached is None or time.time() >= self._expires - 60:
            self._cached = self._fetch_oidc()
            self._expires = _jwt_expiry(self._cached) or time.time() + 120
        return {"Authorization": f"Bearer {self._cached}"}

    def _fetch_oidc(self) -> str:
        parts = urllib.parse.urlsplit(self.oidc_url)
        query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "audience"]
        url = urllib.parse.urlunsplit(
            parts._replace(query=urllib.parse.urlencode([*query, ("audience", self.audience)]))
        )
        request = urllib.request.Request(url, headers={"Authorization": f"bearer {self.oidc_token}"})  # noqa: S310 - the scheme is checked (https, or http to loopback)
        try:
            with _OPENER.open(request, timeout=15) as response:
                value = json.loads(response.read(65536)).get("value")
        except (urllib.error.URLError, OSError, ValueError, AttributeError) as exc:
            message = f"the GitHub OIDC token could not be fetched ({type(exc).__name__})"
            raise Failure(EXIT_UNAVAILABLE, message) from None
        if not isinstance(value, str) or not value:
            raise Failure(EXIT_UNAVAILABLE, "the GitHub OIDC token endpoint answered without a token")
        return value


class Api:
    def __init__(self, url: str, credentials: Credentials, budget: float) -> None:
        self.url, self.credentials, self.budget = url, credentials, budget

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        read_timeout: float = 20.0,
        budget: float | None = None,
    ) -> tuple[int, Any]:
        """(status, JSON) of a 2xx answer; transient failures retried with jittered backoff until the budget
        is spent (Retry-After honoured, capped); a refusal raises Failure naming the field."""
        deadline = time.monotonic() + (self.budget if budget is None else budget)
        attempt, renewed = 0, False
        while True:
            attempt += 1
            try:
                return self._once(method, path, body, read_timeout)
            except Transient as exc:
                pause = (
                    exc.retry_after + random.uniform(0, 1)  # noqa: S311 - jitter, not a secret
                    if exc.retry_after is not None
                    else random.uniform(0, min(20.0, 0.5 * 2**attempt))  # noqa: S311 - jitter, not a secret
                )
                if time.monotonic() + pause > deadline:
                    raise Failure(EXIT_UNAVAILABLE, f"Gatekeeper is unavailable: {exc.detail}") from None
                time.sleep(pause)
            except Failure as exc:
                if exc.status == 401 and self.credentials.renewable and not renewed:
                    renewed = True
                    self.credentials.invalidate()
                    continue
                raise

    def _once(self, method: str, path: str, body: dict[str, Any] | None, read_timeout: float) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {
            "Accept": "application/json",
            "User-Agent": "gatekeeper-request-approval/1",
            **self.credentials.headers(),
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)  # noqa: S310 - the scheme is checked (https, or http to loopback)
        try:
            with _OPENER.open(request, timeout=read_timeout) as response:
                status, raw = response.status, response.read(MAX_ANSWER + 1)
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read(MAX_ANSWER + 1) if error.fp else b""
            if status in (429, 502, 503, 504):
                raise Transient(f"HTTP {status}", _retry_after(error.headers.get("Retry-After"))) from None
            if 300 <= status < 400:
                message = f"HTTP {status}: redirect refused (credentials go to {self.url} only)"
                raise Failure(EXIT_UNEXPECTED, message) from None
            problem = _json(raw) if isinstance(_json(raw), dict) else {}
            field = problem.get("field") if isinstance(problem.get("field"), str) else None
            detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")[:300]
            if status in (401, 403):
                field = field or "credentials"
            code = EXIT_BAD_INPUT if 400 <= status < 500 else EXIT_UNEXPECTED
            raise Failure(code, detail, field, status) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise Transient(f"{type(exc).__name__} calling {method} {path}") from None
        if len(raw) > MAX_ANSWER:
            raise Failure(EXIT_UNEXPECTED, "the answer is too large")
        return status, _json(raw)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def state_of(answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict) or not isinstance(answer.get("id"), str) or not KEY.match(answer["id"]):
        raise Failure(EXIT_UNEXPECTED, "the answer has no valid action id")
    if answer.get("status") not in ("pending", "approved", *DENIED):
        raise Failure(EXIT_UNEXPECTED, "the answer has an unknown status")
    return answer


# --- outputs -------------------------------------------------------------------------------------------------


def vso_escape(value: str) -> str:
    """Azure Pipelines logging-command escaping (the agent's own table): %, CR, LF, ; and ]."""
    return (
        value.replace("%", "%AZP25").replace("\r", "%0D").replace("\n", "%0A").replace(";", "%3B").replace("]", "%5D")
    )


def write_outputs(values: dict[str, str]) -> None:
    path = env("GITHUB_OUTPUT")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            for name, value in values.items():
                delimiter = f"ghadelimiter_{uuid.uuid4()}"
                while delimiter in value:
                    delimiter = f"ghadelimiter_{uuid.uuid4()}"
                handle.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
    if env("TF_BUILD").lower() == "true":
        for name, value in values.items():
            print(f"##vso[task.setvariable variable={name.replace('-', '_')};isOutput=true]{vso_escape(value)}")


def summary_markdown(state: dict[str, Any], command: Command, outcome: str) -> str:
    e = lambda value: html.escape(str(value), quote=True)  # noqa: E731
    shown = command if isinstance(command, str) else " ".join(json.dumps(a) if " " in a else a for a in command)
    rows = [
        ("Command", f"<pre>{e(shown)}</pre>"),
        ("Action", e(state.get("action") or env("GATEKEEPER_ACTION"))),
        ("Environment", e(state.get("environment") or env("GATEKEEPER_ENVIRONMENT"))),
        ("Level", e(state.get("level") or "?")),
        ("Status", e(state.get("status") or outcome)),
    ]
    for label, key in (("Decided by", "decided_by"), ("Reason", "reason"), ("Action id", "id")):
        if state.get(key):
            rows.append((label, e(state[key])))
    link = state.get("approval_url")
    if isinstance(link, str) and urllib.parse.urlsplit(link).scheme in ("https", "http"):
        rows.append(("Approval", f'<a href="{e(link)}">{e(link)}</a>'))
    table = "".join(f"<tr><th>{label}</th><td>{value}</td></tr>" for label, value in rows)
    return f"### Gatekeeper: {e(outcome)}\n\n<table>{table}</table>\n"


def write_summary(markdown: str) -> None:
    path = env("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(markdown)
    elif env("TF_BUILD").lower() == "true":
        folder = env("AGENT_TEMPDIRECTORY") or tempfile.gettempdir()
        file = os.path.join(folder, f"gatekeeper-{uuid.uuid4().hex}.md")
        with open(file, "w", encoding="utf-8") as handle:
            handle.write(markdown)
        print(f"##vso[task.uploadsummary]{vso_escape(file)}")


def notice(kind: str, message: str) -> None:
    """A warning or error annotation the CI shows next to the step (escaped for its format)."""
    if env("GITHUB_ACTIONS") == "true":
        text = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        print(f"::{kind}::{text}")
    elif env("TF_BUILD").lower() == "true":
        print(f"##vso[task.logissue type={kind}]{vso_escape(message)}")
    else:
        print(message, file=sys.stderr)


# --- the step ------------------------------------------------------------------------------------------------


def finish(state: dict[str, Any], command: Command, outcome: str, code: int) -> int:
    approved = outcome == "approved"
    write_outputs(
        {
            "approved": "true" if approved else "false",
            "decision": outcome,
            "action-id": str(state.get("id") or ""),
            "approval-url": str(state.get("approval_url") or ""),
            "level": str(state.get("level") or ""),
        }
    )
    write_summary(summary_markdown(state, command, outcome))
    return code


def report_main() -> int:
    """Report mode (GATEKEEPER_REPORT=executed|skipped): tell Gatekeeper whether the guarded step ran. 0 when
    recorded; 4 when `executed` is refused because the action was not approved (the attempt is audited)."""
    try:
        outcome, action_id = env("GATEKEEPER_REPORT"), env("GATEKEEPER_ACTION_ID")
        if outcome not in ("executed", "skipped"):
            raise Failure(EXIT_BAD_INPUT, "outcome: expected executed or skipped", "outcome")
        if not KEY.match(action_id):
            raise Failure(EXIT_BAD_INPUT, "action-id: the gate step's action-id output is required", "action-id")
        body: dict[str, Any] = {"outcome": outcome}
        code = env("GATEKEEPER_EXIT_CODE")
        if code:
            if not re.fullmatch(r"-?\d{1,10}", code) or not -(2**31) <= int(code) < 2**31:
                raise Failure(EXIT_BAD_INPUT, "exit-code: expected a 32-bit integer", "exit-code")
            body["exit_code"] = int(code)
        detail = os.environ.get("GATEKEEPER_REPORT_DETAIL") or ""
        if detail:
            body["detail"] = detail[:500]
        url = base_url(env("GATEKEEPER_URL"))
        api = Api(url, Credentials(url), 60.0)
        api.call("POST", "/api/actions/" + urllib.parse.quote(action_id, safe="") + "/report", body)
        print(f"Gatekeeper: reported {outcome} for action {action_id}")
        return EXIT_APPROVED
    except Failure as failure:
        where = f" ({failure.field})" if failure.field else ""
        notice("error", f"Gatekeeper: {failure.message}{where}")
        return EXIT_DENIED if failure.status == 409 else failure.code


def main() -> int:
    if env("GATEKEEPER_REPORT"):
        return report_main()
    on_deny = env("GATEKEEPER_ON_DENY") or "skip"
    state: dict[str, Any] = {}
    command: Command = ""
    outcome = "error"
    try:
        if on_deny not in ("skip", "fail"):
            raise Failure(EXIT_BAD_INPUT, "on-deny: expected skip or fail", "on-deny")
        command = read_command()
        action, environment, resource = (
            env("GATEKEEPER_ACTION"),
            env("GATEKEEPER_ENVIRONMENT"),
            env("GATEKEEPER_RESOURCE"),
        )
        if action not in ACTION_KINDS:
            raise Failure(EXIT_BAD_INPUT, f"action: {action[:40]!r} is not one of {', '.join(ACTION_KINDS)}", "action")
        if not environment:
            raise Failure(EXIT_BAD_INPUT, "environment: required", "environment")
        timeout = parse_duration(env("GATEKEEPER_TIMEOUT"), "timeout", 60) if env("GATEKEEPER_TIMEOUT") else None
        local = env("GATEKEEPER_WAIT_SECONDS")
        if local and (not local.isdigit() or not 1 <= int(local) <= 7 * 86400):
            raise Failure(EXIT_BAD_INPUT, "wait-seconds: expected whole seconds 1..604800", "wait-seconds")
        budget = env("GATEKEEPER_RETRY_SECONDS") or "60"
        if not budget.isdigit() or not 1 <= int(budget) <= 3600:
            raise Failure(EXIT_BAD_INPUT, "GATEKEEPER_RETRY_SECONDS: expected whole seconds 1..3600", "retry-seconds")
        url = base_url(env("GATEKEEPER_URL"))
        key = env("GATEKEEPER_IDEMPOTENCY_KEY")
        if key and not KEY.match(key):
            raise Failure(EXIT_BAD_INPUT, "idempotency-key: 1..128 of A-Z a-z 0-9 . _ : -", "idempotency-key")
        run = run_identity()
        key = key or (
            derive_key(command, action, environment, resource or None, run) if run else f"gk-random:{uuid.uuid4().hex}"
        )
        body: dict[str, Any] = {
            "command": command,
            "action": action,
            "target": {"environment": environment},
            "idempotency_key": key,
        }
        if resource:
            body["target"]["resource"] = resource
        context = read_context()
        if context:
            body["context"] = context
        if timeout:
            body["timeout"] = format_duration(timeout)
        api = Api(url, Credentials(url), float(budget))

        _, answer = api.call("POST", "/api/actions", body)
        state = state_of(answer)
        path = "/api/actions/" + urllib.parse.quote(state["id"], safe="")
        if state["status"] == "pending":
            print(f"Waiting for approval of action {state['id']}: {state.get('approval_url') or ''}", flush=True)
            limit = int(local) if local else (timeout + min(GRACE, timeout) if timeout else DEFAULT_LOCAL_WAIT)
            deadline = time.monotonic() + limit
            try:
                while state["status"] == "pending" and (left := deadline - time.monotonic()) > 0:
                    wait = max(1, min(MAX_POLL, int(left + 0.999)))
                    started = time.monotonic()
                    _, answer = api.call(
                        "GET", f"{path}?wait={wait}", read_timeout=wait + 15.0, budget=max(float(budget), left)
                    )
                    state = state_of(answer)
                    if state["status"] == "pending" and time.monotonic() - started < 1:
                        # a server that answers early is not hammered
                        time.sleep(random.uniform(1.0, 1.5))  # noqa: S311 - jitter, not a secret
            except KeyboardInterrupt:
                state = cancel(api, path, state)
                notice("warning", f"Cancelled while waiting; the approval request {state['id']} was withdrawn.")
                return finish(state, command, "cancelled", 130)
            if state["status"] == "pending":
                state = cancel(api, path, state)
        status = state["status"]
        if status == "approved":
            return finish(state, command, "approved", EXIT_APPROVED)
        timed_out = status in ("pending", "cancelled") and not state.get("decided_by")
        outcome = "timeout" if timed_out else status
        message = (
            f"Gatekeeper: {outcome} (level {state.get('level') or '?'})"
            + (f" by {state['decided_by']}" if state.get("decided_by") else "")
            + (f": {state['reason']}" if state.get("reason") else "")
            + f" [action {state['id']}]"
        )
        if on_deny == "skip":
            with contextlib.suppress(Failure):  # best effort: the step's answer does not depend on it
                api.call(
                    "POST",
                    path + "/report",
                    {"outcome": "skipped", "detail": f"not run: {outcome} (on-deny: skip)"},
                    budget=10,
                )
            notice("warning", message + "; the guarded step is skipped (on-deny: skip).")
            return finish(state, command, outcome, EXIT_APPROVED)
        notice("error", message)
        return finish(state, command, outcome, EXIT_UNAVAILABLE if timed_out else EXIT_DENIED)
    except Failure as failure:
        where = f" ({failure.field})" if failure.field else ""
        notice("error", f"Gatekeeper: {failure.message}{where}")
        outcome = {EXIT_BAD_INPUT: "invalid", EXIT_UNAVAILABLE: "unavailable"}.get(failure.code, "error")
        return finish(state, command, outcome, failure.code)


def cancel(api: Api, path: str, state: dict[str, Any]) -> dict[str, Any]:
    """Withdraw a request nobody waits for; a decision that won the race is read back and counts."""
    try:
        _, answer = api.call("POST", path + "/cancel", {}, budget=10)
        return state_of(answer)
    except Failure as failure:
        if failure.status == 409:
            try:
                return state_of(api.call("GET", path, budget=10)[1])
            except Failure:
                return state
        return state


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # a cancelled job: withdraw the request on the way out


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    try:
        sys.exit(main())
    except Exception as exc:  # the contract's "anything unexpected"
        print(f"Gatekeeper: unexpected {type(exc).__name__}", file=sys.stderr)
        sys.exit(EXIT_UNEXPECTED)
