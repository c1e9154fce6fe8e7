"""`gatekeeper deadletters list [--queue Q] [--json]`: what was dead-lettered, why, and what can still be read.

For each `pipeline-events` dead letter it says whether the key its event was sealed under is still there
(`readable`: it can be replayed while the KEK unwraps it) or was deleted (`shredded`: a transit key past
GATEKEEPER_TRANSIT_KEY_RETENTION_DAYS, gone for good), or that its claim-check blob is gone (`blob-gone`).
Exit 0, 1 if the tables cannot be read, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys

from gatekeeper.commands.common import add_storage_option, services_from_args

QUEUES = ("pipeline-events", "connector-events", "slack-interactions")


def register(subparsers: argparse._SubParsersAction) -> None:
    letters = subparsers.add_parser("deadletters", help="inspect dead-lettered queue messages")
    actions = letters.add_subparsers(dest="deadletters_command", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", help="list dead letters with their reason and, for pipeline events, whether they can still be read"
    )
    listing.add_argument("--queue", choices=QUEUES, help="only this queue's dead letters")
    listing.add_argument("--json", action="store_true", help="print JSON")
    add_storage_option(listing)
    listing.set_defaults(handler=list_dead_letters)


def list_dead_letters(args: argparse.Namespace) -> int:
    from azure.core.exceptions import AzureError

    from gatekeeper.ingest.deadletter import KeyState

    services = services_from_args(args)
    letters = services.dead_letters
    try:
        rows = []
        for letter in sorted(letters.list(args.queue), key=lambda d: (d.recorded_at, d.queue, d.row_key)):
            state = letters.key_state(letter, services.large_events)
            rows.append(
                {
                    "queue": letter.queue,
                    "row_key": letter.row_key,
                    "recorded_at": letter.recorded_at.isoformat(),
                    "reason": letter.reason,
                    "key": state.value if letter.queue == "pipeline-events" else None,
                }
            )
    except AzureError as exc:
        print(f"gatekeeper: error: dead letters cannot be read ({type(exc).__name__})", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['recorded_at']}  {row['queue']}  {row['row_key']}  key={row['key'] or '-'}  {row['reason']}")
    counts = {state.value: sum(r["key"] == state.value for r in rows) for state in KeyState}
    shown = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    print(f"{len(rows)} dead letter(s)" + (f"; pipeline events: {shown}" if shown else ""))
    return 0
