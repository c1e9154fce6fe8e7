"""When a GitHub commit was made, asked of GitHub as the tenant's App installation (DORA lead time).

A deployment protection rule names only the commit's sha. `GET /repos/{owner}/{repo}/commits/{sha}` (REST
"Get a commit") answers the commit object; `commit.committer.date` is when the commit was made on its branch
(a rebase or a merge through the web sets it), `commit.author.date` when it was first written: the first is
the start of the change's lead time, the second the fallback. The same App and installation token as the
protection rule's answer, an installation registered for the gate's tenant only, the gate's own repository
only, one bounded attempt and a bounded answer (`per_page=1` keeps the file list short): a lookup that fails
costs the gate a few seconds at most and only its commit time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from gatekeeper.events.commit_time import commit_time_or_none
from gatekeeper.events.model import CallbackHandle, GitHubCallback
from gatekeeper.integrations.github_app import GitHubApp, GitHubAppError
from gatekeeper.integrations.retry import RetryPolicy, describe, send_with_retry

LOOKUP_POLICY = RetryPolicy(
    max_attempts=1, connect_timeout=2.0, read_timeout=3.0, initial_wait=0.0, max_wait=0.0, max_retry_after=0.0
)
"""One attempt, 2 s to connect and 3 s to read: the lookup runs inside the gate's evaluation."""

MAX_ANSWER_BYTES = 1024 * 1024
"""A commit object with one file is a few KiB; a patch GitHub did not cut could be large: not read past this."""

_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")


class CommitLookupFailed(RuntimeError):
    """GitHub did not answer with the commit; the message says why, without the token."""


class GitHubCommitTimes:
    """`commit_time(tenant, handle, sha)` for GitHub handles (the `CommitLookup` the gate step uses)."""

    def __init__(
        self, app: GitHubApp, *, clock: Callable[[], datetime] | None = None, policy: RetryPolicy = LOOKUP_POLICY
    ) -> None:
        self._app = app
        self._clock = clock or (lambda: datetime.now(UTC))
        self._policy = policy

    def commit_time(self, tenant_id: str, handle: CallbackHandle, sha: str) -> datetime | None:
        """When the commit was made (UTC), or None when the handle is not GitHub's, the sha is not a commit id,
        or GitHub's commit carries no plausible time. Raises CommitLookupFailed when GitHub cannot be asked."""
        if not isinstance(handle, GitHubCallback) or not _SHA.match(sha):
            return None
        app = self._app
        try:
            token = app.installation_token(app._installation_for(handle, tenant_id))
        except GitHubAppError as exc:
            raise CommitLookupFailed(exc.result.detail or "github commit: no installation token") from None
        url = f"{app.api_url}/repos/{quote(handle.owner, safe='')}/{quote(handle.repo, safe='')}/commits/{sha.lower()}"
        secret = token.get_secret_value()
        outcome = send_with_retry(
            lambda: app._session.get(
                url, params={"per_page": "1"}, headers=app._headers(secret), timeout=self._policy.timeout, stream=True
            ),
            self._policy,
            label="github commit",
            max_body=MAX_ANSWER_BYTES,
        )
        what = f"github commit {handle.owner}/{handle.repo}@{sha[:12]}"
        if not outcome.ok or outcome.body is None:
            raise CommitLookupFailed(describe(outcome, what, [secret]))
        return committed_at(_json(outcome.body), self._clock())


def committed_at(document: Any, now: datetime) -> datetime | None:
    """`commit.committer.date`, else `commit.author.date`, of a commit object: the first plausible one."""
    commit = document.get("commit") if isinstance(document, dict) else None
    if not isinstance(commit, dict):
        return None
    for who in ("committer", "author"):
        person = commit.get(who)
        found = commit_time_or_none(person.get("date"), now) if isinstance(person, dict) else None
        if found is not None:
            return found
    return None


def _json(body: bytes) -> Any:
    from gatekeeper import json_bounded

    try:
        return json_bounded.loads(body)
    except json_bounded.JsonBoundsError as exc:
        raise CommitLookupFailed(f"github commit: the answer is {json_bounded.verdict(exc)}") from None
    except ValueError:
        raise CommitLookupFailed("github commit: the answer is not JSON") from None
