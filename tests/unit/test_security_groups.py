"""CachedGroupMembership: asks the directory only about groups it has no fresh answer for, yes or no."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from gatekeeper.security.groups import CachedGroupMembership, GroupLookupUnavailable

TENANT, USER = "tenant-a", "user-1"


class RecordingDirectory:
    """The port's contract, answering from a dict and recording each question."""

    def __init__(self, members: dict[str, set[str]]) -> None:
        self.members = members
        self.questions: list[list[str]] = []
        self.down = False

    def serves(self, entra_tenant: str) -> bool:
        return entra_tenant == TENANT

    def member_groups(self, entra_tenant: str, user_oid: str, group_ids: Collection[str]) -> frozenset[str]:
        if self.down:
            raise GroupLookupUnavailable("directory down")
        self.questions.append(sorted(group_ids))
        return frozenset(g for g in group_ids if g in self.members.get(user_oid, set()))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_answers_yes_and_no_are_kept_until_they_expire():
    directory, clock = RecordingDirectory({USER: {"g1"}}), Clock()
    cache = CachedGroupMembership(directory, ttl_seconds=300, clock=clock)
    assert cache.member_groups(TENANT, USER, ["G1", "g2"]) == {"g1"}
    assert cache.member_groups(TENANT, USER, ["g1", "g2"]) == {"g1"}
    assert directory.questions == [["g1", "g2"]]  # lower-cased, asked once
    assert cache.member_groups(TENANT, USER, ["g2", "g3"]) == frozenset()
    assert directory.questions[-1] == ["g3"]  # only the unknown group
    clock.now += 301
    directory.members[USER].add("g2")  # joined meanwhile: seen once the answer expired
    assert cache.member_groups(TENANT, USER, ["g2"]) == {"g2"}


def test_answers_are_per_tenant_and_person():
    directory = RecordingDirectory({USER: {"g1"}})
    cache = CachedGroupMembership(directory)
    assert cache.member_groups(TENANT, USER, ["g1"]) == {"g1"}
    assert cache.member_groups(TENANT, "user-2", ["g1"]) == frozenset()
    assert cache.member_groups("tenant-b", USER, ["g1"]) == {"g1"}
    assert len(directory.questions) == 3


def test_a_failed_lookup_is_not_remembered():
    directory = RecordingDirectory({USER: {"g1"}})
    cache = CachedGroupMembership(directory)
    directory.down = True
    with pytest.raises(GroupLookupUnavailable):
        cache.member_groups(TENANT, USER, ["g1"])
    directory.down = False
    assert cache.member_groups(TENANT, USER, ["g1"]) == {"g1"}


def test_the_cache_is_bounded_oldest_first():
    directory = RecordingDirectory({})
    cache = CachedGroupMembership(directory, max_entries=2)
    for group in ("g1", "g2", "g3"):
        cache.member_groups(TENANT, USER, [group])
    cache.member_groups(TENANT, USER, ["g3", "g1"])
    assert directory.questions[-1] == ["g1"]  # g1 was evicted, g3 was not


def test_serves_is_the_wrapped_lookups():
    cache = CachedGroupMembership(RecordingDirectory({}))
    assert cache.serves(TENANT) and not cache.serves("elsewhere")
    with pytest.raises(ValueError):
        CachedGroupMembership(RecordingDirectory({}), ttl_seconds=0)


def test_the_same_person_and_tenant_in_another_case_is_one_cached_answer():
    """Object and tenant ids are GUIDs: their case carries no meaning, so it must not cost a second lookup."""
    directory = RecordingDirectory({USER: {"g1"}})
    cache = CachedGroupMembership(directory)
    assert cache.member_groups(TENANT, USER, ["g1"]) == {"g1"}
    assert cache.member_groups(TENANT.upper(), USER.upper(), ["G1"]) == {"g1"}
    assert directory.questions == [["g1"]]


def test_a_directory_answering_in_upper_case_still_makes_a_member():
    class UpperCaseDirectory(RecordingDirectory):
        def member_groups(self, entra_tenant: str, user_oid: str, group_ids: Collection[str]) -> frozenset[str]:
            return frozenset(g.upper() for g in super().member_groups(entra_tenant, user_oid, group_ids))

    cache = CachedGroupMembership(UpperCaseDirectory({USER: {"g1"}}))
    assert cache.member_groups(TENANT, USER, ["g1", "g2"]) == {"g1"}
    assert cache.member_groups(TENANT, USER, ["g1", "g2"]) == {"g1"}  # and the cached answers agree


def test_by_default_an_answer_is_kept_five_minutes():
    directory, clock = RecordingDirectory({USER: {"g1"}}), Clock()
    cache = CachedGroupMembership(directory, clock=clock)
    cache.member_groups(TENANT, USER, ["g1"])
    clock.now += 299
    cache.member_groups(TENANT, USER, ["g1"])
    assert len(directory.questions) == 1
    clock.now += 2
    cache.member_groups(TENANT, USER, ["g1"])
    assert len(directory.questions) == 2
