"""Slack's requests to `/api/slack/interactions` and `/api/slack/events`: who sent it, for which tenant, what.

Slack signs every request (signature v0): `X-Slack-Signature: v0=<hex HMAC-SHA256 over "v0:{timestamp}:{raw
body}" with the app's signing secret>` and `X-Slack-Request-Timestamp` (Unix seconds). The library's
`slack_sdk.signature.SignatureVerifier` computes and compares it (`hmac.compare_digest`, constant time) and
refuses timestamps more than 5 minutes away; the headers are checked for shape first (the SDK would raise on a
non-numeric timestamp).

The secret is the tenant's: the workspace a payload names (`team.id`) selects the tenant through the registry
(identity `slack:team:<id>`), whose `slack.signing_secrets` are tried in turn. An unknown workspace, a missing
signature, a forged one and a stale timestamp all get the same 401 answer (the reason is logged, not told), so
nothing reveals which workspaces are registered. Inside the payload, every place Slack names a workspace
(`team.id`, `user.team_id`, `view.team_id`) must be the signed-for one, or the request is refused naming it.
`url_verification` (sent when the admin saves the Request URL) names no workspace: it is verified against
the signing secrets of the tenants that have Slack configured.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs

from gatekeeper import json_bounded
from gatekeeper.errors import InvalidInput, Unauthenticated
from gatekeeper.slack.blocks import (
    APPROVE_ACTION,
    COMMENT_ACTION,
    COMMENT_BLOCK,
    FOLLOW_UP_KINDS,
    FOLLOW_UP_VERBS,
    MARK_DONE_ACTION,
    MARK_DONE_MODAL,
    MAX_COMMENT,
    MINUTES_ACTION,
    MINUTES_BLOCK,
    NOTE_ACTION,
    NOTE_BLOCK,
    REJECT_ACTION,
    REJECT_MODAL,
)
from gatekeeper.tenancy.model import TenantRecord
from gatekeeper.tenancy.slack_settings import CHANNEL_ID, TEAM_ID, USER_ID

log = logging.getLogger("gatekeeper.slack")

TIMESTAMP_HEADER = "x-slack-request-timestamp"
SIGNATURE_HEADER = "x-slack-signature"
SIGNATURE = re.compile(r"^v0=[0-9a-f]{64}$")
MAX_SKEW_SECONDS = 300
MAX_BODY_BYTES = 64 * 1024  # an interaction payload with our message is a few KiB
MAX_TRIGGER_ID = 200
DM_CHANNEL = re.compile(r"^[CDG][A-Z0-9]{2,20}$")
MESSAGE_TS = re.compile(r"^\d{1,12}\.\d{1,9}$")
INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,199}$")


def refused(reason: str) -> Unauthenticated:
    """One answer for every authentication failure; the reason is for the log only."""
    log.info("slack request refused: %s", reason)
    return Unauthenticated("The request is not signed by a registered Slack workspace.", code="slack-signature")


@dataclass(frozen=True)
class Interaction:
    """What a person did, reduced to what the decision needs. `kind`: approve | reject | reject-submitted, or
    a follow-up: acknowledge | flag_rollback (an L1 notice's buttons), mark_done-open (an L3 task's button,
    which opens the modal) | mark_done (the modal's submit: `comment` is the note, `minutes` the time spent)."""

    kind: str
    team_id: str
    user_id: str
    instance_id: str
    channel: str | None = None
    ts: str | None = None
    trigger_id: str | None = None
    comment: str = ""
    minutes: int | None = None


def _headers(headers: Mapping[str, str]) -> tuple[str, str]:
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = (lowered.get(TIMESTAMP_HEADER) or "").strip()
    signature = (lowered.get(SIGNATURE_HEADER) or "").strip()
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise refused("timestamp missing or not a number")
    if not SIGNATURE.match(signature):
        raise refused("signature missing or not v0")
    return timestamp, signature


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Iterable[bytes],
    *,
    now: Callable[[], float] = time.time,
) -> None:
    """Raises Unauthenticated unless one of `secrets` signed `body` at a timestamp within 5 minutes of now."""
    from slack_sdk.signature import Clock, SignatureVerifier  # on first use (cold start)

    timestamp, signature = _headers(headers)
    if abs(now() - int(timestamp)) > MAX_SKEW_SECONDS:
        raise refused("timestamp older (or newer) than 5 minutes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise refused("body is not UTF-8") from None

    class _Now(Clock):
        def now(self) -> float:
            return now()

    for secret in secrets:
        verifier = SignatureVerifier(secret.decode("utf-8"), clock=_Now())
        if verifier.is_valid(body=text, timestamp=timestamp, signature=signature):
            return
    raise refused("no signing secret of the workspace's tenant verifies the signature")


# --- parsing -------------------------------------------------------------------------------------------------


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{path} must be an object", field=path)
    return value


def _id(value: Any, path: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidInput(f"{path} is missing or not a Slack id of the expected kind", field=path)
    return value


def interaction_payload(body: bytes) -> dict[str, Any]:
    """The JSON in the form field `payload` (Slack posts interactions as application/x-www-form-urlencoded),
    read by the bounded parser."""
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=5, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("the body must be a form with one field, payload", field="payload") from None
    values = form.get("payload") or []
    if len(values) != 1 or set(form) != {"payload"}:
        raise InvalidInput("the body must be a form with one field, payload", field="payload")
    try:
        return json_bounded.loads_object(values[0])
    except json_bounded.JsonBoundsError as exc:
        raise json_bounded.as_problem(exc, "payload") from None


def team_of(payload: Mapping[str, Any]) -> str:
    """The workspace the payload is for (`team.id`; events: `team_id`), which selects the tenant."""
    team = payload.get("team")
    if isinstance(team, Mapping):
        return _id(team.get("id"), "team.id", TEAM_ID)
    return _id(payload.get("team_id"), "team_id", TEAM_ID)


def _same_team(payload: Mapping[str, Any], team_id: str) -> None:
    """Every place the payload names a workspace must be the signed-for one."""
    user = payload.get("user")
    view = payload.get("view")
    for path, value in (
        ("user.team_id", user.get("team_id") if isinstance(user, Mapping) else None),
        ("view.team_id", view.get("team_id") if isinstance(view, Mapping) else None),
    ):
        if value is not None and value != team_id:
            raise InvalidInput(f"{path} is another workspace than team.id", field=path)


def parse_interaction(payload: Mapping[str, Any]) -> Interaction | None:
    """The decision in a `block_actions` (Approve / Reject button) or `view_submission` (the reject modal)
    payload; None for anything else (acknowledged, ignored). InvalidInput naming the field."""
    team_id = team_of(payload)
    _same_team(payload, team_id)
    user = _object(payload.get("user"), "user")
    user_id = _id(user.get("id"), "user.id", USER_ID)
    kind = payload.get("type")
    if kind == "block_actions":
        actions = payload.get("actions")
        if not isinstance(actions, list) or len(actions) != 1:
            raise InvalidInput("actions must hold exactly one action", field="actions")
        action = _object(actions[0], "actions[0]")
        action_id = action.get("action_id")
        if action_id not in (APPROVE_ACTION, REJECT_ACTION, MARK_DONE_ACTION, *FOLLOW_UP_VERBS):
            return None
        instance_id = _id(action.get("value"), "actions[0].value", INSTANCE_ID)
        container = payload.get("container")
        channel = payload.get("channel")
        channel_id = channel.get("id") if isinstance(channel, Mapping) else None
        ts = container.get("message_ts") if isinstance(container, Mapping) else None
        trigger = payload.get("trigger_id")
        if not isinstance(trigger, str) or not trigger or len(trigger) > MAX_TRIGGER_ID:
            raise InvalidInput("trigger_id is required", field="trigger_id")
        return Interaction(
            kind=FOLLOW_UP_VERBS.get(action_id) or _BUTTON_KINDS[action_id],
            team_id=team_id,
            user_id=user_id,
            instance_id=instance_id,
            channel=_id(channel_id, "channel.id", DM_CHANNEL),
            ts=_id(ts, "container.message_ts", MESSAGE_TS),
            trigger_id=trigger,
        )
    if kind == "view_submission":
        view = _object(payload.get("view"), "view")
        if view.get("callback_id") == MARK_DONE_MODAL:
            return _mark_done(view, team_id, user_id)
        if view.get("callback_id") != REJECT_MODAL:
            return None
        instance_id, channel, ts = _metadata(view.get("private_metadata"))
        state = _object(_object(view.get("state"), "view.state").get("values"), "view.state.values")
        block = _object(state.get(COMMENT_BLOCK), f"view.state.values.{COMMENT_BLOCK}")
        element = _object(block.get(COMMENT_ACTION), f"view.state.values.{COMMENT_BLOCK}.{COMMENT_ACTION}")
        comment = element.get("value")
        path = f"view.state.values.{COMMENT_BLOCK}.{COMMENT_ACTION}.value"
        if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
            raise InvalidInput(f"the comment must be text of at most {MAX_COMMENT} characters", field=path)
        return Interaction(
            kind="reject-submitted",
            team_id=team_id,
            user_id=user_id,
            instance_id=instance_id,
            channel=channel,
            ts=ts,
            comment=(comment or "").strip(),
        )
    return None


_BUTTON_KINDS = {APPROVE_ACTION: "approve", REJECT_ACTION: "reject", MARK_DONE_ACTION: "mark_done-open"}


def _input_value(values: Mapping[str, Any], block: str, action: str) -> tuple[Any, str]:
    """(the value typed into one input of a modal, its path); a left-empty optional input has no value."""
    path = f"view.state.values.{block}.{action}.value"
    holder = values.get(block)
    if holder is None:
        return None, path
    element = _object(_object(holder, f"view.state.values.{block}").get(action), f"view.state.values.{block}.{action}")
    return element.get("value"), path


def _mark_done(view: Mapping[str, Any], team_id: str, user_id: str) -> Interaction:
    """The mark-done modal's submit: the note (text, at most 1000 characters; empty is answered in the modal
    by the route) and the time spent (whole minutes 1..1440, or none), each refused naming its field."""
    from gatekeeper.gates.followup import parse_minutes

    instance_id, channel, ts = _metadata(view.get("private_metadata"))
    values = _object(_object(view.get("state"), "view.state").get("values"), "view.state.values")
    note, path = _input_value(values, NOTE_BLOCK, NOTE_ACTION)
    if note is not None and (not isinstance(note, str) or len(note) > MAX_COMMENT):
        raise InvalidInput(f"the note must be text of at most {MAX_COMMENT} characters", field=path)
    raw, path = _input_value(values, MINUTES_BLOCK, MINUTES_ACTION)
    if raw is not None and not isinstance(raw, str):  # Slack sends a number input's value as a string
        raise InvalidInput(f"{path} must be the number as text", field=path)
    return Interaction(
        kind="mark_done",
        team_id=team_id,
        user_id=user_id,
        instance_id=instance_id,
        channel=channel,
        ts=ts,
        comment=(note or "").strip(),
        minutes=parse_minutes(raw, path),
    )


def _metadata(value: Any) -> tuple[str, str, str]:
    """`gate|channel|ts` as the modal was opened with (`blocks.reject_modal`)."""
    parts = value.split("|") if isinstance(value, str) else []
    if len(parts) != 3:
        raise InvalidInput("view.private_metadata is not the one this app set", field="view.private_metadata")
    return (
        _id(parts[0], "view.private_metadata", INSTANCE_ID),
        _id(parts[1], "view.private_metadata", DM_CHANNEL),
        _id(parts[2], "view.private_metadata", MESSAGE_TS),
    )


# --- tenants -------------------------------------------------------------------------------------------------


class Tenants:
    """What the edge needs of the registry and the secret settings."""

    def __init__(
        self,
        tenant_for_identity: Callable[[str], str | None],
        get: Callable[[str], TenantRecord | None],
        records: Callable[[], list[TenantRecord]],
        secret: Callable[[str], bytes | None],
    ) -> None:
        self._tenant_for_identity = tenant_for_identity
        self._get = get
        self._records = records
        self._secret = secret

    def record(self, tenant_id: str) -> TenantRecord | None:
        record = self._get(tenant_id)
        return record if record is not None and record.enabled else None

    def of_team(self, team_id: str) -> TenantRecord | None:
        tenant_id = self._tenant_for_identity(f"slack:team:{team_id.lower()}")
        record = self._get(tenant_id) if tenant_id else None
        if record is None or not record.enabled or record.slack is None or record.slack.team_id != team_id:
            return None
        return record

    def signing_secrets(self, record: TenantRecord) -> list[bytes]:
        refs = record.slack.signing_secrets if record.slack else ()
        return [s for s in (self._own_secret(record, ref) for ref in refs) if s]

    def bot_token(self, record: TenantRecord) -> str | None:
        secret = self._own_secret(record, record.slack.bot_token) if record.slack else None
        return secret.decode("utf-8") if secret else None

    def _own_secret(self, record: TenantRecord, ref: str) -> bytes | None:
        """The value behind one of the tenant's own references only (`GK_<TENANT>_...`); a record stored
        before that rule, naming a platform or another tenant's setting, gets nothing."""
        from gatekeeper.tenancy.references import reference_problem

        return None if reference_problem(record.tenant_id, ref) is not None else self._secret(ref)

    def with_slack(self) -> list[TenantRecord]:
        return [r for r in self._records() if r.enabled and r.slack is not None][:100]


def authenticate_interaction(
    body: bytes, headers: Mapping[str, str], tenants: Tenants, *, now: Callable[[], float] = time.time
) -> tuple[TenantRecord, dict[str, Any]]:
    """(tenant, payload) of a signed interaction; Unauthenticated (one answer) or InvalidInput naming the field."""
    _headers(headers)  # shape first: nothing is parsed for a request that cannot be signed
    payload = interaction_payload(body)
    record = tenants.of_team(team_of(payload))
    if record is None:
        raise refused("the workspace is not registered for any tenant")
    verify(body, headers, tenants.signing_secrets(record), now=now)
    return record, payload


def answer_event(
    body: bytes, headers: Mapping[str, str], tenants: Tenants, *, now: Callable[[], float] = time.time
) -> dict[str, Any]:
    """The answer to an Events API request: the challenge for `url_verification`; an acknowledgement for a
    signed event of a registered workspace (the app subscribes to none: nothing to do)."""
    _headers(headers)
    try:
        document = json_bounded.loads_object(body)
    except json_bounded.JsonBoundsError as exc:
        raise json_bounded.as_problem(exc, "body") from None
    if document.get("type") == "url_verification":
        challenge = document.get("challenge")
        if not isinstance(challenge, str) or not 0 < len(challenge) <= 200:
            raise InvalidInput("challenge is required", field="challenge")
        secrets = [s for record in tenants.with_slack() for s in tenants.signing_secrets(record)]
        verify(body, headers, secrets, now=now)
        return {"challenge": challenge}
    record = tenants.of_team(team_of(document))
    if record is None:
        raise refused("the workspace is not registered for any tenant")
    verify(body, headers, tenants.signing_secrets(record), now=now)
    return {"ok": True, "ignored": str(document.get("type") or "")[:50]}


SEAL_TABLE = "SlackInteractions"  # the associated data's "table": binds the sealed item to this queue


class QueueSealer(Protocol):
    def seal_json(self, tenant_id: str, table: str, partition_key: str, row_key: str, value: Any) -> str: ...


class QueueOpener(Protocol):
    def open_json(self, tenant_id: str, table: str, partition_key: str, row_key: str, sealed: str) -> Any: ...


def queue_message(sealer: QueueSealer, tenant_id: str, interaction: Interaction) -> bytes:
    """The work item for the queue: the decision sealed with the tenant's key (bound to tenant, queue and item
    id), so the comment and who clicked are not readable in the queue or its poison queue."""
    item = uuid.uuid4().hex
    data = {
        "kind": interaction.kind,
        "team_id": interaction.team_id,
        "user_id": interaction.user_id,
        "instance_id": interaction.instance_id,
        "channel": interaction.channel,
        "ts": interaction.ts,
        "comment": interaction.comment,
        "minutes": interaction.minutes,
    }
    sealed = sealer.seal_json(tenant_id, SEAL_TABLE, tenant_id, item, data)
    return json.dumps({"v": 1, "tenant": tenant_id, "id": item, "sealed": sealed}).encode()


def read_queue_message(opener: QueueOpener, body: bytes) -> tuple[str, Interaction]:
    """(tenant id, interaction) of a queue work item; ValueError (or InvalidInput) when it is not one; the
    cipher's integrity error when the sealed part was tampered with or moved."""
    document = json_bounded.loads_object(body)
    if document.get("v") != 1 or not all(isinstance(document.get(k), str) for k in ("tenant", "id", "sealed")):
        raise ValueError("not a slack-interactions message")
    tenant_id, item = document["tenant"], document["id"]
    data = opener.open_json(tenant_id, SEAL_TABLE, tenant_id, item, document["sealed"])
    if not isinstance(data, dict):
        raise ValueError("not a slack-interactions message")
    interaction = Interaction(
        kind=str(data.get("kind")),
        team_id=_id(data.get("team_id"), "team_id", TEAM_ID),
        user_id=_id(data.get("user_id"), "user_id", USER_ID),
        instance_id=_id(data.get("instance_id"), "instance_id", INSTANCE_ID),
        channel=data.get("channel") if isinstance(data.get("channel"), str) else None,
        ts=data.get("ts") if isinstance(data.get("ts"), str) else None,
        comment=str(data.get("comment") or "")[:MAX_COMMENT],
        minutes=_queued_minutes(data.get("minutes")),
    )
    if interaction.kind not in ("approve", "reject-submitted", *FOLLOW_UP_KINDS):
        raise ValueError("not a Slack decision")
    return tenant_id, interaction


def _queued_minutes(value: Any) -> int | None:
    from gatekeeper.gates.followup import parse_minutes

    return parse_minutes(value, "minutes")


__all__ = ["CHANNEL_ID", "Interaction", "Tenants", "authenticate_interaction", "parse_interaction", "verify"]
