"""Start and stop Azurite (the Azure Storage emulator) from node_modules on free loopback ports.

Tests and `make demo` use the real storage clients against it, so nothing in the product talks to an
in-memory imitation of Azure Storage.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Azurite's well-known development account; public by design, documented by Microsoft.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports: all sockets are held open together so no port repeats."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Azurite:
    """A running Azurite process and the connection string that reaches it."""

    process: subprocess.Popen[bytes]
    blob_port: int
    queue_port: int
    table_port: int
    workdir: str

    @property
    def connection_string(self) -> str:
        host = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={host}:{self.blob_port}/{DEV_ACCOUNT};"
            f"QueueEndpoint={host}:{self.queue_port}/{DEV_ACCOUNT};"
            f"TableEndpoint={host}:{self.table_port}/{DEV_ACCOUNT};"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def azurite_binary(root: Path = PROJECT_ROOT) -> Path:
    path = root / "node_modules" / ".bin" / "azurite"
    if not path.exists():
        raise RuntimeError(f"Azurite is not installed at {path}; run `make bootstrap` (npm ci) first.")
    return path


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_azurite(root: Path = PROJECT_ROOT, timeout: float = 30.0, attempts: int = 3) -> Azurite:
    """Start Azurite in memory on three free loopback ports and wait until every service answers.

    Another process can take a port between our probe and Azurite's bind, so a start that fails with
    EADDRINUSE is retried on fresh ports.
    """
    for _ in range(attempts - 1):
        try:
            return _start_once(root, timeout)
        except PortTaken:
            continue
    return _start_once(root, timeout)


class PortTaken(RuntimeError):
    pass


def _start_once(root: Path, timeout: float) -> Azurite:
    binary = azurite_binary(root)
    workdir = tempfile.mkdtemp(prefix="azurite-")
    ports = dict(zip(("blob", "queue", "table"), free_ports(3), strict=True))
    args = [
        str(binary),
        "--inMemoryPersistence",
        "--skipApiVersionCheck",
        "--disableTelemetry",
        "--silent",
    ]
    for service, port in ports.items():
        args += [f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port)]
    log = open(os.path.join(workdir, "azurite.log"), "wb")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = Path(workdir, "azurite.log").read_text(errors="replace")
            shutil.rmtree(workdir, ignore_errors=True)
            if "EADDRINUSE" in output:
                raise PortTaken(output[-500:])
            raise RuntimeError(f"Azurite exited with code {process.returncode}: {output[-2000:]}")
        if all(_answers(port) for port in ports.values()):
            return Azurite(process, ports["blob"], ports["queue"], ports["table"], workdir)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"Azurite did not answer within {timeout} seconds")
