"""The demo's Slack: the local Slack Web API (devstack/slack.py) for the tenant's workspace, the Slack channel
(`SlackNotifier`) pointed at it, and one approval given from Slack through the real route
(`functions.slack.slack_interactions`), the `slack-interactions` queue and the decision service.

Writes demo-output/slack-request.json (the Block Kit message an approver got) and slack-decided.json (the same
message after the decision, updated in place)."""

from __future__ import annotations

import base64
import copy
import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devstack.slack import LocalSlack, form_body, sign
from devstack.stack import LocalStack
from gatekeeper.security.requester import UserDirectory
from gatekeeper.slack.blocks import APPROVE_ACTION, violations
from gatekeeper.slack.channel import SlackNotifier, SlackVotes, slack_external
from gatekeeper.slack.edge import read_queue_message
from gatekeeper.slack.routes import SLACK_INTERACTIONS_QUEUE
from gatekeeper.tenancy.identities import IdentityLink, IdentityMap

if TYPE_CHECKING:
    from demo.story import Demo

TENANT = "contoso"
TRIGGER_ID = "12321423423.333649436676.d8c1bb837935619ccad0f624c448ffb3"


@dataclass
class DemoSlack:
    server: LocalSlack
    notifier: SlackNotifier
    team_id: str
    signing_secret: str
    users: dict[str, str]  # UPN -> Slack user id


def start_slack(stack: ExitStack, local: LocalStack, upns: list[str], directory: UserDirectory | None) -> DemoSlack:
    """The tenant's workspace, with a Slack user for each of `upns` (their Slack e-mail is their UPN)."""
    runtime = local.services
    record = runtime.registry.get(TENANT)
    assert record is not None and record.slack is not None, "examples/tenants.yaml gives contoso a Slack workspace"
    users = {upn: f"U{index:08d}" for index, upn in enumerate(upns, start=1)}
    server = stack.enter_context(
        LocalSlack(
            local.secret(record.slack.bot_token),
            record.slack.team_id,
            {uid: {"email": upn, "real_name": upn.split("@")[0]} for upn, uid in users.items()},
        )
    )
    notifier = SlackNotifier(
        tenants=runtime.slack_tenants,
        storage=runtime.storage,
        cipher=runtime.sealer,
        directory=directory,
        base_url="https://gatekeeper.contoso.com",
        api_url=server.api_url,
    )
    runtime.slack = notifier  # the routes and the queue work use the local Web API too
    runtime.slack_votes = SlackVotes(  # names the voter by UPN through the demo's directory, as Graph does
        tenants=runtime.slack_tenants,
        notifier=notifier,
        identities=runtime.identities,
        audit_for=runtime.audit_for,
        entra_tenants_for=runtime.entra_tenants_for,
        storage=runtime.storage,
        directory=directory,
    )
    return DemoSlack(server, notifier, record.slack.team_id, local.secret(record.slack.signing_secrets[0]), users)


def _press(slack: DemoSlack, upn: str, gate: str, action_id: str) -> dict[str, Any]:
    """A block_actions payload shaped like Slack's published example
    (https://docs.slack.dev/reference/interaction-payloads/block_actions-payload)."""
    user = slack.users[upn]
    channel = slack.server.dm_channel(user)
    ts, _ = _message(slack, channel, gate)
    return {
        "type": "block_actions",
        "team": {"id": slack.team_id, "domain": "contoso"},
        "user": {"id": user, "username": upn.split("@")[0], "team_id": slack.team_id},
        "api_app_id": "AABA1ABCD",
        "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False},
        "trigger_id": TRIGGER_ID,
        "channel": {"id": channel, "name": "directmessage"},
        "actions": [
            {
                "action_id": action_id,
                "block_id": "decision",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": gate,
                "type": "button",
            }
        ],
    }


def slack_approval(demo: Demo, slack: DemoSlack, submit: Any, approver: str, oid: str, second: str) -> None:
    """An L2 data export approved from Slack by `approver`, then by `second` through the API (the unresolved
    requester asks for two); `submit()` starts the gate and returns its id."""
    t = demo.timeline
    runtime = demo.stack.services
    t.section("Slack: an L2 request approved from a Slack DM")
    gate = submit()
    dm = slack.server.dm_channel(slack.users[approver])
    request = copy.deepcopy(_message(slack, dm, gate)[1])
    _write(demo.out_dir / "slack-request.json", request)
    t.say(
        f"Block Kit DM to {approver.split('@')[0]}: {len(request['blocks'])} blocks, buttons "
        f"{_buttons(request)}, Block Kit limits: {violations(request) or 'ok'}",
        indent=1,
    )
    IdentityMap(runtime.storage, TENANT, runtime.sealer).link(  # as `gatekeeper identities link` does
        IdentityLink(external=slack_external(slack.team_id, slack.users[approver]), oid=oid, note="demo"),
        runtime.audit_for(TENANT),
        by="admin@contoso.com",
    )
    t.say(f"admin links slack:user:{slack.team_id}/{slack.users[approver]} to {approver.split('@')[0]} (audited)")
    body = form_body(_press(slack, approver, gate, APPROVE_ACTION))
    forged, _ = demo.post("slack/interactions", "slack_interactions", body, sign("not-the-secret", body))
    t.say(f"a forged Slack signature: {forged}")
    status, _ = demo.post("slack/interactions", "slack_interactions", body, sign(slack.signing_secret, body))
    t.say(f"{approver.split('@')[0]} presses Approve in Slack (signed block_actions): {status}, queued")
    queue = runtime.storage.queue(SLACK_INTERACTIONS_QUEUE)
    for message in queue.receive_messages():  # what the slack_decisions queue trigger does
        tenant_id, interaction = read_queue_message(runtime.sealer, base64.b64decode(message.content))
        outcome = runtime.slack_votes.handle(tenant_id, interaction, demo.gates.decisions)
        queue.delete_message(message)
        t.say(f"slack-interactions queue: {outcome}", indent=1)
    demo.gates.runner.run_until_idle()
    _, voted = _message(slack, dm, gate)
    t.say(f"every DM of the gate updated in place with the vote ({voted['updates']} chat.update on this one)", indent=1)
    status, _ = demo.decide(gate, second, "approve", "Export scope checked.")
    t.say(f"{second.split('@')[0]} approves through the API: {status}")
    _, decided = _message(slack, dm, gate)
    _write(demo.out_dir / "slack-decided.json", decided)
    t.say(
        f"the DM was updated in place ({decided['updates']} chat.update): buttons {_buttons(decided)}, "
        f"'{decided['text']}', Block Kit limits: {violations(decided) or 'ok'}",
        indent=1,
    )
    for line in demo.new_webhook_calls():
        t.say(line)
    t.say(f"outcome: {demo.status(gate)}")


def _message(slack: DemoSlack, channel: str, gate: str) -> tuple[str, dict[str, Any]]:
    """(ts, message) of the gate's message in `channel` (an approver's DM holds one per gate)."""
    (found,) = [
        (ts, message)
        for (c, ts), message in slack.server.messages.items()
        if c == channel and f"Gate {gate}" in json.dumps(message["blocks"])
    ]
    return found


def _buttons(message: dict[str, Any]) -> list[str]:
    return [e["text"]["text"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


def _write(path: Path, message: dict[str, Any]) -> None:
    path.write_text(json.dumps({"text": message["text"], "blocks": message["blocks"]}, indent=2) + "\n")
