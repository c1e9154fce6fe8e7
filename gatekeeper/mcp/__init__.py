"""Approvals for AI agents over the Model Context Protocol (issue 20).

- `resource`: the MCP endpoint as an OAuth 2.1 protected resource (RFC 9728 metadata, the 401 challenge) and
  who the agent is (an Entra token, its tenant and client application); no MCP SDK imported;
- `server`: the MCP server (official `mcp` SDK, stateless streamable HTTP, JSON responses) whose tools are the
  action-approval API of issue 13; imported on the first MCP request only (cold start);
- `guard_policy` and `guard`: `python -m gatekeeper mcp-guard`, a proxy in front of another MCP server that
  asks Gatekeeper before privileged tool calls run.
"""
