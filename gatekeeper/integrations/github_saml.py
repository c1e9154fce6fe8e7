"""Fill a tenant's identity map from the SAML/SCIM identities of a GitHub organisation.

An organisation with SAML single sign-on (Entra ID as the identity provider) records, for each member, the
SAML `nameId` (normally the user principal name) and, with SCIM provisioning, the SCIM user name. GitHub
exposes them through GraphQL `organization.samlIdentityProvider.externalIdentities`; a GitHub App needs the
organisation permission "Members: read" and an installation on that organisation, otherwise GitHub answers
that the resource is not accessible (which this module reports, and then nothing is linked).

Each identity's address is resolved to an Entra object id through the directory (`GET /users/{upn}`), and
the member's GitHub login and numeric id are linked to it, audited like any other link (`how: github-saml`).
Members whose address the directory does not know are listed as skipped, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
from pydantic import SecretStr

from gatekeeper.integrations.urls import check_outbound_url
from gatekeeper.security.requester import UserDirectory, external_id, normalise_address

QUERY = """
query($org: String!, $after: String) {
  organization(login: $org) {
    samlIdentityProvider {
      externalIdentities(first: 100, after: $after) {
        pageInfo { hasNextPage endCursor }
        nodes { samlIdentity { nameId } scimIdentity { username } user { login databaseId } }
      }
    }
  }
}
"""
MAX_PAGES = 100  # 10,000 members


class InstallationTokens(Protocol):
    """The GitHub App (gatekeeper.integrations.github_app.GitHubApp has this shape)."""

    api_url: str

    def installation_token(self, installation_id: int) -> SecretStr: ...


class SamlIdentitiesUnavailable(RuntimeError):
    """GitHub would not list the organisation's SAML identities (no SAML, no permission, not reachable)."""


@dataclass(frozen=True)
class SamlMember:
    login: str
    database_id: int | None
    address: str | None  # SAML nameId, else SCIM user name, normalised


@dataclass
class FillReport:
    linked: list[tuple[str, str]] = field(default_factory=list)  # (external identity, object id)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (login, why)


def graphql_url(api_url: str) -> str:
    """github.com: `https://api.github.com/graphql`; GHES: `https://HOST/api/graphql` (REST is `/api/v3`)."""
    root = api_url.rstrip("/")
    return root[: -len("/v3")] + "/graphql" if root.endswith("/api/v3") else root + "/graphql"


def saml_members(
    app: InstallationTokens,
    installation_id: int,
    org: str,
    *,
    session: requests.Session | None = None,
    timeout: float = 30.0,
) -> list[SamlMember]:
    """Every SAML/SCIM external identity of `org` that is bound to a GitHub user. Raises
    SamlIdentitiesUnavailable with GitHub's reason."""
    url = graphql_url(app.api_url)
    check_outbound_url(url, field="GATEKEEPER_GITHUB_API_URL", allow_loopback_http=url.startswith("http://"))
    http = session or requests.Session()
    try:
        token = app.installation_token(installation_id)
    except Exception as exc:  # GitHubAppError (scrubbed), signing failures: the app cannot act there
        raise SamlIdentitiesUnavailable(f"no installation token for installation {installation_id} ({exc})") from None
    members: list[SamlMember] = []
    after: str | None = None
    for _ in range(MAX_PAGES):
        try:
            response = http.post(
                url,
                json={"query": QUERY, "variables": {"org": org, "after": after}},
                headers={"Authorization": f"Bearer {token.get_secret_value()}", "User-Agent": "gatekeeper"},
                timeout=timeout,
            )
            document = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise SamlIdentitiesUnavailable(f"GitHub GraphQL could not be read ({type(exc).__name__})") from None
        if response.status_code != 200 or not isinstance(document, dict):
            raise SamlIdentitiesUnavailable(f"GitHub GraphQL answered HTTP {response.status_code}")
        errors = document.get("errors") or []
        if errors:
            first = errors[0] if isinstance(errors[0], dict) else {}
            raise SamlIdentitiesUnavailable(str(first.get("message") or "GitHub GraphQL returned errors")[:300])
        organization = _get(document, "data", "organization")
        if organization is None:
            raise SamlIdentitiesUnavailable(f"organisation {org!r} not found or not accessible to the app")
        identities = _get(organization, "samlIdentityProvider", "externalIdentities")
        if identities is None:
            raise SamlIdentitiesUnavailable(f"organisation {org!r} has no SAML single sign-on")
        for node in identities.get("nodes") or ():
            user = _get(node, "user")
            if not isinstance(user, dict) or not user.get("login"):
                continue  # an identity not (yet) bound to a GitHub account
            address = normalise_address(_get(node, "samlIdentity", "nameId")) or normalise_address(
                _get(node, "scimIdentity", "username")
            )
            database_id = user.get("databaseId")
            members.append(
                SamlMember(str(user["login"]), database_id if isinstance(database_id, int) else None, address)
            )
        page = identities.get("pageInfo") or {}
        if not page.get("hasNextPage"):
            return members
        after = page.get("endCursor")
    raise SamlIdentitiesUnavailable(f"more than {MAX_PAGES} pages of identities")


def fill_identity_map(
    members: list[SamlMember],
    directory: UserDirectory,
    link: Callable[[str, str], Any],
) -> FillReport:
    """Link each member's GitHub login and id to the object id the directory gives for their address.
    `link(external, oid)` stores and audits one link (IdentityMap.link bound to the audit log)."""
    report = FillReport()
    for member in members:
        if member.address is None:
            report.skipped.append((member.login, "no SAML nameId or SCIM user name that is an address"))
            continue
        user = directory.user(member.address)
        if user is None:
            report.skipped.append((member.login, f"{member.address} is not a user principal name in the directory"))
            continue
        for external in (
            external_id("github", "login", member.login),
            external_id("github", "id", member.database_id) if member.database_id else None,
        ):
            if external:
                link(external, user.oid)
                report.linked.append((external, user.oid))
    return report


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj
