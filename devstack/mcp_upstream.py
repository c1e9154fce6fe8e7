"""A small upstream MCP server for mcp-guard's tests and the demo (development only, never deployed): the
official SDK's MCPServer over stdio (`python -m devstack.mcp_upstream`), with a few cluster tools that do
nothing but record what they were called with (one JSON line per call in the file named by MCP_UPSTREAM_LOG,
when set), so a test can prove what reached the upstream and what never did."""

from __future__ import annotations

import json
import os
from typing import Any

from mcp.server.mcpserver import MCPServer

server: MCPServer[Any] = MCPServer("cluster-tools")


def _record(tool: str, arguments: dict[str, Any]) -> None:
    path = os.environ.get("MCP_UPSTREAM_LOG")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps({"tool": tool, "arguments": arguments}, sort_keys=True) + "\n")


@server.tool()
def kubectl_delete_namespace(name: str) -> str:
    """Delete a Kubernetes namespace and everything in it."""
    _record("kubectl_delete_namespace", {"name": name})
    return f'namespace "{name}" deleted'


@server.tool()
def kubectl_scale(namespace: str, deployment: str, replicas: int) -> str:
    """Scale a deployment."""
    _record("kubectl_scale", {"namespace": namespace, "deployment": deployment, "replicas": replicas})
    return f"deployment.apps/{deployment} scaled to {replicas} in {namespace}"


@server.tool()
def list_pods(namespace: str) -> str:
    """List the pods of a namespace (read only)."""
    _record("list_pods", {"namespace": namespace})
    return f"web-7d9f 1/1 Running (namespace {namespace})"


@server.tool()
def read_secret(name: str) -> str:
    """Read a secret's value."""
    _record("read_secret", {"name": name})
    return "s3cr3t"


if __name__ == "__main__":
    server.run()
