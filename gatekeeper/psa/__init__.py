"""Outbound PSA clients (issue 15): one module per vendor behind the `TicketSystem` port
(`gatekeeper.ports`), built per tenant from its `psa` settings by `systems.TicketSystems`."""
