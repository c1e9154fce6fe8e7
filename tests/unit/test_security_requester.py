"""Requester identities: address normalisation, external identity forms, what a requester is compared by."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.approvals.chain import ChainPlan
from gatekeeper.gates.evaluate import raise_quorum
from gatekeeper.policy.document import PolicyError, load_policy
from gatekeeper.security.requester import (
    Requester,
    external_id,
    normalise_address,
    parse_external,
    requester_claims,
    user_addresses,
)

DEV = "0d0d0d0d-0000-4000-8000-00000000de00"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Dev@Contoso.com", "dev@contoso.com"),
        ("  <DEV@contoso.COM> ", "dev@contoso.com"),
        ("SMTP:Dev@Contoso.com", "dev@contoso.com"),
        ("smtp:dev.alias@contoso.com", "dev.alias@contoso.com"),
        ("mailto:dev@contoso.com", "dev@contoso.com"),
        ("\uff44\uff45\uff56@contoso.com", "dev@contoso.com"),  # full-width letters (NFKC)
        ("Dev User", None),
        ("dev@localhost", None),
        ("@contoso.com", None),
        ("", None),
    ],
)
def test_addresses_are_normalised_before_comparison(raw, expected):
    assert normalise_address(raw) == expected


@settings(derandomize=True, max_examples=200)
@given(st.text(max_size=80))
def test_normalising_is_idempotent_and_never_raises(text):
    once = normalise_address(text)
    assert once is None or normalise_address(once) == once


def test_only_smtp_proxy_addresses_count():
    found = user_addresses(
        "Dev@Contoso.com",
        "dev@contoso.onmicrosoft.com",
        ["SMTP:A@contoso.com", "smtp:b@contoso.com", "SIP:c@contoso.com", "x500:/o=x"],
    )
    assert found == {"dev@contoso.com", "dev@contoso.onmicrosoft.com", "a@contoso.com", "b@contoso.com"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("github:login:Dev-GH", "github:login:dev-gh"),
        ("GitHub:ID:4242", "github:id:4242"),
        ("azure-devops:unique:DEV@contoso.com", "azure-devops:unique:dev@contoso.com"),
        (f"azure-devops:id:{DEV.upper()}", f"azure-devops:id:{DEV}"),
        ("connectwise:member:dev1", "connectwise:member:dev1"),
    ],
)
def test_linkable_identities_are_normalised(text, expected):
    assert parse_external(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("gitlab:login:x", "provider must be one of"),
        ("github:email:x@y.com", "github identities are id, login"),
        ("github:id:octocat", "a GitHub user id is a number"),
        ("azure-devops:id:dev", "is a GUID"),
        ("azure-devops:name:Dev User", "not 'name'"),  # display names are not unique: never linked
        ("entra:oid:" + DEV, "provider must be one of"),
        ("github:login:", "empty"),
    ],
)
def test_bad_external_identities_say_what_is_wrong(text, says):
    with pytest.raises(ValueError, match=says):
        parse_external(text)


def test_a_requester_is_compared_by_oid_aliases_and_seen_names():
    who = Requester(
        oid=DEV,
        resolved=True,
        seen_as=("github:login:dev-gh", "claim:actor:Dev.Alias@Contoso.com", f"entra:oid:{DEV}"),
        aliases=("dev@contoso.com",),
    )
    assert who.identities() == (DEV, "dev@contoso.com", "github:login:dev-gh", "dev.alias@contoso.com")
    assert who.needs_names()
    assert not Requester(oid=DEV, resolved=True, seen_as=(f"entra:oid:{DEV}",)).needs_names()


def test_events_sealed_before_requester_ids_still_name_their_actor():
    assert requester_claims("github", "Dev-GH", ()) == ("github:login:dev-gh",)
    assert requester_claims("azure-devops", "Dev User", ()) == ("azure-devops:name:dev user",)
    assert requester_claims("azure-devops", "DEV@contoso.com", ()) == ("azure-devops:unique:dev@contoso.com",)
    assert requester_claims("connectwise", "17", ()) == ("connectwise:member:17",)
    assert requester_claims("generic", "someone", ()) == ("claim:actor:someone",)
    assert requester_claims("generic", None, ()) == ()
    assert requester_claims("generic", "someone", (f"entra:oid:{DEV}",)) == (f"entra:oid:{DEV}",)
    assert external_id("github", "login", "x\ny") is None


def plan(*stages):
    return ChainPlan.model_validate(
        {
            "stages": [
                {"name": f"s{i}", "approvers": a, "quorum": q, "timeout": "PT1H"} for i, (a, q) in enumerate(stages)
            ]
        }
    )


def test_the_extra_approver_goes_to_the_first_stage_that_can_reach_it():
    raised, index = raise_quorum(plan((["a"], 1), (["b", "c"], 1)))
    assert index == 1 and [s.quorum for s in raised.stages] == [1, 2]
    raised, index = raise_quorum(
        plan(
            (["group:" + DEV], 3),
        )
    )
    assert index == 0 and raised.stages[0].quorum == 4
    assert raise_quorum(plan((["a"], 1), (["b"], 1))) is None


def test_policy_unresolved_requester_defaults_to_raise_and_is_validated():
    base = {"version": 1, "rules": []}
    assert load_policy(base).unresolved_requester == "raise"
    assert load_policy({**base, "unresolved_requester": "deny"}).unresolved_requester == "deny"
    assert load_policy({**base, "unresolved_requester": "raise"}).fingerprint() == load_policy(base).fingerprint()
    with pytest.raises(PolicyError) as caught:
        load_policy({**base, "unresolved_requester": "ignore"})
    assert caught.value.field == "unresolved_requester"
