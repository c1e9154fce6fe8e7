"""After authentication: every target an accepted event names must belong to the tenant that authenticated.

The tenant comes from the credential; the body only names things. A body signed with tenant B's secret may
still name tenant A's repository, organisation, installation, Azure DevOps organisation, connector account or
callback URL; each such field is checked here against B's registered identities (rules in
`gatekeeper.tenancy.ownership`) and refused with 422 naming the field. Nothing is queued before this passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gatekeeper.errors import InvalidInput, foreign_target
from gatekeeper.events.identity import source_identities
from gatekeeper.events.model import AzureDevOpsCallback, EventSource, GitHubCallback, PipelineEvent, WebhookCallback
from gatekeeper.tenancy.model import TenantRecord
from gatekeeper.tenancy.ownership import (
    callback_url_allowed,
    github_installations,
    owns_github_org,
    owns_github_repository,
    owns_identity,
)

NOT_REGISTERED = "is not registered for this tenant"


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def bind_github(tenant: TenantRecord, document: Mapping[str, Any], event: PipelineEvent) -> PipelineEvent:
    """Check the GitHub targets of `event` against `tenant`; a gate's callback gets the tenant's installation.

    `repository.full_name`, `repository.owner.login` and `organization.login` must belong to the tenant, and
    for a gate also agree (`full_name` is `owner.login/name`, the organisation is the owner);
    `installation.id` must be registered for the tenant; a gate without one gets the tenant's only
    installation, or none when it has several (the App looks it up when answering). The callback URL's path
    was already checked to name the same repository when the event was parsed.
    """
    identities = tenant.all_identities
    full_name = _text(_get(document, "repository", "full_name"))
    owner = _text(_get(document, "repository", "owner", "login"))
    name = _text(_get(document, "repository", "name"))
    org = _text(_get(document, "organization", "login"))
    gate = isinstance(event.callback, GitHubCallback)
    if full_name and not owns_github_repository(identities, full_name):
        raise foreign_target("repository.full_name", NOT_REGISTERED)
    if owner and not owns_github_org(identities, owner):
        raise foreign_target("repository.owner.login", NOT_REGISTERED)
    if org and not owns_github_org(identities, org):
        raise foreign_target("organization.login", NOT_REGISTERED)
    if gate:
        # The callback goes to owner/repo: for a gate every name of the repository must be the same one.
        # (Status events only need each name to be the tenant's: published samples mix them.)
        if full_name and owner and name and full_name.lower() != f"{owner}/{name}".lower():
            raise InvalidInput(
                "deployment_protection_rule: field 'repository.full_name' does not agree with "
                "'repository.owner.login' and 'repository.name'",
                field="repository.full_name",
            )
        if org and owner and org.lower() != owner.lower():
            raise InvalidInput(
                "deployment_protection_rule: field 'organization.login' must be the repository's owner",
                field="organization.login",
            )
    registered = github_installations(identities)
    installation = _int(_get(document, "installation", "id"))
    if installation is not None and installation not in registered:
        raise foreign_target("installation.id", NOT_REGISTERED)
    if not isinstance(event.callback, GitHubCallback):
        return event
    if installation is None:
        if not registered:
            raise foreign_target(
                "installation.id", "is missing, and the tenant has no GitHub App installation registered"
            )
        if len(registered) > 1:
            # GitHub's schema lets a protection rule omit `installation`. The repository was checked above to be
            # the tenant's; when answering, the App asks GitHub which installation that repository is in and
            # acts only if it is one of the tenant's (gatekeeper.integrations.github_app).
            return event
        installation = next(iter(registered))
    callback = event.callback.model_copy(update={"installation_id": installation})
    return event.model_copy(update={"callback": callback})


def bind_azure_devops(tenant: TenantRecord, document: Mapping[str, Any], event: PipelineEvent | None) -> None:
    """Every organisation URL and account id the body or check names must be registered for the tenant."""
    identities = tenant.all_identities
    if event is not None and isinstance(event.callback, AzureDevOpsCallback):
        plan = source_identities(EventSource.AZURE_DEVOPS, {}, {"PlanUrl": event.callback.plan_url})
        if not plan or not owns_identity(identities, plan[0]):
            raise foreign_target("header:PlanUrl", NOT_REGISTERED)
        return
    containers = document.get("resourceContainers")
    for container in ("collection", "account", "project"):
        url = _get(containers, container, "baseUrl")
        if url is None:
            continue
        named = source_identities(EventSource.AZURE_DEVOPS, {"resourceContainers": {container: {"baseUrl": url}}})
        if not named or not owns_identity(identities, named[0]):
            raise foreign_target(f"resourceContainers.{container}.baseUrl", NOT_REGISTERED)
    account = _get(containers, "account", "id")
    if account is not None:
        named = source_identities(EventSource.AZURE_DEVOPS, {"resourceContainers": {"account": {"id": account}}})
        if named and not owns_identity(identities, named[-1]):
            raise foreign_target("resourceContainers.account.id", NOT_REGISTERED)


_CONNECTOR_PAYLOAD_FIELD = {
    EventSource.CONNECTWISE: "payload.CompanyId",
    EventSource.AUTOTASK: "payload.Fields.CompanyID",
    EventSource.NINJARMM: "payload.device.organizationId",
    EventSource.HALOPSA: "account",
    EventSource.DATTORMM: "payload.siteUid",
}


def bind_connector(tenant: TenantRecord, source: EventSource, document: Mapping[str, Any]) -> None:
    """The envelope's `account` and any account the vendor body names must be registered for the tenant."""
    identities = tenant.all_identities
    account_only: dict[str, Any] = {
        "connector": document.get("connector"),
        "account": document.get("account"),
        "payload": {},
    }
    for identity in source_identities(source, account_only):
        if not owns_identity(identities, identity):
            raise foreign_target("account", NOT_REGISTERED)
    for identity in source_identities(source, document):
        if not owns_identity(identities, identity):
            raise foreign_target(_CONNECTOR_PAYLOAD_FIELD.get(source, "payload"), NOT_REGISTERED)


def bind_webhook(tenant: TenantRecord, event: PipelineEvent) -> None:
    """A generic gate's `callbackUrl` must lie under one of the tenant's registered callback URL prefixes."""
    if isinstance(event.callback, WebhookCallback) and not callback_url_allowed(
        tenant.callback_url_prefixes, event.callback.url
    ):
        raise foreign_target("callbackUrl", "is not under a callback URL prefix registered for this tenant")
