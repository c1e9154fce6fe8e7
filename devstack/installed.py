"""A fresh install on this machine, as a Marketplace buyer gets it: the app built from app settings only (the
first tenant among them), its HTTP routes over real HTTP, and a worker that plays the queue trigger and the
Durable host, so `gatekeeper admin smoke-test --url` can be run against it like against Azure.

What differs from Azure is only where things live: Azurite instead of the storage account, local JSON Web Keys
instead of Key Vault (key mode local), the local Durable HTTP API for the task hub probe, and the local runner
for the orchestrations. The first-tenant bootstrap runs through the registered timer function, as the host
runs it on start. Development only, never deployed.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy

from devstack.azurite import Azurite, start_azurite
from devstack.durable_api import DurableApiServer
from devstack.functions_host import LocalFunctionsHost, app_functions, run_on_host_loop
from devstack.gates import LocalGates, local_gates
from devstack.runner import ManualClock
from gatekeeper.services import Services, build_services, set_services
from gatekeeper.settings import Settings

FIRST_TENANT: dict[str, str] = {
    "GATEKEEPER_BOOTSTRAP_TENANT_ID": "northwind",
    "GATEKEEPER_BOOTSTRAP_TENANT_NAME": "Northwind Traders (first managed client)",
    "GATEKEEPER_BOOTSTRAP_TENANT_ENTRA_ID": "4f6c1a2e-8d3b-4c7a-9e51-2b0d7f3a6c18",
    "GATEKEEPER_BOOTSTRAP_TENANT_OPERATORS": "ops@northwind.example,cab@northwind.example",
    "GATEKEEPER_BOOTSTRAP_TENANT_GITHUB": "true",
    "GATEKEEPER_BOOTSTRAP_TENANT_AZURE_DEVOPS": "false",
}


@dataclass
class InstalledApp:
    azurite: Azurite
    services: Services
    host: LocalFunctionsHost
    durable: DurableApiServer
    gates: LocalGates
    environ: dict[str, str]  # the app settings (and the tenant's secrets): what an admin's shell would hold
    worker_errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _worker: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.host.url

    @property
    def tenant_id(self) -> str:
        return self.environ["GATEKEEPER_BOOTSTRAP_TENANT_ID"]

    def run_timer(self, name: str) -> None:
        """Run a registered timer function now, as the host does on start (`run_on_startup`)."""
        functions = {f.get_function_name(): f.get_user_function() for f in app_functions()}
        functions[name](None)

    def start_worker(self) -> None:
        self._worker = threading.Thread(target=self._work, name="installed-app-worker", daemon=True)
        self._worker.start()

    def _work(self) -> None:
        """The queue trigger and the Durable host: dispatch each queued event, run the orchestrations."""
        from gatekeeper.ingest.queue import decode_message

        queue = self.services.storage.queue(
            self.services.queue_name,
            message_encode_policy=BinaryBase64EncodePolicy(),
            message_decode_policy=BinaryBase64DecodePolicy(),
        )
        while not self._stop.wait(0.2):
            try:
                for message in queue.receive_messages(max_messages=16):
                    queued = decode_message(self.services.sealer, message.content.decode(), self.services.large_events)
                    self.gates.dispatcher.dispatch(queued.event, queued.event_id)
                    queue.delete_message(message)
                self.gates.runner.run_until_idle()
            except Exception as exc:  # kept for the caller to see; the loop goes on, as the host's would
                self.worker_errors.append(f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=10)
        set_services(None)
        self.host.stop()
        self.durable.stop()
        self.azurite.stop()

    def __enter__(self) -> InstalledApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_installed_app(
    key_dir: Path,
    *,
    data_boundary: str = "EU",
    first_tenant: Mapping[str, str] = FIRST_TENANT,
    bootstrap: bool = True,
    worker: bool = True,
    run_async: Callable[[Coroutine[Any, Any, Any]], Any] = run_on_host_loop,
) -> InstalledApp:
    """Azurite, the app from settings, its routes on a free loopback port, the bootstrap run, a worker.
    `run_async` runs the async functions (the Durable SDK keeps one HTTP session per process, on one loop:
    a test session passes the loop its other tests use)."""
    azurite = start_azurite()
    durable: DurableApiServer | None = None
    host: LocalFunctionsHost | None = None
    try:
        tenant = first_tenant.get("GATEKEEPER_BOOTSTRAP_TENANT_ID", "").upper()
        environ = {
            "GATEKEEPER_STORAGE_CONNECTION": azurite.connection_string,
            "GATEKEEPER_KEY_MODE": "local",
            "GATEKEEPER_LOCAL_KEY_DIR": str(key_dir),
            "GATEKEEPER_DATA_BOUNDARY": data_boundary,
            "GATEKEEPER_NOTIFY_MODE": "outbox",
            "GATEKEEPER_OUTBOX_DIR": str(key_dir.parent / f"{key_dir.name}-outbox"),
            **first_tenant,
            # The tenant's secrets, as the install's Key Vault references resolve them (docs/deploy.md).
            **{
                f"GK_{tenant}_{name}": secrets.token_urlsafe(24)
                for name in ("API_KEY", "CALLBACK_SECRET", "GITHUB_SECRET")
            },
        }
        services = build_services(Settings.from_environ(environ))
        services.sink.ensure_queue()
        durable = DurableApiServer().start()
        set_services(services)  # the host's threads serve the app's own services, as in Azure
        gates = local_gates(
            services.storage,
            services.sealer,
            decider=services.decider,
            audit_for=services.audit_for,
            notifier=services.notifier,
            callbacks=services.callbacks,
            entra_tenants_for=services.entra_tenants_for,
            clock=ManualClock(datetime.now(UTC)),
        )
        host = LocalFunctionsHost(app_functions(), durable_binding=durable.client_binding, run_async=run_async)
        host.start()
        app = InstalledApp(azurite, services, host, durable, gates, environ)
        if bootstrap:
            app.run_timer("first_tenant_bootstrap")
        if worker:  # without one, queued events wait, as with a stopped queue trigger
            app.start_worker()
        return app
    except BaseException:
        set_services(None)
        if host is not None:
            host.stop()
        if durable is not None:
            durable.stop()
        azurite.stop()
        raise
