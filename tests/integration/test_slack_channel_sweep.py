"""`SlackVotes` (gatekeeper/slack/channel.py): who a queued Slack click is, through the identity map and the
e-mail link. Cases a hand sweep of planted bugs found untested (docs/mutation.md, second sweep); the rig is
tests/integration/test_slack_channel_gaps.py's (Azurite, the local Slack Web API and Graph)."""

from __future__ import annotations

import pytest

from gatekeeper.security.requester import DirectoryUser
from tests.integration.test_slack_channel_gaps import (  # noqa: F401 - the fixture is used by name
    ANNA,
    PIET,
    PIET_UPN,
    U_ANNA,
    U_PIET,
    Ch,
    NotReached,
    Recorded,
    ch,
    unlinked,
    votes_with,
)

pytestmark = pytest.mark.azurite


class Directory:
    """A directory answering with fixed entries (what a misbehaving or stale directory could say)."""

    def __init__(self, entries: dict[str, DirectoryUser]) -> None:
        self.entries = entries

    def user(self, id_or_upn: str) -> DirectoryUser | None:
        return self.entries.get(id_or_upn)


def test_no_email_link_when_the_tenant_turned_it_off(ch: Ch):
    ch.configure(link_by_email=False)
    unlinked(ch)


def test_no_email_link_for_a_slack_user_of_another_workspace(ch: Ch):
    ch.slack.team_id = "TOTHERTEAM1"  # users.info names the user's own workspace: not the clicking one
    unlinked(ch)


def test_no_email_link_when_the_directory_entry_does_not_carry_that_address(ch: Ch):
    stranger = DirectoryUser(
        oid=PIET, addresses=frozenset({"someone.else@contoso.com"}), upn="someone.else@contoso.com"
    )
    unlinked(ch, votes_with(ch, Directory({PIET_UPN: stranger})))


def test_a_vote_carries_only_the_voters_own_upn_and_asks_for_their_groups(ch: Ch):
    ch.link(U_ANNA, ANNA)
    lent = DirectoryUser(oid=PIET, addresses=frozenset({PIET_UPN}), upn=PIET_UPN)
    decisions = Recorded()
    assert votes_with(ch, Directory({ANNA: lent})).handle(ch.tenant_id, ch.click(ch.gate()), decisions) == "voted"
    ((_, principal, _),) = decisions.calls
    assert (principal.oid, principal.upn) == (ANNA, None)  # never another person's UPN
    assert principal.groups_overage is True  # a click carries no groups: group approvers are looked up


_ = (NotReached, U_PIET)
