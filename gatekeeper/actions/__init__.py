"""Action-level approvals (issue 13): a pipeline step or an agent asks for one exact command, waits, and on a
denial skips it quietly. An action is a gate of kind action: the same policy, approval chain, decision route,
notifications and audit; this package adds the request, its idempotency, status, cancel and report."""
