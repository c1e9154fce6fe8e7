"""What the gate steps need from the process: a port, so `gates/` never imports the composition root.

`gatekeeper.services.Services` has this shape (mypy checks it where the activities hand it over), and so can
any object a test builds. The composition root depends on the gate code, never the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gatekeeper.gates.commit_time import CommitLookup
    from gatekeeper.gates.effects import AuditTrail, Decider, PipelineCallbacks
    from gatekeeper.gates.store import GateIndex, GateStore
    from gatekeeper.integrations.notify import Notifier
    from gatekeeper.ports import EventPublisher
    from gatekeeper.recommend.store import Recommender
    from gatekeeper.security.requester import RequesterResolver
    from gatekeeper.store.envelope import EnvelopeCipher
    from gatekeeper.store.tables import StorageAccount


class GateNeeds(Protocol):
    """The collaborators of every gate step (evaluate, approval, callback, outcome)."""

    clock: Callable[[], datetime]

    @property
    def storage(self) -> StorageAccount: ...

    @property
    def cipher(self) -> EnvelopeCipher: ...

    @property
    def decider(self) -> Decider: ...

    @property
    def notifier(self) -> Notifier: ...

    @property
    def callbacks(self) -> PipelineCallbacks: ...

    @property
    def requesters(self) -> RequesterResolver: ...

    @property
    def index(self) -> GateIndex: ...

    @property
    def recommender(self) -> Recommender: ...

    @property
    def events(self) -> EventPublisher: ...

    @property
    def mesh_deployment(self) -> str: ...

    @property
    def commit_lookup(self) -> CommitLookup | None: ...

    def audit_for(self, tenant_id: str) -> AuditTrail: ...

    def operators_for(self, tenant_id: str) -> tuple[str, ...]: ...

    def gates(self, tenant_id: str) -> GateStore: ...

    def approval_link(self, gate_id: str) -> str: ...
