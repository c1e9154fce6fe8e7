"""Tenant secret references (gatekeeper/tenancy/secrets.py): each purpose gets only its own secrets (a GitHub
webhook secret is never an API key), in the order configured for rotation; an unset or empty app setting is
no secret; only `env:` references are read."""

from __future__ import annotations

from gatekeeper.tenancy.model import SecretPurpose, TenantRecord
from gatekeeper.tenancy.secrets import SecretResolver

ENVIRON = {"GK_HOOK": "github-hook-secret", "GK_API_NEW": "api-key-new", "GK_API_OLD": "api-key-old", "GK_EMPTY": ""}


def tenant() -> TenantRecord:
    return TenantRecord(
        tenant_id="tsecrets",
        display_name="Secrets",
        secrets={
            SecretPurpose.GITHUB_WEBHOOK: ("env:GK_HOOK",),
            SecretPurpose.GENERIC_API_KEY: ("env:GK_API_NEW", "env:GK_MISSING", "env:GK_EMPTY", "env:GK_API_OLD"),
        },
    )


def test_each_purpose_gets_only_its_own_secrets_in_rotation_order():
    resolver = SecretResolver(ENVIRON)
    assert resolver.resolve(tenant(), SecretPurpose.GENERIC_API_KEY) == [b"api-key-new", b"api-key-old"]
    assert resolver.resolve(tenant(), SecretPurpose.GITHUB_WEBHOOK) == [b"github-hook-secret"]
    assert resolver.resolve(tenant(), SecretPurpose.AZURE_DEVOPS_CHECK) == []  # none configured: nothing opens


def test_a_single_reference_is_read_only_when_it_is_an_env_reference_with_a_value():
    resolver = SecretResolver(ENVIRON)
    assert resolver.reference("env:GK_HOOK") == "github-hook-secret"
    assert resolver.reference("GK_HOOK") is None  # a bare name (or a pasted secret) is not a reference
    assert resolver.reference("kv:GK_HOOK") is None
    assert resolver.reference("env:GK_EMPTY") is None  # an empty setting is no credential
    assert resolver.reference("env:GK_MISSING") is None
