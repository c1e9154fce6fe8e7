"""The one place the client side reads the process environment: where Gatekeeper is, which credential to
use, and which CI run is asking.

These are CLIENT variables, set on a build agent or an automation host, not app settings of the Function App
(those live in gatekeeper/settings.py); tests/architecture/test_settings_reads.py allows this module by name
for that reason. Values are read once into a frozen `ClientEnvironment`; everything else takes values.

| Variable | Meaning |
| --- | --- |
| `GATEKEEPER_URL` | the Gatekeeper base URL (`https://…`; plain http to localhost only) |
| `GATEKEEPER_API_KEY` + `GATEKEEPER_TENANT` | the tenant's API key and tenant id |
| `GATEKEEPER_TOKEN` | a bearer token (Entra workload identity) |
| `GATEKEEPER_AUDIENCE` | the audience asked for a GitHub OIDC token (default: the Gatekeeper URL) |
| `GATEKEEPER_RETRY_SECONDS` | how long an unavailable Gatekeeper is retried (default 60, 1..3600) |
| `ACTIONS_ID_TOKEN_REQUEST_URL` / `_TOKEN` | set by GitHub Actions with `permissions: id-token: write` |
| `GITHUB_*`, `BUILD_*`, `SYSTEM_*` | the run asking: its idempotency key and the approver's context |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CLIENT_VARIABLES = (
    "GATEKEEPER_URL",
    "GATEKEEPER_API_KEY",
    "GATEKEEPER_TENANT",
    "GATEKEEPER_TOKEN",
    "GATEKEEPER_AUDIENCE",
    "GATEKEEPER_RETRY_SECONDS",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
)
DEFAULT_RETRY_SECONDS = 60.0
# The run identity and context of the two CI systems we know (GitHub Actions, Azure Pipelines).
RUN_VARIABLES = (
    "GITHUB_ACTIONS",
    "GITHUB_SERVER_URL",
    "GITHUB_REPOSITORY",
    "GITHUB_RUN_ID",
    "GITHUB_RUN_ATTEMPT",
    "GITHUB_JOB",
    "GITHUB_ACTION",
    "GITHUB_REF",
    "GITHUB_SHA",
    "TF_BUILD",
    "SYSTEM_COLLECTIONURI",
    "SYSTEM_TEAMPROJECT",
    "BUILD_BUILDID",
    "SYSTEM_JOBID",
    "SYSTEM_JOBATTEMPT",
    "BUILD_REPOSITORY_NAME",
    "BUILD_SOURCEBRANCH",
    "BUILD_SOURCEVERSION",
)


CREDENTIAL_PREFIXES = ("GATEKEEPER_", "ACTIONS_ID_TOKEN_")


@dataclass(frozen=True)
class ClientEnvironment:
    """What the environment says, as read once. `values` holds only the variables above."""

    values: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ClientEnvironment:
        source = os.environ if environ is None else environ
        names = CLIENT_VARIABLES + RUN_VARIABLES
        return cls({name: source[name] for name in names if source.get(name, "").strip()})

    @staticmethod
    def for_child_process(environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment a process the client starts (mcp-guard's upstream server) inherits: everything but
        Gatekeeper's credentials and the GitHub OIDC request token, which stay with the client."""
        source = os.environ if environ is None else environ
        return {k: v for k, v in source.items() if not k.upper().startswith(CREDENTIAL_PREFIXES)}

    def get(self, name: str) -> str | None:
        value = self.values.get(name)
        return value.strip() if value else None

    def __repr__(self) -> str:  # never the credentials
        return f"ClientEnvironment({sorted(self.values)})"

    def retry_seconds(self) -> float:
        """`GATEKEEPER_RETRY_SECONDS` (1..3600, default 60); InvalidRequest naming it otherwise."""
        from gatekeeper.client.errors import InvalidRequest

        raw = self.get("GATEKEEPER_RETRY_SECONDS")
        if raw is None:
            return DEFAULT_RETRY_SECONDS
        if not raw.isdigit() or not 1 <= int(raw) <= 3600:
            name = "GATEKEEPER_RETRY_SECONDS"
            raise InvalidRequest(f"{name}: expected whole seconds 1..3600", field=name)
        return float(raw)

    @property
    def on_github(self) -> bool:
        return self.get("GITHUB_ACTIONS") == "true" and bool(self.get("GITHUB_RUN_ID"))

    @property
    def on_azure_pipelines(self) -> bool:
        return (self.get("TF_BUILD") or "").lower() == "true" and bool(self.get("BUILD_BUILDID"))

    def run(self) -> str | None:
        """One attempt of one job of one run (the idempotency key's `run`), or None outside CI."""
        g = self.get
        if self.on_github:
            parts = ["github", g("GITHUB_REPOSITORY"), g("GITHUB_RUN_ID"), g("GITHUB_RUN_ATTEMPT") or "1"]
            return ":".join(p or "" for p in [*parts, g("GITHUB_JOB"), g("GITHUB_ACTION")])
        if self.on_azure_pipelines:
            parts = ["ado", g("SYSTEM_COLLECTIONURI"), g("SYSTEM_TEAMPROJECT"), g("BUILD_BUILDID")]
            return ":".join(p or "" for p in [*parts, g("SYSTEM_JOBID"), g("SYSTEM_JOBATTEMPT") or "1"])
        return None

    def context(self) -> dict[str, Any]:
        """What the approver is shown about the run: repository, ref, commit and a link to the run."""
        g = self.get
        if self.on_github:
            server, repo, run = (
                g("GITHUB_SERVER_URL") or "https://github.com",
                g("GITHUB_REPOSITORY"),
                g("GITHUB_RUN_ID"),
            )
            attempt = g("GITHUB_RUN_ATTEMPT")
            found = {
                "repository": repo,
                "ref": g("GITHUB_REF"),
                "commit": g("GITHUB_SHA"),
                "run_url": f"{server}/{repo}/actions/runs/{run}" + (f"/attempts/{attempt}" if attempt else "")
                if repo
                else None,
            }
        elif self.on_azure_pipelines:
            collection, project = g("SYSTEM_COLLECTIONURI"), g("SYSTEM_TEAMPROJECT")
            found = {
                "repository": g("BUILD_REPOSITORY_NAME"),
                "ref": g("BUILD_SOURCEBRANCH"),
                "commit": g("BUILD_SOURCEVERSION"),
                "run_url": f"{collection.rstrip('/')}/{project}/_build/results?buildId={g('BUILD_BUILDID')}"
                if collection and project
                else None,
            }
        else:
            return {}
        return {k: v for k, v in found.items() if v}
