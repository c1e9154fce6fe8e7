"""What people do with a gate after automation acted or refused: the L1 notice ("it ran, please review":
Acknowledge or Flag for rollback) and the L3 task ("a person must do this": Mark done, with a note).

Any channel (the Teams card today) calls `FollowUpService.act` with the authenticated person. The checks, in
an order that reveals nothing to a stranger: the gate exists (404) -> the person's Entra tenant is one of the
gate tenant's (403 wrong-tenant) -> the action fits the gate (409: acknowledge / flag only an executed L1
gate, mark done only an L3 task) -> the person is one of those the notice went to (the tenant's operators,
by object id or UPN; 403) -> a note for "done" (422) -> once per person and action (409, stored create-only
in the gate's partition) -> audited (`follow_up`). A flag for rollback is a person overriding an automated
"proceed": it is counted as a HitlOverride (`flagged_for_rollback`) in telemetry.

"Done" may carry the time spent (whole minutes, 1..1440; `parse_minutes` is the one reading of what a person
typed, used by every channel's edge). The minutes are sealed in the row and audited; when the tenant has a PSA,
the `psa_follow_up` orchestration is started to log them on the gate's L3 ticket (`psa_ticket`, moment
"done"): the channel's trigger never calls a vendor. A start that fails hands the row back and raises
DependencyUnavailable, so the person (or the queue) can try again and nothing is half-recorded. An audit
append that fails after the start keeps the row (the time is on its way to the PSA) with a note of where the
audit log stood (`audit_from`): the person's retry audits it once and starts nothing again.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from gatekeeper import telemetry
from gatekeeper.audit.lookup import find_entry
from gatekeeper.contracts.gate import GateStatus
from gatekeeper.contracts.psa import MAX_MINUTES, PSA_FOLLOW_UP, PsaTicketInput, follow_up_instance_id
from gatekeeper.errors import Conflict, DependencyUnavailable, Forbidden, InvalidInput
from gatekeeper.gates.decisions import INSTANCE_ID, not_found
from gatekeeper.gates.store import GateIndex, GateRecord, GateRepository, GateStore
from gatekeeper.gates.view import ApprovalView, build_view
from gatekeeper.security.principal import Principal, wrong_tenant
from gatekeeper.store.envelope import EnvelopeCipher
from gatekeeper.store.repository import check_key
from gatekeeper.store.tables import StorageAccount

FollowUpVerb = Literal["acknowledge", "flag_rollback", "mark_done"]
FOLLOW_UP_VERBS: tuple[str, ...] = ("acknowledge", "flag_rollback", "mark_done")
ROW_PREFIX = "followup|"
MAX_NOTE = 1000
MINUTES_FIELD = "minutes"
AUDIT_FROM = "audit_from"  # on a "done" row kept unaudited after its PSA time entry started (absent otherwise)
_WHOLE = re.compile(r"^\s*[0-9]{1,6}\s*$")


class Orchestrations(Protocol):
    """Starts an orchestration: the Durable client in Azure, the local runner in development."""

    def start(self, orchestrator: str, instance_id: str, payload: dict[str, Any]) -> None: ...


def parse_minutes(value: Any, field: str = MINUTES_FIELD) -> int | None:
    """The time spent as a person typed it (a card's or a modal's input): None when left empty, else whole
    minutes within 1..1440; InvalidInput naming `field` for anything else (text, fractions, huge numbers)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    whole = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer() and abs(value) <= MAX_MINUTES
    )
    minutes = int(value) if whole or (isinstance(value, str) and _WHOLE.match(value)) else -1
    if not 1 <= minutes <= MAX_MINUTES:
        raise InvalidInput(
            f"{field}: time spent must be a whole number of minutes from 1 to {MAX_MINUTES}", field=field
        )
    return minutes


class FollowUpService:
    def __init__(
        self,
        storage: StorageAccount,
        cipher: EnvelopeCipher,
        *,
        entra_tenants_for: Callable[[str], Iterable[str]],
        operators_for: Callable[[str], tuple[str, ...]],
        audit_for: Callable[[str], Any],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        base_url: str | None = None,
        orchestrations: Orchestrations | None = None,
        psa_configured: Callable[[str], bool] | None = None,
    ) -> None:
        """`orchestrations` and `psa_configured` (whether the tenant has `psa` settings): a "done" with
        minutes starts the PSA time entry; without them the minutes are recorded and audited only."""
        self._orchestrations = orchestrations
        self._psa_configured = psa_configured
        self._storage = storage
        self._cipher = cipher
        self._entra_tenants_for = entra_tenants_for
        self._operators_for = operators_for
        self._audit_for = audit_for
        self._clock = clock
        self._base_url = base_url
        self._index = GateIndex(storage)

    def _gate(self, instance_id: str, principal: Principal) -> tuple[GateStore, GateRecord]:
        if not INSTANCE_ID.match(instance_id or ""):
            raise not_found()
        tenant_id = self._index.tenant_of(instance_id)
        if tenant_id is None:
            raise not_found()
        if principal.tid.lower() not in {t.strip().lower() for t in self._entra_tenants_for(tenant_id)}:
            raise wrong_tenant()
        store = GateStore(self._storage, tenant_id, self._cipher)
        record = store.load(instance_id)
        if record is None:
            raise not_found()
        return store, record

    def _notified(self, principal: Principal, record: GateRecord) -> bool:
        names = {principal.oid.lower(), *((principal.upn.lower(),) if principal.upn else ())}
        return any(o.strip().lower() in names for o in self._operators_for(record.tenant_id))

    def view(self, instance_id: str, principal: Principal) -> tuple[ApprovalView, list[dict[str, Any]], bool]:
        """The gate as the notice shows it, what people did with it so far, and whether `principal` may act."""
        store, record = self._gate(instance_id, principal)
        if not self._notified(principal, record):
            raise Forbidden(
                "Only the people this notice went to may see it here.", code="not-notified", title="Not for you"
            )
        done = self._done(record)
        mine = {(d["verb"], d["by"]) for d in done}
        open_verbs = [v for v in _verbs_for(record) if (v, principal.oid.lower()) not in mine]
        return build_view(record, store.votes(instance_id), base_url=self._base_url), done, bool(open_verbs)

    def act(
        self, instance_id: str, principal: Principal, verb: str, note: str = "", minutes: int | None = None
    ) -> dict[str, Any]:
        _, record = self._gate(instance_id, principal)
        if verb not in _verbs_for(record):
            raise Conflict(
                f"'{verb}' does not apply to this gate ({record.level} {record.status.value}).",
                code="not-applicable",
                title="Not applicable to this gate",
            )
        if not self._notified(principal, record):
            raise Forbidden(
                "Only the people this notice went to may act on it.", code="not-notified", title="Not for you"
            )
        note = note.strip()
        if len(note) > MAX_NOTE:
            raise InvalidInput(f"note: at most {MAX_NOTE} characters", field="note")
        if verb == "mark_done" and not note:
            raise InvalidInput("note: say what was done (required to mark the task done)", field="note")
        if minutes is not None:
            if verb != "mark_done":
                raise InvalidInput(
                    f"{MINUTES_FIELD}: time spent is recorded when a task is marked done", field=MINUTES_FIELD
                )
            minutes = parse_minutes(minutes)
        at = self._clock()
        repo = GateRepository(self._storage, record.tenant_id, self._cipher)
        row_key = f"{ROW_PREFIX}{verb}|{check_key('oid', principal.oid.lower())}"
        comment: dict[str, Any] = {"note": note, "upn": principal.upn}
        if minutes is not None:
            comment["minutes"] = minutes
        try:
            etag = repo.create(
                {"PartitionKey": check_key("instance_id", instance_id), "RowKey": row_key, "at": at, "comment": comment}
            )
        except ResourceExistsError:
            if self._finish_audit(repo, record, principal, verb, row_key):
                return {"instance_id": instance_id, "action": verb, "status": "recorded"}
            raise Conflict(
                "You already did this for this gate.", code="already-recorded", title="Already recorded"
            ) from None
        data: dict[str, Any] = {
            "action": verb,
            "level": record.level,
            "note": note,
            "upn": principal.upn,
            "channel": principal.auth,
        }
        audit_from: int | None = None  # where the log stood, noted on the row if its audit fails after the PSA
        if minutes is not None:
            data["minutes"] = minutes
            try:
                audit_from = self._audit_for(record.tenant_id).head().size
            except Exception:
                _put_back(repo, record.instance_id, row_key, etag)  # nothing started yet: the retry records it again
                raise
            data["psa_time_entry"] = self._log_time(repo, record, principal, row_key, etag, minutes, at)
        entry = {"actor": principal.oid, "instance_id": instance_id, "subject": record.title[:1000], "at": at}
        entries: list[dict[str, Any]] = [{**entry, "kind": "follow_up", "data": data}]
        if verb == "flag_rollback":  # a person set automation's "proceed" aside: an override, both sides
            from gatekeeper.recommend.overrides import override_data

            override = override_data(
                "flagged_for_rollback",
                gate=instance_id,
                rule=record.rule,
                recommendation=record.recommendation,
                decided=verb,
            )
            entries.append({**entry, "kind": "override", "data": override})
        try:
            self._audit(record.tenant_id, entries)
        except Exception:
            with contextlib.suppress(Exception):
                if not data.get("psa_time_entry"):  # nothing else happened yet: the retry records it again
                    _put_back(repo, record.instance_id, row_key, etag)
                else:  # the PSA time entry is on its way: kept, noted for the person's retry to audit
                    repo.upsert({"PartitionKey": instance_id, "RowKey": row_key, AUDIT_FROM: audit_from}, merge=True)
            raise
        if verb == "flag_rollback":
            telemetry.emit(
                telemetry.Event.HITL_OVERRIDE,
                tenant=record.tenant_id,
                instance_id=instance_id,
                level=record.level,
                kind="flagged_for_rollback",
                decision=verb,
                quality=record.quality,
                quality_score=record.quality_score,
            )
        return {"instance_id": instance_id, "action": verb, "status": "recorded"}

    def _finish_audit(
        self, repo: GateRepository, record: GateRecord, principal: Principal, verb: str, row_key: str
    ) -> bool:
        """A "done" whose PSA time entry was started but whose audit append failed is kept with a note of where
        the log stood (`audit_from`): the person's retry audits it (True), once: the note is taken
        ETag-conditionally, the entry looked for from there first, and nothing is started again."""
        row = repo.get(record.instance_id, row_key)
        noted = row.get(AUDIT_FROM) if row is not None else None
        if row is None or not isinstance(noted, int) or isinstance(noted, bool):
            return False
        try:
            etag = repo.replace({k: v for k, v in row.items() if k != AUDIT_FROM}, str(row.metadata["etag"]))
        except ResourceModifiedError:
            return False  # another retry took it
        comment = row.get("comment") or {}
        data: dict[str, Any] = {
            "action": verb,
            "level": record.level,
            "note": comment.get("note", ""),
            "upn": comment.get("upn"),
            "channel": principal.auth,
            "minutes": comment.get("minutes"),
            "psa_time_entry": True,
        }

        def same(found: Any) -> bool:
            return all(found.get(k) == data[k] for k in ("action", "note", "upn", "minutes"))

        log = self._audit_for(record.tenant_id)
        try:
            if find_entry(log, noted, "follow_up", record.instance_id, same) is None:
                at = row.get("at") or self._clock()
                log.append("follow_up", principal.oid, record.instance_id, record.title[:1000], data, at=at)
        except Exception:
            with contextlib.suppress(Exception):  # noted again: the next retry audits it
                repo.replace({**row, AUDIT_FROM: noted}, etag)
            raise
        return True

    def _audit(self, tenant_id: str, entries: list[dict[str, Any]]) -> None:
        """The follow-up's entries, all or none where the log takes several at once (one transaction), so a
        failed append leaves nothing half-audited for the retry to duplicate."""
        log = self._audit_for(tenant_id)
        if len(entries) > 1 and hasattr(log, "append_many"):
            log.append_many(entries)
            return
        for entry in entries:
            log.append(**entry)

    def _log_time(
        self,
        repo: GateRepository,
        record: GateRecord,
        principal: Principal,
        row_key: str,
        etag: str,
        minutes: int,
        at: datetime,
    ) -> bool:
        """Start the PSA time entry for a task marked done (True), or say it stays in the audit only (False:
        no PSA for the tenant, or no way to start it here). A failed start hands the row back and raises."""
        if self._orchestrations is None or self._psa_configured is None:
            return False
        if not self._psa_configured(record.tenant_id):
            return False
        oid = principal.oid.lower()
        told = PsaTicketInput(
            tenant_id=record.tenant_id, instance_id=record.instance_id, moment="done", at=at, by=oid, minutes=minutes
        )
        try:
            self._orchestrations.start(PSA_FOLLOW_UP, follow_up_instance_id(record.instance_id, oid), told.to_json())
        except Exception as exc:
            _put_back(repo, record.instance_id, row_key, etag)  # nothing half-recorded: the retry records it again
            raise DependencyUnavailable(
                "The time spent could not be handed to the PSA write-back now; nothing was recorded. Try again.",
                code="orchestration-unavailable",
            ) from exc
        return True

    def _done(self, record: GateRecord) -> list[dict[str, Any]]:
        repo = GateRepository(self._storage, record.tenant_id, self._cipher)
        rows = repo.query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": record.instance_id, "lo": ROW_PREFIX, "hi": ROW_PREFIX[:-1] + "}"},
        )
        done = []
        for row in rows:
            _, verb, oid = str(row["RowKey"]).split("|", 2)
            comment = row.get("comment") or {}
            done.append(
                {
                    "verb": verb,
                    "by": oid,
                    "at": row["at"],
                    "note": comment.get("note", ""),
                    "upn": comment.get("upn"),
                    "minutes": comment.get("minutes"),
                }
            )
        return sorted(done, key=lambda d: d["at"])


def _put_back(repo: GateRepository, instance_id: str, row_key: str, etag: str) -> None:
    """Hand this call's own row back (its audit or start failed): only the row as this call wrote it (its
    ETag), so a row another click wrote or changed meanwhile is never taken away from it."""
    with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
        repo.delete(instance_id, row_key, etag=etag or None)


def _verbs_for(record: GateRecord) -> tuple[str, ...]:
    if record.status is GateStatus.HUMAN_TASK:
        return ("mark_done",)
    if record.level == "L1" and record.status is GateStatus.APPROVED:
        return ("acknowledge", "flag_rollback")
    return ()


def done_entry(repo: GateRepository, instance_id: str, oid: str) -> dict[str, Any] | None:
    """The note, UPN and minutes of `oid`'s "done" on the gate (sealed in its row), for the PSA time entry."""
    row = repo.get(check_key("instance_id", instance_id), f"{ROW_PREFIX}mark_done|{check_key('oid', oid.lower())}")
    if row is None:
        return None
    comment = row.get("comment") or {}
    return {
        "at": row.get("at"),
        "note": comment.get("note", ""),
        "upn": comment.get("upn"),
        "minutes": comment.get("minutes"),
    }
