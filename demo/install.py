"""The demo's last act: a fresh install, as a Marketplace buyer gets it, checked the way the admin checks it.

The app starts from app settings only (an EU stamp, the first tenant among the settings), imports that tenant
with the example policy on its first run, answers `GET /api/health`, and `python -m gatekeeper admin smoke-test
--url` (run as the admin runs it, in its own process with the admin's environment) sends a gate request for
the first tenant through L0, waits for the decision and verifies the tenant's audit log. Writes
`health.json` and `smoke-test.txt`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from devstack.azurite import PROJECT_ROOT
from devstack.installed import start_installed_app


def install_check(out_dir: Path) -> int:
    """0 when health and every smoke-test step passed."""
    print("\n== A fresh install: first tenant from the app settings, GET /api/health, admin smoke-test ==")
    work = Path(tempfile.mkdtemp(prefix="gatekeeper-install-"))
    try:
        with start_installed_app(work / "keys", data_boundary="EU") as app:
            answer = requests.get(f"{app.url}/api/health", timeout=10)
            health = {"status_code": answer.status_code, "body": answer.json()}
            (out_dir / "health.json").write_text(json.dumps(health, indent=2) + "\n")
            print(f"GET /api/health -> {answer.status_code} {answer.json()['status']}")
            command = [sys.executable, "-m", "gatekeeper", "admin", "smoke-test", "--url", app.url, "--checkpoint"]
            env = {**os.environ, **app.environ}
            done = subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
            shown = f"$ python -m gatekeeper admin smoke-test --url {app.url} --checkpoint\n{done.stdout}"
            shown += f"(exit {done.returncode})\n"
            (out_dir / "smoke-test.txt").write_text(shown)
            print(shown, end="")
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
            return 0 if answer.status_code == 200 and done.returncode == 0 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the install's private keys never outlive the demo
