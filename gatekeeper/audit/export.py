"""Exports of a tenant's audit log: the verifiable bundle, JSON Lines of opened records, and OSCAL.

These are the functions the CLI (`audit export`), the HTTP route (`GET /api/tenants/{tenant}/audit/export`)
and `make demo` call. Every export first makes sure the newest entries are covered by a signed checkpoint,
so what an auditor receives can be verified completely.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gatekeeper.audit.bundle import build_bundle, check_bundle, dumps
from gatekeeper.audit.checkpoints import SignedCheckpoint
from gatekeeper.audit.log import AuditLog
from gatekeeper.audit.oscal import to_oscal
from gatekeeper.audit.records import format_time
from gatekeeper.audit.verify import Progress, VerificationResult
from gatekeeper.audit.views import opened_entry
from gatekeeper.errors import InvalidInput, NotFound

FORMATS = ("bundle", "oscal", "jsonl")
CONTENT_TYPES = {
    "bundle": "application/json",
    "oscal": "application/json",
    "jsonl": "application/x-ndjson",
}


def _signed_checkpoints(log: AuditLog) -> list[SignedCheckpoint]:
    """Valid-looking checkpoints from the archive (authoritative) and the table, one per size."""
    found: dict[int, SignedCheckpoint] = {}
    for raw in log.all_checkpoints():
        try:
            signed = SignedCheckpoint.model_validate(raw)
            size = signed.checkpoint().size
        except ValueError:
            continue  # damaged copies are the verifier's business, not the exporter's
        found.setdefault(size, signed)
    return [found[s] for s in sorted(found)]


def _time_bounds(start: datetime | None, end: datetime | None) -> tuple[str | None, str | None]:
    if start is not None and start.tzinfo is None:
        raise InvalidInput("from: must include a time zone (e.g. 2026-01-31T00:00:00Z)", field="from")
    if end is not None and end.tzinfo is None:
        raise InvalidInput("to: must include a time zone (e.g. 2026-01-31T23:59:59Z)", field="to")
    if start is not None and end is not None and end < start:
        raise InvalidInput("to: must not be earlier than from", field="to")
    return (format_time(start) if start else None, format_time(end) if end else None)


def _in_range(entry: Mapping[str, Any], time_from: str | None, time_to: str | None) -> bool:
    at = entry.get("at")
    if not isinstance(at, str):
        return False
    return (time_from is None or at >= time_from) and (time_to is None or at <= time_to)


def export_bundle(
    log: AuditLog,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    sign_now: bool = True,
    include_public_key: bool = True,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The verifiable bundle of the entries recorded between `start` and `end` (all when None).

    It ends on a signed checkpoint (one is signed now unless `sign_now` is False) and carries everything
    the offline verifier needs for that range: the entries sealed as stored, the compact range of the
    entries before it, the checkpoints and the consistency proofs between them."""
    time_from, time_to = _time_bounds(start, end)
    if sign_now and log.has_signer:
        log.checkpoint(force=True)
    checkpoints = _signed_checkpoints(log)
    sizes = [c.checkpoint().size for c in checkpoints]
    last = sizes[-1] if sizes else 0
    entries = list(log.entries(0, last))
    in_range = [i for i, e in enumerate(entries) if _in_range(e, time_from, time_to)]
    if in_range:
        start_seq = 0 if time_from is None else in_range[0]  # an open range is the log from its start
        end_seq = min(s for s in sizes if s > in_range[-1])
    else:  # nothing recorded in the range: an empty bundle anchored at a checkpoint
        after = next((i for i, e in enumerate(entries) if _in_range(e, time_from, None)), last)
        start_seq = end_seq = min([s for s in sizes if s >= after], default=last)
    public_keys = [log.trusted_public_key_pem()] if include_public_key and log.has_signer else []
    return build_bundle(
        log.tenant_id,
        entries,
        checkpoints,
        start_seq=start_seq,
        end_seq=end_seq,
        exported_at=format_time(now or datetime.now(UTC)),
        time_from=time_from,
        time_to=time_to,
        public_keys=public_keys,
    )


def _opened(log: AuditLog, entries: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, Any] | None]:
    from gatekeeper.store.envelope import SealedDataUnreadable

    opened: dict[int, dict[str, Any] | None] = {}
    for entry in entries:
        try:
            opened[int(entry["seq"])] = log.open_data(entry)
        except (SealedDataUnreadable, ValueError, KeyError, TypeError):
            opened[int(entry["seq"])] = None
    return opened


def export_jsonl(log: AuditLog, *, start: datetime | None = None, end: datetime | None = None) -> Iterator[str]:
    """One JSON object per line per entry in the time range, data opened (credential-like keys redacted)."""
    time_from, time_to = _time_bounds(start, end)
    for entry in log.entries():
        if not _in_range(entry, time_from, time_to):
            continue
        data = _opened(log, [entry])[int(entry["seq"])]
        view = opened_entry(log.readable(entry), data)
        yield json.dumps(view, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def export_oscal(
    log: AuditLog,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
    bundle: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """OSCAL assessment-results for the time range: the bundle is built (or the given one used), verified
    against the log's own checkpoint key, and its entries opened to describe decisions and approvers."""
    time_from, time_to = _time_bounds(start, end)
    bundle = bundle if bundle is not None else export_bundle(log, start=start, end=end, now=now)
    verification: VerificationResult = check_bundle(
        bundle, public_key_pem=log.trusted_public_key_pem() if log.has_signer else None
    )
    opened = _opened(log, bundle["entries"])
    readable = {**bundle, "entries": [log.readable(e) for e in bundle["entries"]]}  # actors, subjects opened
    return to_oscal(
        readable, opened, verification, generated_at=now or datetime.now(UTC), time_from=time_from, time_to=time_to
    )


def export_bytes(
    log: AuditLog,
    fmt: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    progress: Progress | None = None,
) -> bytes:
    """One export as the bytes of a file (the CLI writes them, the HTTP route returns them)."""
    if fmt == "bundle":
        return dumps(export_bundle(log, start=start, end=end))
    if fmt == "oscal":
        return json.dumps(export_oscal(log, start=start, end=end), ensure_ascii=False, indent=1).encode("utf-8")
    if fmt == "jsonl":
        return "".join(line + "\n" for line in export_jsonl(log, start=start, end=end)).encode("utf-8")
    raise InvalidInput(f"format: must be one of {', '.join(FORMATS)}, not {fmt!r}", field="format")


def export_for_http(
    audit_for: Callable[[str], AuditLog],
    tenant_id: str,
    fmt: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> tuple[str, bytes]:
    """(content type, body) for `GET /api/tenants/{tenant}/audit/export?format=oscal|bundle|jsonl`.
    The caller has already checked that the principal holds the tenant's auditor role. `audit_for` gives the
    tenant's log as the composition root built it (its checkpoint signer, interval and WORM archive)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"format: must be one of {', '.join(FORMATS)}, not {fmt!r}", field="format")
    try:
        log = audit_for(tenant_id)
    except ValueError as exc:
        raise NotFound(str(exc), code="not-found", title="Unknown tenant", field="tenant") from None
    return CONTENT_TYPES[fmt], export_bytes(log, fmt, start=start, end=end)
