"""The process services build the directory lookup once, only when GATEKEEPER_GRAPH_TENANT_ID names one."""

from __future__ import annotations

import pytest

from gatekeeper.security.groups import CachedGroupMembership
from gatekeeper.services import Services
from gatekeeper.settings import Settings


def runtime(environ: dict[str, str]) -> Services:
    return Services(Settings.from_environ(environ))  # storage and keys are never built here


def test_no_tenant_means_no_lookups():
    assert runtime({}).group_membership is None


def test_a_domain_name_is_refused_with_the_setting_named():
    with pytest.raises(ValueError, match="GATEKEEPER_GRAPH_TENANT_ID: must be the Entra tenant id"):
        runtime({"GATEKEEPER_GRAPH_TENANT_ID": "contoso.onmicrosoft.com"}).group_membership  # noqa: B018


def test_the_lookup_is_built_once_and_can_be_replaced():
    rt = runtime(
        {
            "GATEKEEPER_GRAPH_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "GATEKEEPER_GRAPH_BASE_URL": "https://graph.example.invalid/v1.0",  # never called here
        }
    )
    first = rt.group_membership
    assert isinstance(first, CachedGroupMembership) and rt.group_membership is first
    assert first.serves("72F988BF-86F1-41AF-91AB-2D7CD011DB47") and not first.serves("another")
    rt.group_membership = None
    assert rt.group_membership is None
    del rt.group_membership
    second = rt.group_membership
    assert isinstance(second, CachedGroupMembership) and second is not first
    first.close()
    second.close()
