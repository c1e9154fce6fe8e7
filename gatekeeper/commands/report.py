"""`gatekeeper report --tenant T [--since 30d] [--until ISO] --out DIR`: the tenant's report, from its audit log.

Writes DIR/report.html (self-contained: charts inline, nothing loaded at view time) and DIR/report.json (the
same figures), never half a file: both are written to temporary files in DIR first, then moved into place.
Exit 0 when written (an empty period gives a report that says so), 2 on bad input, naming the option.
`--since` is a span back from `--until` (`30d`, `12h`, `8w`) or an RFC 3339 date or date-time; the period may
be at most 731 days. The storage and keys are the other commands' (`--storage-connection` or the app settings).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatekeeper.commands.common import UsageError, add_storage_option, services_from_args

if TYPE_CHECKING:
    from gatekeeper.audit.log import AuditLog
    from gatekeeper.report.metrics import Entry, Window

SPAN = re.compile(r"^([0-9]{1,5})([hdw])$")
SPAN_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
CONTEXT = timedelta(days=14)  # entries read before the period, so a stage or deployment started earlier joins up
MAX_ENTRIES = 1_000_000  # entries of one period opened by one run; past it the report says it was cut


def register(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser("report", help="write a tenant's HTML report and its figures as JSON")
    report.add_argument("--tenant", required=True, help="tenant id")
    report.add_argument(
        "--since", default="30d", help="period start: a span back from --until (30d, 12h, 8w) or an ISO date"
    )
    report.add_argument("--until", metavar="ISO", help="period end (RFC 3339; UTC if no zone; default: now)")
    report.add_argument("--out", required=True, type=Path, help="folder for report.html and report.json")
    add_storage_option(report)
    report.set_defaults(handler=report_command)


def _instant(option: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise UsageError(f"{option}: {text!r} is not a span like 30d / 12h / 8w or an ISO 8601 date in range") from None


def window_of(since: str, until: str | None, now: datetime) -> Window:
    """The period the options name; a usage error naming the option when they do not make one."""
    from gatekeeper.report.metrics import MAX_WINDOW, Window

    end = _instant("--until", until) if until is not None else now
    span = SPAN.fullmatch(since.strip())
    try:
        start = end - int(span.group(1)) * SPAN_UNITS[span.group(2)] if span else _instant("--since", since)
    except OverflowError:
        raise UsageError(f"--since: {since!r} reaches before the year 1") from None
    if start >= end:
        raise UsageError("--since: must be earlier than --until")
    if end - start > MAX_WINDOW:
        raise UsageError(f"--since: the period may span at most {MAX_WINDOW.days} days")
    return Window(start, end)


def _tenant(text: str) -> str:
    from gatekeeper.store.tables import InvalidTenantId, validate_tenant_id

    try:
        return validate_tenant_id(text)
    except InvalidTenantId as exc:
        raise UsageError(f"--tenant: {exc}") from None


def _log(args: argparse.Namespace, tenant: str) -> AuditLog:
    services = services_from_args(args)
    try:
        return services.audit_for(tenant)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"app settings: {exc}") from None


def read_entries(log: AuditLog, window: Window) -> tuple[list[Entry], int, bool]:
    """The entries from CONTEXT before the period to its end, opened; how many did not open; whether the
    reading stopped at MAX_ENTRIES (the newest are then missing). The time test runs on the stored `at`, so
    nothing outside the period is decrypted."""
    from gatekeeper.audit.records import format_time, parse_time
    from gatekeeper.report.metrics import Entry
    from gatekeeper.store.envelope import SealedDataUnreadable

    low, high = format_time(window.since - CONTEXT), format_time(window.until)
    entries: list[Entry] = []
    unreadable = 0
    stored: Iterator[dict[str, Any]] = log.entries()
    for entry in stored:
        at = entry.get("at")
        if not isinstance(at, str) or not low <= at <= high:
            continue
        if len(entries) + unreadable >= MAX_ENTRIES:
            return entries, unreadable, True
        try:
            data = log.open_data(entry)
            entries.append(Entry(str(entry.get("kind")), parse_time(at), str(entry.get("instance_id") or ""), "", data))
        except (SealedDataUnreadable, ValueError, KeyError, TypeError):
            unreadable += 1
    return entries, unreadable, False


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def _write_both(out: Path, files: dict[str, str]) -> None:
    """Never half a file: all go to temporary files in `out` first (a failure there leaves the old ones), then
    each is moved into place."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out: {out}: cannot create the folder: {exc.strerror or type(exc).__name__}") from None
    if not out.is_dir():
        raise UsageError(f"--out: {out} is not a folder")
    staged: list[tuple[str, Path]] = []
    try:
        for name, text in files.items():
            handle, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=out)
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(text)
            os.chmod(temporary, 0o666 & ~_umask())  # as an ordinary file would be (mkstemp makes it 0600)
            staged.append((temporary, out / name))
        for temporary, final in staged:
            os.replace(temporary, final)
    except OSError as exc:
        for temporary, _ in staged:
            Path(temporary).unlink(missing_ok=True)
        raise UsageError(f"--out: {out}: cannot write: {exc.strerror or type(exc).__name__}") from None


def report_command(args: argparse.Namespace) -> int:
    from azure.core.exceptions import AzureError

    from gatekeeper.report.metrics import build_report
    from gatekeeper.report.render import render_html

    tenant = _tenant(args.tenant)
    now = datetime.now(UTC)
    window = window_of(args.since, args.until, now)
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out: {args.out} is not a folder")
    try:
        entries, unreadable, truncated = read_entries(_log(args, tenant), window)
    except AzureError as exc:
        raise UsageError(
            f"storage: cannot read the audit log of tenant {tenant} ({type(exc).__name__}); check "
            "--storage-connection or GATEKEEPER_STORAGE_CONNECTION / GATEKEEPER_STORAGE_ACCOUNT"
        ) from None
    report = build_report(entries, window, tenant=tenant, generated_at=now, unreadable=unreadable, truncated=truncated)
    document = json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    _write_both(args.out, {"report.json": document, "report.html": render_html(report)})
    s = report["summary"]
    what = (
        "no audit entries in the period"
        if report["empty"]
        else f"{s['gates']} gates, {s['overrides']} overrides, {s['deployments']} deployments"
    )
    print(f"report for tenant {tenant} ({what}) -> {args.out / 'report.html'}, {args.out / 'report.json'}")
    if unreadable:
        print(f"note: {unreadable} entries could not be opened and were left out", file=sys.stderr)
    return 0
