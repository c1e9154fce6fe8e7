"""The commit time a gate records: the event's own, else asked of the source, best effort (DORA lead time).

The evaluate step calls `deployed_commit_time` once, before it writes the gate's `event_received` entry. The
lookup is advice for a metric: whatever goes wrong (no App, no installation for the tenant, GitHub down, slow
or answering nonsense) leaves the gate without a commit time and is logged without secrets; it never raises
into the gate and never changes its decision. Its HTTP calls are bounded by their own timeouts; the whole
lookup (which may also have to sign an App JWT with Key Vault for a fresh installation token) is bounded by
LOOKUP_DEADLINE_SECONDS on top: past it the gate goes on and the late answer is dropped.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import Protocol

from gatekeeper.events.model import CallbackHandle, GitHubCallback, PipelineEvent

log = logging.getLogger("gatekeeper.gates.commit_time")

LOOKUP_DEADLINE_SECONDS = 8.0
"""The most a gate's evaluation waits for its commit time (token, signing and the GET together)."""

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """Two workers per process, started on the first lookup: a stalled lookup holds one, never the gate."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="commit-time")
        return _pool


class CommitLookup(Protocol):
    """When a commit was made, asked of the CI the callback handle belongs to (None: it has no time for it).
    May raise: the caller treats any failure as "no commit time"."""

    def commit_time(self, tenant_id: str, handle: CallbackHandle, sha: str) -> datetime | None: ...


def deployed_commit_time(
    lookup: CommitLookup | None,
    tenant_id: str,
    event: PipelineEvent,
    *,
    deadline: float = LOOKUP_DEADLINE_SECONDS,
) -> datetime | None:
    """The event's commit time; else, for a GitHub gate with a commit, the commit's time from `lookup`
    (`GateNeeds.commit_lookup`; None: no lookup configured), waited for at most `deadline` seconds."""
    if event.commit_time is not None:
        return event.commit_time
    if lookup is None or not isinstance(event.callback, GitHubCallback) or not event.commit:
        return None
    future: Future[datetime | None] = _executor().submit(lookup.commit_time, tenant_id, event.callback, event.commit)
    try:
        return future.result(timeout=deadline)
    except FutureTimeout:
        future.cancel()  # a lookup still queued never runs; a running one finishes unheard
        log.warning("no commit time for a gate of %s: no answer within %.1f s", tenant_id, deadline)
        return None
    except Exception as exc:  # best effort: the gate goes on without a commit time
        log.warning("no commit time for a gate of %s: %s", tenant_id, _reason(exc))
        return None


def _reason(exc: Exception) -> str:
    """The adapter's own message (it names no secret: `describe` redacts the token), else the class name."""
    from gatekeeper.integrations.github_commits import CommitLookupFailed

    return str(exc)[:400] if isinstance(exc, CommitLookupFailed) else type(exc).__name__
