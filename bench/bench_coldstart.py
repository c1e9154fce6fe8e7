"""Cold start, honestly: a fresh process until the first answer of each ingestion route.

What a new Functions instance pays before its first request is answered is not `import function_app`
(heavy imports may hide behind the first request) but everything up to the first `202` (`200` for the
Azure DevOps check). For each route the parent starts Azurite, seeds a tenant (registry row, secrets as
`env:` references whose values are environment variables, a local key folder) and warms the storage a
running deployment already has (tables, queue, the tenant's data key). Then, per round, it spawns a fresh
`python -c` child with only the app settings Azure would give it; the child indexes the app, builds a
correctly signed `azure.functions.HttpRequest`, calls the registered function's user code and prints the
time since its first line, its peak RSS and how many modules it loaded. The baseline is a fresh child that
only does `import azure.functions, azure.durable_functions` (what any Durable Functions app pays).

Rounds interleave baseline and target so drift on a shared machine hits both alike; medians are reported.
Target: every route <= 2.0x the baseline. The Azure DevOps check must be acknowledged within 3 s including
the host's own start; its absolute time (wall clock from spawning the child) is printed for information.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import Ratio

ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"
TARGET = "<= 2.0"
ADO_CHECK_BUDGET_SECONDS = 3.0

# perf_counter is read on the script's first line, so the figure covers every import the app makes.
CHILD = """\
import time; T0 = time.perf_counter()
import base64, json, resource, sys
spec = json.loads(sys.stdin.read())
if spec["function"]:
    import azure.functions as func, azure.durable_functions  # what function_app imports first anyway
    T_SDK = time.perf_counter()
    import function_app
    user = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
    T_INDEX = time.perf_counter()
    import gc; FROZEN_AT_INDEX = gc.get_freeze_count()
    request = func.HttpRequest("POST", spec["url"], headers=spec["headers"], body=base64.b64decode(spec["body"]))
    response = user[spec["function"]](request)
    status, answer = response.status_code, response.get_body().decode()[:300]
else:
    import azure.functions, azure.durable_functions
    T_SDK = T_INDEX = time.perf_counter()
    status, answer, FROZEN_AT_INDEX = 0, "", 0
seconds = time.perf_counter() - T0
phases = [T_SDK - T0, T_INDEX - T_SDK, T0 + seconds - T_INDEX]
usage = resource.getrusage(resource.RUSAGE_SELF)
try:  # VmHWM is this program's own peak; ru_maxrss would include the parent's copy from before exec
    with open("/proc/self/status") as status_file:
        peak = next(int(line.split()[1]) for line in status_file if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
loaded = sorted({m if m.startswith("gatekeeper.") else ".".join(m.split(".")[:2]) if m.startswith("azure.")
                 else m.split(".")[0] for m in list(sys.modules)})
modules = len(sys.modules)
import gc, tokenize  # work the answer should not have needed (docs/cold-start.md), checked by the tests
plugin_loader = sys.modules.get("pydantic.plugin._loader")
lookups = {"pydantic_plugins": plugin_loader is not None and plugin_loader._plugins is not None,
           "tokenize_patterns": tokenize._compile.cache_info().currsize, "frozen_objects": gc.get_freeze_count(),
           "frozen_at_index": FROZEN_AT_INDEX, "collector_enabled": gc.isenabled()}
print(json.dumps({"seconds": seconds, "status": status, "answer": answer, "modules": modules,
                  "maxrss_kb": peak, "loaded": loaded, "phases": phases,
                  "cpu": usage.ru_utime + usage.ru_stime, "lookups": lookups}), flush=True)
"""


@dataclass(frozen=True)
class Route:
    label: str
    function: str
    path: str
    expect: int
    headers: dict[str, str]
    body: bytes

    def spec(self) -> str:
        body = base64.b64encode(self.body).decode()
        url = f"http://localhost/api/{self.path}"
        return json.dumps({"function": self.function, "url": url, "headers": self.headers, "body": body})


@dataclass(frozen=True)
class Sample:
    seconds: float  # inside the child, from its first line to the answer
    wall: float  # from spawning the child until it printed the answer (interpreter start included)
    modules: int
    maxrss_kb: int
    loaded: tuple[str, ...] = ()  # top-level packages (two levels for azure.*, every gatekeeper module) in the child
    # SDK import, importing and indexing function_app, first request (services built lazily included)
    phases: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cpu: float = 0.0  # user + system CPU seconds of the child, interpreter start included: steadier when busy
    # pydantic plugins looked up (a scan of every installed distribution), tokenize patterns compiled (pydantic
    # reading a builtin default factory's text signature), objects frozen out of the garbage collector
    lookups: dict[str, int | bool] = field(default_factory=dict)


@dataclass
class Setup:
    environ: dict[str, str]
    routes: list[Route]


def run_child(spec: str, environ: dict[str, str], expect: int | None) -> Sample:
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        env=environ,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(spec)
    process.stdin.close()
    line = process.stdout.readline()
    wall = time.perf_counter() - start
    process.stdout.read()
    errors = process.stderr.read() if process.stderr else ""
    process.wait(timeout=60)
    if not line:
        raise RuntimeError(f"cold-start child failed: {errors[-2000:]}")
    result = json.loads(line)
    if expect is not None and result["status"] != expect:
        raise RuntimeError(f"cold-start child answered {result['status']}, not {expect}: {result['answer']}")
    return Sample(
        result["seconds"],
        wall,
        result["modules"],
        result["maxrss_kb"],
        tuple(result["loaded"]),
        tuple(result["phases"]),  # type: ignore[arg-type]
        result["cpu"],
        result["lookups"],
    )


BASELINE_SPEC = json.dumps({"function": ""})


def child_environment(connection: str, key_dir: Path, secrets: dict[str, str]) -> dict[str, str]:
    """App settings as Azure would set them, nothing from the test harness or the caller's GATEKEEPER_*."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    environ = {k: v for k, v in os.environ.items() if k in keep}
    environ.update(
        {
            "GATEKEEPER_STORAGE_CONNECTION": connection,
            "GATEKEEPER_KEY_MODE": "local",
            "GATEKEEPER_LOCAL_KEY_DIR": str(key_dir),
            # The rest as infra/modules/functionapp.bicep sets them, so anything built eagerly from a setting
            # (token validation, directory lookups, checkpoint signing, notifications) shows in the figure.
            # Loopback addresses: none of these is contacted while answering an ingestion route.
            "GATEKEEPER_TASK_HUB": "GatekeeperHub",
            "GATEKEEPER_MAX_BODY_BYTES": "1048576",
            "GATEKEEPER_TENANT_CACHE_SECONDS": "60",
            "GATEKEEPER_ENTRA_AUDIENCE": "00000000-0000-0000-0000-0000000000aa,api://00000000-0000-0000-0000-0000000000aa",
            "GATEKEEPER_ENTRA_AUTHORITY_HOST": "http://127.0.0.1:9/authority",
            "GATEKEEPER_ENTRA_JWKS_CACHE_SECONDS": "3600",
            "GATEKEEPER_TRUST_EASYAUTH_HEADER": "true",
            "GATEKEEPER_APPROVAL_BASE_URL": "http://127.0.0.1:9",
            "GATEKEEPER_GRAPH_BASE_URL": "http://127.0.0.1:9/v1.0",
            "GATEKEEPER_GRAPH_TENANT_ID": "00000000-0000-0000-0000-0000000000bb",
            "GATEKEEPER_NOTIFY_MODE": "graph",
            "GATEKEEPER_CHECKPOINT_KEY_NAME": "audit-checkpoint",
            "GATEKEEPER_CHECKPOINT_EVERY": "100",
            "GATEKEEPER_CHECKPOINT_MINUTES": "15",
            "GATEKEEPER_GITHUB_API_URL": "http://127.0.0.1:9",
            "GATEKEEPER_CALLBACK_MAX_ATTEMPTS": "5",
            # a platform setting the Bicep sets too (infra/checks/app-settings.json): no pydantic plugin lookup
            "PYDANTIC_DISABLE_PLUGINS": "__all__",
        }
    )
    environ.update(secrets)
    return environ


def seed(connection_string: str, workdir: Path, *, record_kek_public: bool = True) -> Setup:
    """One tenant registered in the storage behind `connection_string` and warmed as a running deployment
    would be (tables, queue, the tenant's data key); the routes' signed requests for it and the children's
    environment. Runs in the caller's process, never in a timed child. The tenant record carries its KEK's
    public key as `gatekeeper tenants import` writes it; `record_kek_public=False` measures a record from
    before that field (the edge then unwraps the tenant's active data key)."""
    from gatekeeper.services import Services, set_services
    from gatekeeper.settings import Settings
    from gatekeeper.store.keys import LocalKeyProvider, build_cipher
    from tests.support import gatekeeper_env as support

    key_dir = workdir / "keys"
    env = support.make_env(connection_string, key_dir, record_kek_public=record_kek_public)
    # the tenant's `env:` secret values, not the test environment's own settings
    secrets = {k: v for k, v in env.services.settings.environ.items() if not k.startswith("GATEKEEPER_")}
    routes = requests_for(env.tenant_id)
    environ = child_environment(connection_string, key_dir, secrets)
    # The product's own services over the same storage, keys and queue the children will use.
    warm = Services(
        Settings.from_environ(secrets),
        storage=env.storage,
        sealer=build_cipher(env.storage, LocalKeyProvider(str(key_dir))),
        checkpoint_signer_factory=None,
    )
    warm.sink.ensure_queue()
    set_services(warm)
    try:
        for route in routes:
            status = support.http_function(route.function)(_request(route)).status_code
            if status != route.expect:
                raise RuntimeError(f"warm-up of {route.label} answered {status}, not {route.expect}")
    finally:
        set_services(None)
    return Setup(environ, routes)


@contextmanager
def seeded(*, record_kek_public: bool = True) -> Iterator[Setup]:
    """Azurite from node_modules, seeded by `seed`, stopped afterwards."""
    from devstack.azurite import start_azurite

    server = start_azurite(ROOT)
    workdir = tempfile.mkdtemp(prefix="gk-coldstart-")
    try:
        yield seed(server.connection_string, Path(workdir), record_kek_public=record_kek_public)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _request(route: Route):  # type: ignore[no-untyped-def]
    import azure.functions as func

    return func.HttpRequest("POST", f"http://localhost/api/{route.path}", headers=route.headers, body=route.body)


def requests_for(tenant_id: str) -> list[Route]:
    from tests.support import gatekeeper_env as support

    github_body = (ROOT / "tests/fixtures/github/deployment_protection_rule.requested.json").read_bytes()
    github = support.github_request("deployment_protection_rule", github_body)
    check_sample = json.loads((SHARED_FIXTURES / "azure-devops/invoke-azure-function-check.request.json").read_text())
    check_headers = dict(check_sample["headers"], AuthToken="job-access-token-for-the-benchmark")
    check_headers["X-Gatekeeper-Check-Secret"] = support.ADO_CHECK_SECRET
    check_body = json.dumps(
        {
            "environment": "production",
            "repository": "fabrikam/web",
            "runId": "1234",
            "ref": "refs/heads/main",
            "commit": "a1b2c3d",
            "requestedBy": "alice@fabrikam.com",
        }
    ).encode()
    basic = "Basic " + base64.b64encode(f"gatekeeper:{support.ADO_HOOK_SECRET}".encode()).decode()
    hook_body = (SHARED_FIXTURES / "azure-devops/ms.vss-pipelines.run-state-changed-event.json").read_bytes()
    generic_body = (ROOT / "tests/fixtures/generic/gate-request.json").read_bytes()
    generic_headers = {
        "Content-Type": "application/json",
        "X-Gatekeeper-Tenant": tenant_id,
        "x-functions-key": support.API_KEY,
    }
    return [
        Route("github webhook", "github_webhook", "github/webhook", 202, dict(github.headers), github_body),
        Route("azure-devops check", "azure_devops_check", "azure-devops/checks", 200, check_headers, check_body),
        Route(
            "azure-devops service hook",
            "azure_devops_service_hook",
            "azure-devops/service-hooks",
            202,
            {"Content-Type": "application/json", "Authorization": basic},
            hook_body,
        ),
        Route("generic events", "generic_events", "events", 202, generic_headers, generic_body),
    ]


def measure(setup: Setup, rounds: int) -> tuple[list[Sample], dict[str, list[Sample]]]:
    baseline: list[Sample] = []
    targets: dict[str, list[Sample]] = {route.label: [] for route in setup.routes}
    for _ in range(rounds):
        for route in setup.routes:  # interleaved: a baseline child right before each target child
            baseline.append(run_child(BASELINE_SPEC, setup.environ, None))
            targets[route.label].append(run_child(route.spec(), setup.environ, route.expect))
    return baseline, targets


def median(samples: list[Sample], field: str) -> float:
    return statistics.median(getattr(s, field) for s in samples)


def run(rounds: int = 5) -> list[Ratio]:
    with seeded() as setup:
        baseline, targets = measure(setup, rounds)
    base_ms = median(baseline, "seconds") * 1000
    results = []
    for label, samples in targets.items():
        results.append(
            Ratio(
                f"cold start to first answer: {label}",
                median(samples, "seconds") * 1000,
                base_ms,
                "ms",
                TARGET,
                higher_is_better=False,
            )
        )
    check = targets["azure-devops check"]
    results.append(
        Ratio(
            "azure-devops check acknowledged (wall clock from spawn, vs the 3 s budget)",
            median(check, "wall") * 1000,
            ADO_CHECK_BUDGET_SECONDS * 1000,
            "ms",
            "",
            higher_is_better=False,
        )
    )
    base_cpu = median(baseline, "cpu") * 1000
    for label, samples in targets.items():
        phases = [statistics.median(s.phases[k] for s in samples) * 1000 for k in range(3)]
        print(
            f"  {label}: {median(samples, 'modules'):.0f} modules loaded (baseline {median(baseline, 'modules'):.0f});"
            f" peak RSS {median(samples, 'maxrss_kb') / 1024:.1f} MiB (baseline"
            f" {median(baseline, 'maxrss_kb') / 1024:.1f} MiB); CPU {median(samples, 'cpu') * 1000:.0f} ms"
            f" (baseline {base_cpu:.0f} ms, ratio {median(samples, 'cpu') * 1000 / base_cpu:.2f}); phases: SDK import"
            f" {phases[0]:.0f} ms, function_app import+index {phases[1]:.0f} ms, first request with services"
            f" {phases[2]:.0f} ms",
            flush=True,
        )
    return results
