"""Local stand-ins for the services Gatekeeper calls back: GitHub REST, Azure DevOps, a webhook receiver and
Microsoft Graph. Each is a small threaded HTTP server on 127.0.0.1 (free port) that answers the documented
wire format, checks authentication and request bodies, records every request, and can be told to fail.

The tests run the real clients (requests, msgraph-sdk) against them; the demo starts them and prints
`report()` ("GitHub was called back: approved ..."). Recorded requests keep their headers for assertions;
`report()` and `RecordedRequest.summary()` never print them.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

import jwt as pyjwt
from azure.core.credentials import AccessToken
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jsonschema import Draft202012Validator

from gatekeeper.integrations.notify import GUID
from gatekeeper.integrations.webhook import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_webhook_signature,
)

Response = tuple[int, dict[str, str], bytes]

REPO_ROOT = Path(__file__).resolve().parents[2]
GITHUB_REVIEW_SCHEMA_PATH = (
    REPO_ROOT.parent / "shared" / "fixtures" / "github" / "review-custom-gates-for-run.request-schema.json"
)

# Used only when the published fixture is not next to the repository (e.g. a packaged demo). Same content as
# the fixture's request body schema (github/rest-api-description, operation actions/review-custom-gates-for-run).
_EMBEDDED_REVIEW_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/review-custom-gates-comment-required"},
                        {"$ref": "#/components/schemas/review-custom-gates-state-required"},
                    ]
                }
            }
        }
    },
    "components": {
        "schemas": {
            "review-custom-gates-comment-required": {
                "type": "object",
                "properties": {"environment_name": {"type": "string"}, "comment": {"type": "string"}},
                "required": ["environment_name", "comment"],
            },
            "review-custom-gates-state-required": {
                "type": "object",
                "properties": {
                    "environment_name": {"type": "string"},
                    "state": {"type": "string", "enum": ["approved", "rejected"]},
                    "comment": {"type": "string"},
                },
                "required": ["environment_name", "state"],
            },
        }
    },
}


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


def _empty(status: int) -> Response:
    return status, {}, b""


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # percent-decoded, without the query
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int  # what the server answered

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def summary(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


@dataclass
class _Failure:
    remaining: int
    status: int
    path_contains: str
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


class LocalServer:
    """Base class: a ThreadingHTTPServer on a free loopback port, started in a daemon thread."""

    name = "local server"

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> Self:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, out_headers, payload = owner._dispatch(
                    self.command, unquote(parts.path), parse_qs(parts.query), headers, body
                )
                self.send_response(status)
                for name, value in out_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if payload:
                    self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # behaviour
    def fail_next(
        self,
        times: int,
        status: int = 502,
        *,
        path_contains: str = "",
        retry_after: int | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` (and `Retry-After`), then behave."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._lock:
            self._failures.append(_Failure(times, status, path_contains, headers, body))

    def requests_to(self, path_contains: str, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if path_contains in r.path and (method is None or r.method == method)]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._failures.clear()

    def report(self) -> list[str]:
        with self._lock:
            return [r.summary() for r in self.requests]

    def _dispatch(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        injected: Response | None = None
        with self._lock:
            for failure in self._failures:
                if failure.remaining > 0 and failure.path_contains in path:
                    failure.remaining -= 1
                    payload = failure.body if failure.body is not None else self._failure_body(failure.status)
                    injected = _json(failure.status, payload, failure.headers)
                    break
        if injected is None:
            try:
                injected = self.route(method, path, query, headers, body)
            except Exception as exc:  # a stand-in bug must surface as a 500, not a hung client
                injected = _json(500, {"message": f"local server error: {type(exc).__name__}: {exc}"})
        with self._lock:
            self.requests.append(RecordedRequest(method, path, query, headers, body, injected[0]))
        return injected

    def _failure_body(self, status: int) -> Any:
        return {"message": f"injected failure {status}"}

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        raise NotImplementedError


def _bearer(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() in ("bearer", "token") and token.strip() else None


# --- GitHub ------------------------------------------------------------------------------------------


def load_review_schema(path: Path | None = None) -> dict[str, Any]:
    """The published request schema for `actions/review-custom-gates-for-run` (fixture), or the embedded copy."""
    candidate = path or GITHUB_REVIEW_SCHEMA_PATH
    if candidate.exists():
        return json.loads(candidate.read_text(encoding="utf-8"))
    return _EMBEDDED_REVIEW_SCHEMA


def review_validator(document: dict[str, Any]) -> Draft202012Validator:
    """A validator for the request body whose `#/components/...` refs resolve inside the same document."""
    schema = dict(document["requestBody"]["content"]["application/json"]["schema"])
    schema["components"] = document["components"]
    return Draft202012Validator(schema)


class LocalGitHubServer(LocalServer):
    """GitHub REST for a GitHub App: installation tokens (App JWT verified with the App's public key),
    installation lookup and the deployment protection rule review endpoint (body validated against the
    published schema); and GraphQL `organization.samlIdentityProvider.externalIdentities` (the one query
    Gatekeeper sends), answered from `saml_identities` (org login -> [{"login", "databaseId", "nameId",
    "scimUsername"}], paged by `graphql_page_size`); orgs in `graphql_forbidden` get GitHub's
    "Resource not accessible by integration" error."""

    name = "local GitHub"

    def __init__(
        self,
        app_id: str | int,
        public_key: rsa.RSAPublicKey | bytes,
        *,
        installation_id: int = 1,
        token_ttl_seconds: int = 3600,
        review_schema: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.app_id = str(app_id)
        loaded = serialization.load_pem_public_key(public_key) if isinstance(public_key, bytes) else public_key
        if not isinstance(loaded, rsa.RSAPublicKey):
            raise ValueError("public_key: the GitHub App key must be RSA")
        self.public_key: rsa.RSAPublicKey = loaded
        self.installation_id = installation_id
        self.token_ttl_seconds = token_ttl_seconds
        self._validator = review_validator(review_schema or load_review_schema())
        self.tokens: dict[str, float] = {}  # token -> expiry (unix seconds)
        self.reviews: list[dict[str, Any]] = []
        self.jwt_claims: list[dict[str, Any]] = []
        self.saml_identities: dict[str, list[dict[str, Any]]] = {}
        self.graphql_forbidden: set[str] = set()
        self.graphql_page_size = 100

    @property
    def api_url(self) -> str:
        return self.url

    def deployment_callback_url(self, owner: str, repo: str, run_id: int) -> str:
        return f"{self.url}/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule"

    def comments_for(self, owner: str, repo: str, run_id: int, environment: str) -> list[str]:
        with self._lock:
            return [
                r["body"]["comment"]
                for r in self.reviews
                if (r["owner"], r["repo"], r["run_id"]) == (owner, repo, run_id)
                and r["body"].get("environment_name") == environment
                and "comment" in r["body"]
            ]

    def decisions(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.reviews if "state" in r["body"]]

    def revoke_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    def _app_jwt_error(self, headers: dict[str, str]) -> Response | None:
        token = _bearer(headers)
        if not token:
            return _json(401, {"message": "A JSON web token could not be decoded"})
        try:
            claims = pyjwt.decode(
                token, self.public_key, algorithms=["RS256"], options={"require": ["iat", "exp", "iss"]}
            )
        except pyjwt.PyJWTError as exc:
            return _json(401, {"message": f"A JSON web token could not be decoded ({type(exc).__name__})"})
        now = time.time()
        if str(claims["iss"]) != self.app_id:
            return _json(401, {"message": "'Issuer' claim ('iss') must be the app id"})
        if claims["exp"] - now > 600 or claims["exp"] - claims["iat"] > 660:
            return _json(401, {"message": "'Expiration time' claim ('exp') is too far in the future"})
        with self._lock:
            self.jwt_claims.append(claims)
        return None

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        parts = path.strip("/").split("/")
        if (
            method == "POST"
            and len(parts) == 4
            and parts[:2] == ["app", "installations"]
            and parts[3] == "access_tokens"
        ):
            if (error := self._app_jwt_error(headers)) is not None:
                return error
            if parts[2] != str(self.installation_id):
                return _json(404, {"message": "Not Found"})
            token = "ghs_" + secrets.token_urlsafe(27)
            expires = time.time() + self.token_ttl_seconds
            with self._lock:
                self.tokens[token] = expires
            return _json(
                201,
                {
                    "token": token,
                    "expires_at": datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "permissions": {"actions": "read", "deployments": "write"},
                    "repository_selection": "all",
                },
            )
        if method == "POST" and parts == ["graphql"]:
            return self._graphql(headers, body)
        if method == "GET" and len(parts) == 4 and parts[0] == "repos" and parts[3] == "installation":
            if (error := self._app_jwt_error(headers)) is not None:
                return error
            return _json(
                200, {"id": self.installation_id, "app_id": int(self.app_id) if self.app_id.isdigit() else self.app_id}
            )
        if (
            method == "POST"
            and len(parts) == 7
            and parts[0] == "repos"
            and parts[3:5] == ["actions", "runs"]
            and parts[6] == "deployment_protection_rule"
        ):
            presented = _bearer(headers)
            with self._lock:
                valid = presented is not None and self.tokens.get(presented, 0) > time.time()
            if not valid:
                return _json(401, {"message": "Bad credentials"})
            try:
                document = json.loads(body or b"null")
            except ValueError:
                return _json(400, {"message": "Problems parsing JSON"})
            errors = sorted(self._validator.iter_errors(document), key=lambda e: list(e.path))
            if errors:
                return _json(422, {"message": "Validation Failed", "errors": [e.message for e in errors]})
            with self._lock:
                self.reviews.append({"owner": parts[1], "repo": parts[2], "run_id": int(parts[5]), "body": document})
            return _empty(204)
        return _json(404, {"message": "Not Found"})

    def _graphql(self, headers: dict[str, str], body: bytes) -> Response:
        presented = _bearer(headers)
        with self._lock:
            valid = presented is not None and self.tokens.get(presented, 0) > time.time()
        if not valid:
            return _json(401, {"message": "Bad credentials"})
        try:
            document = json.loads(body or b"null")
            query, variables = document["query"], document.get("variables") or {}
        except (ValueError, TypeError, KeyError):
            return _json(400, {"message": "Problems parsing JSON"})
        if "samlIdentityProvider" not in query or "externalIdentities" not in query:
            return _json(200, {"errors": [{"message": "this local GitHub answers only the SAML identities query"}]})
        org = str(variables.get("org") or "").lower()
        if org in self.graphql_forbidden:
            error = {"type": "FORBIDDEN", "path": ["organization"], "message": "Resource not accessible by integration"}
            return _json(200, {"data": {"organization": None}, "errors": [error]})
        if org not in self.saml_identities:
            return _json(200, {"data": {"organization": {"samlIdentityProvider": None}}})
        start = int(variables.get("after") or 0)
        entries = self.saml_identities[org][start : start + self.graphql_page_size]
        end = start + len(entries)
        nodes = [
            {
                "samlIdentity": {"nameId": e["nameId"]} if e.get("nameId") else None,
                "scimIdentity": {"username": e["scimUsername"]} if e.get("scimUsername") else None,
                "user": {"login": e["login"], "databaseId": e.get("databaseId")} if e.get("login") else None,
            }
            for e in entries
        ]
        page = {"hasNextPage": end < len(self.saml_identities[org]), "endCursor": str(end)}
        identities = {"pageInfo": page, "nodes": nodes}
        return _json(200, {"data": {"organization": {"samlIdentityProvider": {"externalIdentities": identities}}}})

    def report(self) -> list[str]:
        lines = []
        with self._lock:
            for review in self.reviews:
                body = review["body"]
                what = f"review {body['state']}" if "state" in body else "progress comment"
                lines.append(
                    f"GitHub was called back: {what} for {review['owner']}/{review['repo']} run "
                    f"{review['run_id']} environment {body['environment_name']}"
                    + (f" ({body['comment']!r})" if body.get("comment") else "")
                )
        return lines


# --- Azure DevOps ------------------------------------------------------------------------------------


class LocalAzureDevOpsServer(LocalServer):
    """The plan events endpoint (`TaskCompleted`) and the timeline record feed of an Azure DevOps
    collection at `plan_url`, accepting the job's AuthToken as Bearer or as Basic password."""

    name = "local Azure DevOps"
    EVENT_KEYS = frozenset({"name", "taskId", "jobId", "result"})

    def __init__(self, auth_token: str, *, organization: str = "fabrikam"):
        super().__init__()
        self.auth_token = auth_token
        self.organization = organization
        self.completions: list[dict[str, Any]] = []
        self.feed: list[dict[str, Any]] = []

    @property
    def plan_url(self) -> str:
        """What `$(system.CollectionUri)` would be: ends with a slash."""
        return f"{self.url}/{self.organization}/"

    def _auth_scheme(self, headers: dict[str, str]) -> str | None:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and secrets.compare_digest(value.strip(), self.auth_token):
            return "bearer"
        if scheme.lower() == "basic":
            try:
                _, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            if secrets.compare_digest(password, self.auth_token):
                return "basic"
        return None

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        if "//" in path:
            return _json(404, {"message": "The resource cannot be found (double slash in the path)."})
        parts = path.strip("/").split("/")
        # {org}/{project}/_apis/distributedtask/hubs/{hub}/plans/{plan}/...
        if (
            len(parts) < 8
            or parts[0] != self.organization
            or parts[2:5] != ["_apis", "distributedtask", "hubs"]
            or parts[6] != "plans"
        ):
            return _json(404, {"message": "The resource cannot be found."})
        scheme = self._auth_scheme(headers)
        if scheme is None:
            return _json(401, {"message": "TF400813: The user is not authorized to access this resource."})
        project, hub, plan = parts[1], parts[5], parts[7]
        try:
            document = json.loads(body or b"null")
        except ValueError:
            return _json(400, {"message": "The request body is not valid JSON."})
        api_version = (query.get("api-version") or [""])[0]
        if method == "POST" and parts[8:] == ["events"]:
            if api_version != "2.0-preview.1":
                return _json(400, {"message": f"api-version {api_version!r} is not the documented 2.0-preview.1"})
            if (
                not isinstance(document, dict)
                or set(document) != self.EVENT_KEYS
                or document["name"] != "TaskCompleted"
                or document["result"] not in ("succeeded", "failed")
            ):
                return _json(400, {"message": "Expected {name: TaskCompleted, taskId, jobId, result}."})
            with self._lock:
                self.completions.append(
                    {"project": project, "hub": hub, "plan": plan, "body": document, "auth_scheme": scheme}
                )
            return _empty(200)
        if (
            method == "POST"
            and len(parts) == 13
            and parts[8] == "timelines"
            and parts[10] == "records"
            and parts[12:] == ["feed"]
        ):
            if (
                not isinstance(document, dict)
                or not isinstance(document.get("value"), list)
                or document.get("count") != len(document["value"])
            ):
                return _json(400, {"message": "Expected {value: [lines], count: n}."})
            with self._lock:
                self.feed.append({"plan": plan, "timeline": parts[9], "record": parts[11], "lines": document["value"]})
            return _empty(200)
        return _json(404, {"message": "The resource cannot be found."})

    def report(self) -> list[str]:
        with self._lock:
            lines = [f"Azure DevOps check console: {line}" for entry in self.feed for line in entry["lines"]]
            lines += [
                f"Azure DevOps was called back: TaskCompleted {c['body']['result']} for plan {c['plan']} "
                f"task {c['body']['taskId']}"
                for c in self.completions
            ]
        return lines


# --- generic webhook receiver ------------------------------------------------------------------------


class LocalWebhookReceiver(LocalServer):
    """A CI's callback endpoint: verifies the Gatekeeper signature (401 when it does not verify)."""

    name = "local webhook receiver"

    def __init__(self, secret: bytes, *, tolerance: int = 300):
        super().__init__()
        self._secret = secret
        self.tolerance = tolerance
        self.deliveries: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"LocalWebhookReceiver(url={self.url if self._server else None!r})"

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        if method != "POST":
            return _json(405, {"message": "POST only"})
        verified = verify_webhook_signature(
            self._secret,
            headers.get(TIMESTAMP_HEADER.lower(), ""),
            body,
            headers.get(SIGNATURE_HEADER.lower(), ""),
            self.tolerance,
        )
        if not verified:
            return _json(401, {"message": "signature does not verify"})
        delivery = headers.get(DELIVERY_HEADER.lower(), "")
        with self._lock:
            duplicate = any(d["delivery_id"] == delivery for d in self.deliveries)
            self.deliveries.append(
                {
                    "path": path,
                    "event": headers.get(EVENT_HEADER.lower()),
                    "delivery_id": delivery,
                    "duplicate": duplicate,
                    "body": json.loads(body),
                }
            )
        return _json(200, {"received": True, "duplicate": duplicate})

    def report(self) -> list[str]:
        with self._lock:
            return [
                f"CI webhook received {d['event']} (signature verified)"
                + (f": {d['body'].get('state')}" if d["body"].get("state") else "")
                for d in self.deliveries
            ]


# --- Microsoft Graph ---------------------------------------------------------------------------------


class StaticTokenCredential:
    """A `TokenCredential` that hands out one fixed bearer token (local Graph stand-in, demo). Records the
    scopes it was asked for. Its repr never shows the token."""

    def __init__(self, token: str, *, expires_in: int = 3600):
        self._token = token
        self._expires_in = expires_in
        self.scopes_requested: list[tuple[str, ...]] = []

    def __repr__(self) -> str:
        return "StaticTokenCredential(token=***)"

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.scopes_requested.append(scopes)
        return AccessToken(self._token, int(time.time()) + self._expires_in)


def _lower_keys(value: Any) -> Any:
    """Graph property names are case-insensitive (msgraph-sdk sends `Message`, `SaveToSentItems`)."""
    if isinstance(value, dict):
        return {(k[:1].lower() + k[1:]) if not k.startswith("@") else k: _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


class LocalGraphServer(LocalServer):
    """Microsoft Graph v1.0: `users/{id}/teamwork/sendActivityNotification`,
    `teams/{id}/sendActivityNotification`, `users/{sender}/sendMail`, `users/{id or userPrincipalName}` (with
    `$select`; `users` entries carry `mail`, `userPrincipalName`, `proxyAddresses`), `groups/{id}` and
    `users/{id}/checkMemberGroups` (at most 20 group ids, answered from `memberships`: user id -> the
    groups it belongs to, nested ones included). `not_installed` lists users/teams without the Teams app
    (403, as Graph answers); `throttle_next` answers 429 with Retry-After."""

    name = "local Microsoft Graph"

    def __init__(
        self,
        token: str,
        *,
        users: dict[str, dict[str, Any]] | None = None,
        groups: dict[str, dict[str, Any]] | None = None,
        not_installed: Iterable[str] = (),
        memberships: dict[str, Iterable[str]] | None = None,
    ):
        super().__init__()
        self._token = token
        self.users = {k.lower(): v for k, v in (users or {}).items()}
        self.memberships = {k.lower(): {g.lower() for g in v} for k, v in (memberships or {}).items()}
        self.member_checks: list[dict[str, Any]] = []
        self.groups = {k.lower(): v for k, v in (groups or {}).items()}
        self.not_installed = {item.lower() for item in not_installed}
        self.activity_notifications: list[dict[str, Any]] = []
        self.mails: list[dict[str, Any]] = []

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1.0"

    def throttle_next(self, times: int, retry_after: int = 1, path_contains: str = "") -> None:
        self.fail_next(
            times,
            429,
            path_contains=path_contains,
            retry_after=retry_after,
            body={"error": {"code": "TooManyRequests", "message": "Too many requests; retry after the given seconds."}},
        )

    def _failure_body(self, status: int) -> Any:
        return {"error": {"code": "InjectedFailure", "message": f"injected failure {status}"}}

    @staticmethod
    def _error(status: int, code: str, message: str) -> Response:
        return _json(status, {"error": {"code": code, "message": message}})

    def _check_activity(self, document: Any, team_scope: str | None) -> str | None:
        if not isinstance(document, dict):
            return "body must be a JSON object"
        topic = document.get("topic") or {}
        if topic.get("source") not in ("text", "entityUrl") or not topic.get("value"):
            return "topic.source must be text or entityUrl, with a value"
        if topic["source"] == "text" and not topic.get("webUrl"):
            return "topic.webUrl is required when topic.source is text"
        if not document.get("activityType"):
            return "activityType is required"
        if not (document.get("previewText") or {}).get("content"):
            return "previewText.content is required"
        if team_scope is not None:
            recipient = document.get("recipient") or {}
            if (
                recipient.get("@odata.type") != "#microsoft.graph.teamMembersNotificationRecipient"
                or str(recipient.get("teamId", "")).lower() != team_scope
            ):
                return "recipient must be a teamMembersNotificationRecipient for this team"
        return None

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        if _bearer(headers) != self._token:
            return self._error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        parts = path.strip("/").split("/")
        if not parts or parts[0] != "v1.0":
            return self._error(404, "BadRequest", "Unsupported API version.")
        parts = parts[1:]
        try:
            document = _lower_keys(json.loads(body)) if body else None
        except ValueError:
            return self._error(400, "BadRequest", "Unable to read JSON request payload.")
        if (
            method == "POST"
            and len(parts) == 4
            and parts[0] == "users"
            and parts[2:] == ["teamwork", "sendActivityNotification"]
        ):
            return self._activity("user", parts[1], document)
        if method == "POST" and len(parts) == 3 and parts[0] == "teams" and parts[2] == "sendActivityNotification":
            return self._activity("team", parts[1], document)
        if method == "POST" and len(parts) == 3 and parts[0] == "users" and parts[2] == "sendMail":
            message = (document or {}).get("message") or {}
            recipients = message.get("toRecipients") or []
            if not message.get("subject") or not recipients:
                return self._error(400, "ErrorInvalidRecipients", "message.subject and toRecipients are required")
            with self._lock:
                self.mails.append(
                    {"sender": parts[1], "to": [r["emailAddress"]["address"] for r in recipients], "message": message}
                )
            return _empty(202)
        if method == "POST" and len(parts) == 3 and parts[0] == "users" and parts[2] == "checkMemberGroups":
            return self._check_member_groups(parts[1].lower(), document)
        if method == "GET" and len(parts) == 2 and parts[0] in ("users", "groups"):
            directory = self.users if parts[0] == "users" else self.groups
            key, entry = parts[1].lower(), directory.get(parts[1].lower())
            if entry is None and parts[0] == "users":  # Graph also finds a user by userPrincipalName, not by mail
                key, entry = next(
                    ((k, v) for k, v in directory.items() if str(v.get("userPrincipalName", "")).lower() == key),
                    (key, None),
                )
            if entry is None:
                return self._error(404, "Request_ResourceNotFound", f"Resource '{parts[1]}' does not exist.")
            document = {"id": key, **entry}
            select = [f.strip() for v in query.get("$select", ()) for f in v.split(",") if f.strip()]
            if select:  # Graph returns only the selected properties (and the id)
                wanted = {f.lower() for f in select} | {"id"}
                document = {k: v for k, v in document.items() if k.lower() in wanted}
            context = f"https://graph.microsoft.com/v1.0/$metadata#{parts[0]}/$entity"
            return _json(200, {"@odata.context": context, **document})
        return self._error(404, "UnknownAction", f"{method} /{'/'.join(parts)} is not served here.")

    def _check_member_groups(self, user: str, document: Any) -> Response:
        ids = document.get("groupIds") if isinstance(document, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and GUID.match(i) for i in ids):
            return self._error(400, "Request_BadRequest", "groupIds must be a non-empty list of group object ids.")
        if len(ids) > 20:
            return self._error(400, "Request_BadRequest", "checkMemberGroups accepts at most 20 group ids.")
        if user not in self.users and user not in self.memberships:
            return self._error(404, "Request_ResourceNotFound", f"Resource '{user}' does not exist.")
        with self._lock:
            self.member_checks.append({"user": user, "group_ids": list(ids)})
        member_of = self.memberships.get(user, set())
        value = [i for i in ids if i.lower() in member_of]
        context = "https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)"
        return _json(200, {"@odata.context": context, "value": value})

    def _activity(self, scope: str, target: str, document: Any) -> Response:
        problem = self._check_activity(document, target.lower() if scope == "team" else None)
        if problem:
            return self._error(400, "BadRequest", problem)
        if target.lower() in self.not_installed:
            return self._error(
                403,
                "Forbidden",
                (
                    "Application is not authorized to generate custom text notifications to the recipient. Ensure "
                    "that the expected Teams app is installed in the target scope (user, team, or chat)."
                ),
            )
        with self._lock:
            self.activity_notifications.append({"scope": scope, "target": target, "body": document})
        return _empty(204)

    def report(self) -> list[str]:
        with self._lock:
            lines = [
                f"Teams activity feed ({n['scope']} {n['target']}): {n['body']['activityType']} - "
                f"{n['body']['topic']['value']} -> {n['body']['topic']['webUrl']}"
                for n in self.activity_notifications
            ]
            lines += [f"Mail from {m['sender']} to {', '.join(m['to'])}: {m['message']['subject']}" for m in self.mails]
        return lines
