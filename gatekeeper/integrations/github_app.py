"""GitHub App client: answers deployment protection rules and posts progress comments.

The App's private key never leaves Key Vault: we build the JWT signing input ourselves and let Key Vault
sign its SHA-256 digest (RS256). Locally the same `CryptographyClient` API runs on a JSON Web Key
(`CryptographyClient.from_jwk`). The App JWT buys an installation token, cached until shortly before expiry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any, Literal, Protocol

import requests
from azure.keyvault.keys import JsonWebKey
from azure.keyvault.keys.crypto import SignatureAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from gatekeeper.encoding import b64url
from gatekeeper.events.model import GitHubCallback
from gatekeeper.integrations.results import CallbackResult, callback_result
from gatekeeper.integrations.retry import RetryPolicy, describe, send_with_retry
from gatekeeper.integrations.urls import OutboundUrlError, check_outbound_url, safe_url, same_origin

InstallationResolver = Callable[[str], Collection[int]]
"""tenant id -> the GitHub App installation ids registered for that tenant."""

_REVIEW_PATH = re.compile(r"/repos/([^/]+)/([^/]+)/actions/runs/(\d{1,18})/deployment_protection_rule/?$")

log = logging.getLogger("gatekeeper.integrations.github")

GITHUB_API_VERSION = "2022-11-28"
MAX_COMMENT_CHARS = 1024
MAX_COMMENTS_PER_DEPLOYMENT = 10
JWT_BACKDATE_SECONDS = 60  # GitHub: set iat 60 s in the past against clock drift
JWT_LIFETIME_SECONDS = 540  # GitHub: exp at most 10 minutes after now; keep a minute in hand
TOKEN_REFRESH_MARGIN_SECONDS = 300

ReviewState = Literal["approved", "rejected"]


class DigestSigner(Protocol):
    """What we need from `azure.keyvault.keys.crypto.CryptographyClient` (remote or `from_jwk`)."""

    def sign(self, algorithm: SignatureAlgorithm, digest: bytes, **kwargs: Any) -> Any: ...


class GitHubAppError(Exception):
    """Authentication as the App failed; `result` carries the status and attempts for the caller."""

    def __init__(self, result: CallbackResult):
        super().__init__(result.detail)
        self.result = result


def truncate_comment(comment: str, limit: int = MAX_COMMENT_CHARS) -> str:
    """GitHub keeps at most 1,024 characters per comment; cut with an ellipsis so the cut is visible."""
    return comment if len(comment) <= limit else comment[: limit - 1] + "\u2026"


def rsa_jwk_from_pem(pem: bytes, kid: str = "github-app") -> JsonWebKey:
    """A local JSON Web Key (key_ops sign) from the App's downloaded PEM, for local development only;
    in Azure the same PEM is imported into Key Vault as key `github-app`."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("github app key: the PEM is not an RSA private key")
    return rsa_jwk(key, kid)


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str = "github-app") -> JsonWebKey:
    numbers = key.private_numbers()
    public = numbers.public_numbers

    def raw(value: int) -> bytes:
        return value.to_bytes((value.bit_length() + 7) // 8, "big")

    return JsonWebKey(
        kid=kid,
        kty="RSA",
        key_ops=["sign", "verify"],
        n=raw(public.n),
        e=raw(public.e),
        d=raw(numbers.d),
        p=raw(numbers.p),
        q=raw(numbers.q),
        dp=raw(numbers.dmp1),
        dq=raw(numbers.dmq1),
        qi=raw(numbers.iqmp),
    )


class CommentBudget(Protocol):
    """Counts comments per deployment (owner/repo/run/environment)."""

    def take(self, key: str, limit: int) -> bool:
        """Reserve one comment if fewer than `limit` were taken; False when the budget is spent."""
        ...


class InMemoryCommentBudget:
    """Per-process counter. Good enough: an over-count across instances only means GitHub refuses the
    extra comment with a 4xx, which is not retried and never blocks the decision."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, key: str, limit: int) -> bool:
        with self._lock:
            used = self._counts.get(key, 0)
            if used >= limit:
                return False
            self._counts[key] = used + 1
            return True


def deployment_key(callback: GitHubCallback) -> str:
    return f"{callback.owner}/{callback.repo}/runs/{callback.run_id}/{callback.environment_name}"


class GitHubApp:
    """One GitHub App (app id + Key Vault key) talking to one API root (github.com or GHES)."""

    def __init__(
        self,
        app_id: str | int,
        signer: DigestSigner,
        api_url: str = "https://api.github.com",
        *,
        session: requests.Session | None = None,
        policy: RetryPolicy | None = None,
        budget: CommentBudget | None = None,
        clock: Callable[[], float] = time.time,
        allow_loopback_http: bool = False,
        installations: InstallationResolver | None = None,
    ):
        if not str(app_id).strip():
            raise ValueError("GATEKEEPER_GITHUB_APP_ID: the GitHub App id is required")
        self.app_id = str(app_id).strip()
        self.api_url = check_outbound_url(
            api_url, field="GATEKEEPER_GITHUB_API_URL", allow_loopback_http=allow_loopback_http
        ).rstrip("/")
        self._signer = signer
        self._session = session or requests.Session()
        self._policy = policy or RetryPolicy()
        self._budget: CommentBudget = budget or InMemoryCommentBudget()
        self._clock = clock
        self._tokens: dict[int, tuple[SecretStr, float]] = {}
        self._lock = threading.Lock()
        self._installations = installations

    def __repr__(self) -> str:
        return f"GitHubApp(app_id={self.app_id!r}, api_url={self.api_url!r})"

    # --- authentication -------------------------------------------------------------------------------

    def app_jwt(self) -> str:
        """A short-lived RS256 JWT (iss = app id) signed by Key Vault over our own signing input."""
        now = int(self._clock())
        header = {"alg": "RS256", "typ": "JWT"}
        claims = {"iat": now - JWT_BACKDATE_SECONDS, "exp": now + JWT_LIFETIME_SECONDS, "iss": self.app_id}
        signing_input = ".".join(b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims))
        digest = hashlib.sha256(signing_input.encode("ascii")).digest()
        signature = self._signer.sign(SignatureAlgorithm.rs256, digest).signature
        return f"{signing_input}.{b64url(signature)}"

    def _signed_jwt(self) -> str:
        try:
            return self.app_jwt()
        except Exception as exc:  # Key Vault unreachable, key missing, no sign permission
            raise GitHubAppError(
                CallbackResult(
                    ok=False, target="github", detail=f"github app jwt: signing failed ({type(exc).__name__})"
                )
            ) from None

    def _headers(self, bearer: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {bearer}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": GITHUB_API_VERSION,
            "User-Agent": "gatekeeper-github-app",
        }

    def installation_token(self, installation_id: int) -> SecretStr:
        """An installation access token, from cache while it has more than a few minutes left."""
        with self._lock:
            cached = self._tokens.get(installation_id)
            if cached and cached[1] - TOKEN_REFRESH_MARGIN_SECONDS > self._clock():
                return cached[0]
        url = f"{self.api_url}/app/installations/{int(installation_id)}/access_tokens"
        body = self._as_app("POST", url, "github installation token")
        token = SecretStr(body["token"])
        expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp()
        with self._lock:
            self._tokens[installation_id] = (token, expires_at)
        return token

    def forget_token(self, installation_id: int) -> None:
        with self._lock:
            self._tokens.pop(installation_id, None)

    def installation_id_for(self, owner: str, repo: str) -> int:
        """`GET /repos/{owner}/{repo}/installation` with the App JWT, for events that carry no installation."""
        url = f"{self.api_url}/repos/{owner}/{repo}/installation"
        answer = self._as_app("GET", url, "github installation lookup")
        found = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(found, int) or isinstance(found, bool):
            raise GitHubAppError(
                CallbackResult(ok=False, target="github", detail="github installation lookup: the answer names no id")
            )
        return found

    def _as_app(self, method: str, url: str, label: str) -> Any:
        """A request authenticated as the App itself (app JWT), retried; the JSON answer, or GitHubAppError."""
        jwt = self._signed_jwt()
        outcome = send_with_retry(
            lambda: self._session.request(method, url, headers=self._headers(jwt), timeout=self._policy.timeout),
            self._policy,
            label=label,
        )
        if not outcome.ok or outcome.response is None:
            raise GitHubAppError(
                CallbackResult(
                    ok=False,
                    target="github",
                    status_code=outcome.status_code,
                    attempts=outcome.attempts,
                    detail=describe(outcome, label, [jwt]),
                )
            )
        return outcome.response.json()

    # --- deployment protection rule -------------------------------------------------------------------

    def review_url(self, callback: GitHubCallback) -> str:
        """The webhook's `deployment_callback_url` when it points at our API root, else the documented path.
        An installation token is never sent anywhere but the configured GitHub API, and never to a run of
        another repository than the gate's (`ValueError` naming the field)."""
        given = callback.deployment_callback_url
        if given and same_origin(given, self.api_url) and given.startswith(self.api_url + "/"):
            match = _REVIEW_PATH.search(given[len(self.api_url) :].split("?", 1)[0])
            named = (match.group(1).lower(), match.group(2).lower(), int(match.group(3))) if match else None
            if named != (callback.owner.lower(), callback.repo.lower(), callback.run_id):
                raise ValueError(
                    "callback.deployment_callback_url: names another repository or run than the gate's "
                    f"({callback.owner}/{callback.repo} run {callback.run_id})"
                )
            return given
        if given:
            log.warning("github: ignoring deployment_callback_url %s (not under %s)", safe_url(given), self.api_url)
        return (
            f"{self.api_url}/repos/{callback.owner}/{callback.repo}/actions/runs/"
            f"{callback.run_id}/deployment_protection_rule"
        )

    def _installation_for(self, callback: GitHubCallback, tenant_id: str | None) -> int:
        """The installation to act as: one registered for the gate's tenant, never merely the payload's.

        Without a resolver (a single-tenant App wired by hand) the callback's installation, else GitHub's
        installation for the repository. With a resolver and no installation on the callback (GitHub's schema
        lets a protection rule omit it): the tenant's only one, or with several the one GitHub says the
        repository is in, which must be registered for the tenant too."""
        if self._installations is None:
            return callback.installation_id or self.installation_id_for(callback.owner, callback.repo)
        registered = set(self._installations(tenant_id)) if tenant_id else set()
        chosen = callback.installation_id
        if chosen is None and len(registered) == 1:
            chosen = next(iter(registered))
        elif chosen is None and len(registered) > 1:
            chosen = self.installation_id_for(callback.owner, callback.repo)
        if chosen is None or chosen not in registered:
            raise GitHubAppError(
                CallbackResult(
                    ok=False,
                    target="github",
                    detail=(
                        f"github review: installation {chosen if chosen is not None else '(none)'} is not "
                        f"registered for tenant {tenant_id or '(none)'}; nothing was sent"
                    ),
                )
            )
        return chosen

    def review(
        self,
        callback: GitHubCallback,
        state: ReviewState | None,
        comment: str | None,
        *,
        action: Literal["complete", "progress"] = "complete",
        tenant_id: str | None = None,
    ) -> CallbackResult:
        """`POST .../deployment_protection_rule` with `environment_name`, `state` and/or `comment`, as the
        installation registered for `tenant_id`, to the gate's own repository and run only."""
        body: dict[str, str] = {"environment_name": callback.environment_name}
        if state is not None:
            body["state"] = state
        if comment:
            body["comment"] = truncate_comment(comment)
        if "state" not in body and "comment" not in body:
            return CallbackResult(
                ok=False, target="github", action=action, detail="github review: state or comment is required"
            )
        try:
            url = self.review_url(callback)
        except ValueError as exc:
            log.error("%s", exc)
            return CallbackResult(ok=False, target="github", action=action, detail=str(exc))
        try:
            installation_id = self._installation_for(callback, tenant_id)
            token = self.installation_token(installation_id)
        except GitHubAppError as exc:
            return exc.result.model_copy(update={"action": action})
        try:
            check_outbound_url(
                url, field="callback.deployment_callback_url", allow_loopback_http=self.api_url.startswith("http://")
            )
        except OutboundUrlError as exc:
            return CallbackResult(ok=False, target="github", action=action, detail=str(exc))

        def post(bearer: SecretStr) -> requests.Response:
            return self._session.post(
                url, json=body, headers=self._headers(bearer.get_secret_value()), timeout=self._policy.timeout
            )

        outcome = send_with_retry(lambda: post(token), self._policy, label="github review")
        attempts = outcome.attempts
        if outcome.status_code == 401:  # token revoked or expired early: one fresh token, one more try
            self.forget_token(installation_id)
            try:
                token = self.installation_token(installation_id)
            except GitHubAppError as exc:
                return exc.result.model_copy(update={"action": action, "attempts": attempts})
            outcome = send_with_retry(lambda: post(token), self._policy, label="github review")
            attempts += outcome.attempts
        what = f"github review {state or 'comment'} {callback.owner}/{callback.repo} run {callback.run_id}"
        return callback_result(
            outcome, what, [token.get_secret_value()], target="github", action=action, log=log, attempts=attempts
        )

    def decide(
        self, callback: GitHubCallback, approved: bool, comment: str | None, *, tenant_id: str | None = None
    ) -> CallbackResult:
        """Approve or reject. The decision always goes out; its comment only if the budget allows."""
        if comment and not self._budget.take(deployment_key(callback), MAX_COMMENTS_PER_DEPLOYMENT):
            log.info(
                "github: comment budget spent for %s; sending the decision without a comment", deployment_key(callback)
            )
            comment = None
        return self.review(callback, "approved" if approved else "rejected", comment, tenant_id=tenant_id)

    def progress(self, callback: GitHubCallback, comment: str, *, tenant_id: str | None = None) -> CallbackResult:
        """A comment-only review while the gate waits. One comment of the ten is kept for the decision."""
        if not self._budget.take(deployment_key(callback), MAX_COMMENTS_PER_DEPLOYMENT - 1):
            return CallbackResult(
                ok=True,
                skipped=True,
                target="github",
                action="progress",
                detail=(
                    f"github progress: skipped, {MAX_COMMENTS_PER_DEPLOYMENT - 1} progress comments already "
                    f"posted for {deployment_key(callback)} (GitHub keeps {MAX_COMMENTS_PER_DEPLOYMENT}; "
                    "the last is kept for the decision)"
                ),
            )
        return self.review(callback, None, comment, action="progress", tenant_id=tenant_id)


class GitHubTarget:
    """The `PipelineTarget` for `github` handles: the decision as a deployment protection rule review, a
    progress line as a comment-only review (budgeted)."""

    def __init__(self, app: GitHubApp):
        self._app = app

    def complete(
        self, tenant_id: str, handle: GitHubCallback, approved: bool, comment: str, context: Mapping[str, Any]
    ) -> CallbackResult:
        return self._app.decide(handle, approved, comment, tenant_id=tenant_id)

    def progress(self, tenant_id: str, handle: GitHubCallback, comment: str) -> CallbackResult:
        return self._app.progress(handle, comment, tenant_id=tenant_id)


# --- rollback: workflow_dispatch and following the run ----------------------------------------------------


class GitHubWorkflows:
    """Dispatches a rollback workflow (`POST /repos/{owner}/{repo}/actions/workflows/{id}/dispatches`) as the
    installation registered for the tenant, and follows the run it started (`GET .../workflows/{id}/runs`,
    the newest `workflow_dispatch` run created since the dispatch)."""

    def __init__(self, app: GitHubApp):
        self._app = app

    def _token(self, tenant_id: str, owner: str, repo: str) -> SecretStr:
        """An installation token for the repository, as an installation registered for the tenant: its only
        one, or (with several) the one GitHub says the repository is in, which must be registered too."""
        app = self._app
        chosen = None
        if app._installations is not None and len(set(app._installations(tenant_id))) > 1:
            chosen = app.installation_id_for(owner, repo)
        handle = GitHubCallback(owner=owner, repo=repo, run_id=0, environment_name="rollback", installation_id=chosen)
        return app.installation_token(app._installation_for(handle, tenant_id))

    def _base(self, owner: str, repo: str, workflow: str) -> str:
        return f"{self._app.api_url}/repos/{owner}/{repo}/actions/workflows/{workflow}"

    def dispatch(
        self, tenant_id: str, owner: str, repo: str, workflow: str, ref: str, inputs: Mapping[str, str]
    ) -> CallbackResult:
        try:
            token = self._token(tenant_id, owner, repo)
        except GitHubAppError as exc:
            return exc.result
        url = f"{self._base(owner, repo, workflow)}/dispatches"
        body = {"ref": ref, "inputs": dict(inputs)}
        app = self._app
        outcome = send_with_retry(
            lambda: app._session.post(
                url, json=body, headers=app._headers(token.get_secret_value()), timeout=app._policy.timeout
            ),
            app._policy,
            label="github workflow dispatch",
        )
        what = f"github workflow_dispatch {owner}/{repo} {workflow}@{ref}"
        return callback_result(outcome, what, [token.get_secret_value()], target="github")

    def latest_run(
        self, tenant_id: str, owner: str, repo: str, workflow: str, since: datetime
    ) -> dict[str, Any] | None:
        """The newest `workflow_dispatch` run of the workflow created at or after `since`: id, status,
        conclusion, html_url; None when GitHub lists none yet. Raises GitHubAppError when it cannot ask."""
        token = self._token(tenant_id, owner, repo)
        stamp = since.strftime("%Y-%m-%dT%H:%M:%SZ")
        url = f"{self._base(owner, repo, workflow)}/runs"
        app = self._app
        outcome = send_with_retry(
            lambda: app._session.get(
                url,
                params={"event": "workflow_dispatch", "created": f">={stamp}", "per_page": "5"},
                headers=app._headers(token.get_secret_value()),
                timeout=app._policy.timeout,
            ),
            app._policy,
            label="github workflow runs",
        )
        if not outcome.ok or outcome.response is None:
            raise GitHubAppError(
                CallbackResult(
                    ok=False,
                    target="github",
                    status_code=outcome.status_code,
                    detail=describe(outcome, "github workflow runs", [token.get_secret_value()]),
                )
            )
        runs = outcome.response.json().get("workflow_runs") or []
        if not runs:
            return None
        newest = max(runs, key=lambda r: (str(r.get("created_at", "")), int(r.get("id", 0))))
        return {
            "id": str(newest.get("id")),
            "status": str(newest.get("status") or ""),
            "conclusion": newest.get("conclusion"),
            "html_url": newest.get("html_url"),
        }
