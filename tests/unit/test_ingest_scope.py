"""Property: a gate is bound to the authenticated tenant exactly when every target it names is that tenant's."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from functions.http import status_of
from gatekeeper.errors import GatekeeperError
from gatekeeper.events.github import parse_github
from gatekeeper.events.model import PipelineEvent
from gatekeeper.ingest.scope import bind_github
from gatekeeper.tenancy.model import TenantRecord
from tests.conftest import ROOT

DPR = json.loads((ROOT / "tests/fixtures/github/deployment_protection_rule.requested.json").read_text())
B = TenantRecord(
    tenant_id="tenantb",
    display_name="B",
    identities=("github:org:b-org", "github:repo:b-user/solo", "github:installation:77", "github:installation:78"),
)
# (owner, name) pairs: B's organisation, B's single registered repository, and A's.
REPOS = {"b-org": ("b-org", "app"), "b-solo": ("b-user", "solo"), "a": ("octo-org", "octo-repo")}


def payload(repo: str, org: str | None, installation: int | None, callback_repo: str) -> dict[str, Any]:
    owner, name = REPOS[repo]
    cb_owner, cb_name = REPOS[callback_repo]
    p = copy.deepcopy(DPR)
    p["repository"].update(full_name=f"{owner}/{name}", name=name)
    p["repository"]["owner"]["login"] = owner
    if org is None:
        p.pop("organization")
    else:
        p["organization"]["login"] = org
    if installation is None:
        p.pop("installation")
    else:
        p["installation"]["id"] = installation
    p["deployment_callback_url"] = (
        f"https://api.github.com/repos/{cb_owner}/{cb_name}/actions/runs/5/deployment_protection_rule"
    )
    return p


@settings(derandomize=True, max_examples=250, deadline=None)
@given(
    repo=st.sampled_from(sorted(REPOS)),
    org=st.sampled_from([None, "b-org", "octo-org", "b-user"]),
    installation=st.sampled_from([None, 77, 78, 35490125]),
    callback_repo=st.sampled_from(sorted(REPOS)),
)
def test_bound_iff_every_named_target_is_the_tenants_and_they_agree(repo, org, installation, callback_repo):
    owner, _ = REPOS[repo]
    expected = (
        repo != "a"
        and callback_repo == repo
        and (org is None or org == owner)
        # B has two installations: one of them, or none (the App asks GitHub which one when it answers)
        and installation in (77, 78, None)
    )
    try:
        event = parse_github(
            "deployment_protection_rule",
            payload(repo, org, installation, callback_repo),
            tenant_id=B.tenant_id,
            delivery_id="d",
        )
        assert isinstance(event, PipelineEvent)
        bound = bind_github(B, payload(repo, org, installation, callback_repo), event)
    except GatekeeperError as problem:
        assert not expected, problem.detail
        assert status_of(problem) == 422 and problem.field
        return
    assert expected
    assert bound.callback.installation_id == installation  # type: ignore[union-attr]
    assert (bound.callback.owner, bound.callback.repo) == REPOS[repo]  # type: ignore[union-attr]
