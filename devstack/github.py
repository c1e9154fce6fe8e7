"""Local GitHub REST for a GitHub App: installation tokens, installation lookup, the deployment protection
rule review endpoint (body validated against the published request schema) and "Get a commit"."""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jsonschema import Draft202012Validator

from devstack.server import LocalServer, Response, bearer_token, empty_response, json_response

REPO_ROOT = Path(__file__).resolve().parents[1]
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
        # workflow_dispatch: every dispatch is recorded and starts a run; `dispatch_conclusion` is the
        # conclusion the next runs report once listed (None: they stay in progress until `finish_run`).
        self.dispatches: list[dict[str, Any]] = []
        self.workflow_runs: list[dict[str, Any]] = []
        self.dispatch_conclusion: str | None = "success"
        # "Get a commit": sha -> (committer date, author date) as GitHub writes them (`add_commit`); an unknown
        # sha answers 422 "No commit found for SHA", as GitHub does. `commit_delay_seconds` stalls the answer.
        self.commits: dict[str, tuple[str | None, str | None]] = {}
        self.commit_delay_seconds = 0.0

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

    def add_commit(self, sha: str, committed: str | None, authored: str | None = None) -> None:
        """A commit GitHub knows (dates as GitHub writes them, e.g. 2026-12-01T08:15:00Z; None: a null person)."""
        with self._lock:
            self.commits[sha.lower()] = (committed, authored if authored is not None else committed)

    def decisions(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.reviews if "state" in r["body"]]

    def revoke_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    def _app_jwt_error(self, headers: dict[str, str]) -> Response | None:
        token = bearer_token(headers)
        if not token:
            return json_response(401, {"message": "A JSON web token could not be decoded"})
        try:
            claims = pyjwt.decode(
                token, self.public_key, algorithms=["RS256"], options={"require": ["iat", "exp", "iss"]}
            )
        except pyjwt.PyJWTError as exc:
            return json_response(401, {"message": f"A JSON web token could not be decoded ({type(exc).__name__})"})
        now = time.time()
        if str(claims["iss"]) != self.app_id:
            return json_response(401, {"message": "'Issuer' claim ('iss') must be the app id"})
        if claims["exp"] - now > 600 or claims["exp"] - claims["iat"] > 660:
            return json_response(401, {"message": "'Expiration time' claim ('exp') is too far in the future"})
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
                return json_response(404, {"message": "Not Found"})
            token = "ghs_" + secrets.token_urlsafe(27)
            expires = time.time() + self.token_ttl_seconds
            with self._lock:
                self.tokens[token] = expires
            return json_response(
                201,
                {
                    "token": token,
                    "expires_at": datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "permissions": {"actions": "read", "deployments": "write"},
                    "repository_selection": "all",
                },
            )
        if len(parts) >= 6 and parts[0] == "repos" and parts[3:5] == ["actions", "workflows"]:
            return self._workflows(method, parts, query, headers, body)
        if method == "GET" and len(parts) == 5 and parts[0] == "repos" and parts[3] == "commits":
            return self._commit(parts[1], parts[2], parts[4], headers)
        if method == "POST" and parts == ["graphql"]:
            return self._graphql(headers, body)
        if method == "GET" and len(parts) == 4 and parts[0] == "repos" and parts[3] == "installation":
            if (error := self._app_jwt_error(headers)) is not None:
                return error
            return json_response(
                200, {"id": self.installation_id, "app_id": int(self.app_id) if self.app_id.isdigit() else self.app_id}
            )
        if (
            method == "POST"
            and len(parts) == 7
            and parts[0] == "repos"
            and parts[3:5] == ["actions", "runs"]
            and parts[6] == "deployment_protection_rule"
        ):
            presented = bearer_token(headers)
            with self._lock:
                valid = presented is not None and self.tokens.get(presented, 0) > time.time()
            if not valid:
                return json_response(401, {"message": "Bad credentials"})
            try:
                document = json.loads(body or b"null")
            except ValueError:
                return json_response(400, {"message": "Problems parsing JSON"})
            errors = sorted(self._validator.iter_errors(document), key=lambda e: list(e.path))
            if errors:
                return json_response(422, {"message": "Validation Failed", "errors": [e.message for e in errors]})
            with self._lock:
                self.reviews.append({"owner": parts[1], "repo": parts[2], "run_id": int(parts[5]), "body": document})
            return empty_response(204)
        return json_response(404, {"message": "Not Found"})

    def finish_run(self, run_id: int, conclusion: str) -> None:
        with self._lock:
            for run in self.workflow_runs:
                if run["id"] == run_id:
                    run.update(status="completed", conclusion=conclusion)

    def _workflows(
        self, method: str, parts: list[str], query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        """`POST .../actions/workflows/{id}/dispatches` (204, records the dispatch, starts a run) and
        `GET .../actions/workflows/{id}/runs` (filters `event` and `created=>=`)."""
        presented = bearer_token(headers)
        with self._lock:
            valid = presented is not None and self.tokens.get(presented, 0) > time.time()
        if not valid:
            return json_response(401, {"message": "Bad credentials"})
        owner, repo, workflow = parts[1], parts[2], parts[5]
        if method == "POST" and len(parts) == 7 and parts[6] == "dispatches":
            try:
                document = json.loads(body or b"null")
            except ValueError:
                return json_response(400, {"message": "Problems parsing JSON"})
            if not isinstance(document, dict) or not isinstance(document.get("ref"), str):
                return json_response(422, {"message": 'Invalid request.\n\n"ref" wasn\'t supplied.'})
            inputs = document.get("inputs") or {}
            if not isinstance(inputs, dict) or len(inputs) > 10:
                return json_response(422, {"message": "inputs: at most 10 properties"})
            now = datetime.now(UTC)
            with self._lock:
                run_id = 9000 + len(self.workflow_runs)
                self.dispatches.append({"owner": owner, "repo": repo, "workflow": workflow, "body": document})
                done = self.dispatch_conclusion is not None
                self.workflow_runs.append(
                    {
                        "id": run_id,
                        "owner": owner,
                        "repo": repo,
                        "workflow": workflow,
                        "event": "workflow_dispatch",
                        "status": "completed" if done else "in_progress",
                        "conclusion": self.dispatch_conclusion,
                        "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "html_url": f"{self.url}/{owner}/{repo}/actions/runs/{run_id}",
                    }
                )
            return empty_response(204)
        if method == "GET" and len(parts) == 7 and parts[6] == "runs":
            events = query.get("event")
            event = events[0] if events else None
            created = (query.get("created") or [""])[0]
            since = created[2:] if created.startswith(">=") else ""
            with self._lock:
                runs = [
                    {k: v for k, v in run.items() if k not in ("owner", "repo", "workflow")}
                    for run in self.workflow_runs
                    if (run["owner"], run["repo"], run["workflow"]) == (owner, repo, workflow)
                    and (event is None or run["event"] == event)
                    and run["created_at"] >= since
                ]
            return json_response(200, {"total_count": len(runs), "workflow_runs": runs})
        return json_response(404, {"message": "Not Found"})

    def _commit(self, owner: str, repo: str, sha: str, headers: dict[str, str]) -> Response:
        """`GET /repos/{owner}/{repo}/commits/{ref}` ("Get a commit", an installation token): the commit object
        in GitHub's shape (sha, node_id, commit{author, committer, message, tree, url, comment_count,
        verification}, url, html_url, author, committer, parents, stats, files) from `commits`."""
        presented = bearer_token(headers)
        with self._lock:
            valid = presented is not None and self.tokens.get(presented, 0) > time.time()
            found = self.commits.get(sha.lower())
            delay = self.commit_delay_seconds
        if delay:
            time.sleep(delay)
        if not valid:
            return json_response(401, {"message": "Bad credentials"})
        if found is None:
            return json_response(422, {"message": f"No commit found for SHA: {sha}"})
        committed, authored = found
        api = f"{self.url}/repos/{owner}/{repo}"

        def person(date: str | None) -> dict[str, Any] | None:
            return None if date is None else {"name": "Mona Lisa", "email": "mona@example.com", "date": date}

        return json_response(
            200,
            {
                "sha": sha,
                "node_id": "C_kwDOAAAAAdoAKDYwMDA",
                "url": f"{api}/commits/{sha}",
                "html_url": f"https://github.com/{owner}/{repo}/commit/{sha}",
                "comments_url": f"{api}/commits/{sha}/comments",
                "commit": {
                    "url": f"{api}/git/commits/{sha}",
                    "author": person(authored),
                    "committer": person(committed),
                    "message": "Fix all the bugs",
                    "tree": {"url": f"{api}/git/trees/{'6' * 40}", "sha": "6" * 40},
                    "comment_count": 0,
                    "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None},
                },
                "author": None,
                "committer": None,
                "parents": [{"url": f"{api}/commits/{'7' * 40}", "sha": "7" * 40}],
                "stats": {"additions": 1, "deletions": 1, "total": 2},
                "files": [
                    {
                        "filename": "README.md",
                        "additions": 1,
                        "deletions": 1,
                        "changes": 2,
                        "status": "modified",
                        "patch": "@@ -1 +1 @@\n-old\n+new",
                    }
                ],
            },
        )

    def _graphql(self, headers: dict[str, str], body: bytes) -> Response:
        presented = bearer_token(headers)
        with self._lock:
            valid = presented is not None and self.tokens.get(presented, 0) > time.time()
        if not valid:
            return json_response(401, {"message": "Bad credentials"})
        try:
            document = json.loads(body or b"null")
            query, variables = document["query"], document.get("variables") or {}
        except (ValueError, TypeError, KeyError):
            return json_response(400, {"message": "Problems parsing JSON"})
        if "samlIdentityProvider" not in query or "externalIdentities" not in query:
            return json_response(
                200, {"errors": [{"message": "this local GitHub answers only the SAML identities query"}]}
            )
        org = str(variables.get("org") or "").lower()
        if org in self.graphql_forbidden:
            error = {"type": "FORBIDDEN", "path": ["organization"], "message": "Resource not accessible by integration"}
            return json_response(200, {"data": {"organization": None}, "errors": [error]})
        if org not in self.saml_identities:
            return json_response(200, {"data": {"organization": {"samlIdentityProvider": None}}})
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
        return json_response(
            200, {"data": {"organization": {"samlIdentityProvider": {"externalIdentities": identities}}}}
        )

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
