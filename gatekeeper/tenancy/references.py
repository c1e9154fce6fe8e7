"""Which app settings a tenant's outbound credentials (`psa.credentials`, `rmm.client_secret`, `slack.bot_token`,
`slack.signing_secrets`) may name: only that tenant's own, `GK_<TENANT>_<NAME>`.

Those values are sent to the host the tenant record names (the PSA site, the RMM API, Slack). A reference is
`env:NAME` and reads any app setting, so without this rule a record naming `AzureWebJobsStorage`,
`APPLICATIONINSIGHTS_CONNECTION_STRING` or another tenant's secret would send that value to whatever host the
record points at. The tenant's prefix is the convention every tenant secret already follows (the bootstrap
tenant's `env:GK_<TENANT>_<PURPOSE>`, examples/tenants.yaml). Tenant ids are lower-case letters and digits
without `_`, so one tenant's prefix is never the start of another's. Checked on import (the error names the
field) and again when a client is built, for records stored before the rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gatekeeper.tenancy.model import TenantRecord

PLATFORM_PREFIXES = (
    "AZUREWEBJOBS",
    "APPLICATIONINSIGHTS_",
    "GATEKEEPER_",
    "WEBSITE_",
    "FUNCTIONS_",
    "AZURE_",
    "MSI_",
    "IDENTITY_",
    "APPSETTING_",
)
"""Settings of the platform and of the app itself (compared in upper case): never a tenant credential."""


def tenant_prefix(tenant_id: str) -> str:
    """`GK_<TENANT>_`: the start of every app setting a tenant's references may name."""
    return f"GK_{tenant_id.upper()}_"


def reference_problem(tenant_id: str, ref: str) -> str | None:
    """Why `ref` (`env:NAME`) may not be one of this tenant's credentials, or None when it may."""
    name = ref.removeprefix("env:") if ref.startswith("env:") else ""
    prefix = tenant_prefix(tenant_id)
    upper = name.upper()
    for platform in PLATFORM_PREFIXES:
        if upper.startswith(platform):
            return f"{name[:80]} is a platform or Gatekeeper setting ({platform}*), never a tenant credential"
    if name.startswith(prefix) and len(name) > len(prefix):
        return None
    if upper.startswith("GK_"):
        return f"names another tenant's app setting; this tenant's references must be {prefix}<NAME>"
    return f"must name one of this tenant's own app settings, {prefix}<NAME>"


def credential_references(record: TenantRecord) -> Iterator[tuple[str, str]]:
    """(field, reference) of every outbound credential in the record."""
    if record.psa is not None:
        for name, ref in record.psa.credentials.model_dump().items():
            yield f"psa.credentials.{name}", ref
    if record.rmm is not None:
        yield "rmm.client_secret", record.rmm.client_secret
    if record.slack is not None:
        yield "slack.bot_token", record.slack.bot_token
        for index, ref in enumerate(record.slack.signing_secrets):
            yield f"slack.signing_secrets[{index}]", ref


def first_problem(record: TenantRecord) -> tuple[str, str] | None:
    """(field, why) of the first reference the record may not use, or None."""
    for field, ref in credential_references(record):
        problem = reference_problem(record.tenant_id, ref)
        if problem is not None:
            return field, problem
    return None
