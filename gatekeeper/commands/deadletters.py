"""`gatekeeper deadletters list|replay`: what was dead-lettered, why, what can still be read, and putting it back.

For each `pipeline-events` dead letter it says whether the key its event was sealed under is still there
(`readable`: it can be replayed while the KEK unwraps it) or was deleted (`shredded`: a transit key past
GATEKEEPER_TRANSIT_KEY_RETENTION_DAYS, gone for good), or that its claim-check blob is gone (`blob-gone`).
`list` exits 0, 1 if the tables cannot be read, 2 on bad arguments.

`replay --queue Q (--all | ROW_KEY...) [--dry-run] [--json]` sends each named dead letter back to its queue
as its producer sent it, then deletes its row (gatekeeper.ingest.replay). Exit 0 when every requested row was
replayed (or would be), 1 when storage or the queue cannot be reached (that row is kept, later rows are not
tried), 2 on bad arguments (an unknown row key: nothing is sent), 3 when some rows were refused.
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
    replay = actions.add_parser(
        "replay",
        help="send dead letters back to their queue once the cause is fixed, then delete them",
        description="Send each named dead letter back to its queue exactly as its producer sent it, then delete "
        "its row. A crash between the two can replay a message twice, which is harmless: the dispatcher "
        "deduplicates on the business key (one gate), a vote counts once. Refused, with nothing sent: truncated "
        "messages, pipeline events whose key is shredded or whose claim-check blob is gone, rows of another queue. "
        "Exit 0 all replayed (or would be), 1 storage or the queue unreachable (the row is kept), 2 bad arguments "
        "(an unknown row key: nothing sent), 3 some rows refused.",
    )
    replay.add_argument("--queue", choices=QUEUES, required=True, help="the queue the dead letters go back to")
    replay.add_argument("--all", action="store_true", help="every dead letter of --queue")
    replay.add_argument("row_keys", nargs="*", metavar="ROW_KEY", help="row keys as `deadletters list` shows them")
    replay.add_argument("--dry-run", action="store_true", help="print what would happen; change nothing")
    replay.add_argument("--json", action="store_true", help="print JSON")
    add_storage_option(replay)
    replay.set_defaults(handler=replay_dead_letters)


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


EXIT_REFUSED = 3


def replay_dead_letters(args: argparse.Namespace) -> int:
    from azure.core.exceptions import AzureError

    from gatekeeper.commands.common import UsageError
    from gatekeeper.ingest.deadletter import PIPELINE_EVENTS_QUEUE
    from gatekeeper.ingest.replay import ROW_KEY, Outcome, Replayer, RowResult, queue_sender

    if args.all == bool(args.row_keys):
        raise UsageError("deadletters replay: give either --all or ROW_KEY..., not both or neither")
    bad = [key for key in args.row_keys if not ROW_KEY.fullmatch(key)]
    if bad:
        raise UsageError(f"ROW_KEY: {bad[0][:80]!r} is not a dead-letter row key")
    services = services_from_args(args)
    target = services.queue_name if args.queue == PIPELINE_EVENTS_QUEUE else args.queue  # what the trigger reads
    # The queue on request-path budgets: an unreachable queue is exit 1 within seconds (the row kept), not
    # a minute of storage retries; the operator runs the command again.
    send = queue_sender(services.request_storage, target)
    replayer = Replayer(services.dead_letters, services.large_events, send)
    try:
        if args.all:
            letters = sorted(services.dead_letters.list(args.queue), key=lambda d: (d.recorded_at, d.row_key))
            elsewhere: list[RowResult] = []
            unknown: list[str] = []
        else:
            letters, elsewhere, unknown = replayer.find(args.queue, args.row_keys)
    except AzureError as exc:
        print(f"gatekeeper: error: dead letters cannot be read ({type(exc).__name__}); nothing sent", file=sys.stderr)
        return 1
    if unknown:
        raise UsageError(f"ROW_KEY: no dead letter {unknown[0]!r} (of any queue); nothing sent")
    results = elsewhere + replayer.replay(letters, dry_run=args.dry_run)
    if args.json:
        print(json.dumps([r.as_json() for r in results], indent=2))
    else:
        for result in results:
            print(result.line())
        counts = {o: sum(r.outcome is o for r in results) for o in Outcome}
        shown = ", ".join(f"{n} {o.value}" for o, n in counts.items() if n)
        print(f"{len(results)} of {len(letters) + len(elsewhere)} dead letter(s): {shown or 'none'}")
    if any(r.outcome is Outcome.FAILED for r in results):
        failed = next(r for r in results if r.outcome is Outcome.FAILED)
        print(f"gatekeeper: error: {failed.row_key}: {failed.reason}", file=sys.stderr)
        return 1
    return EXIT_REFUSED if any(r.outcome is Outcome.REFUSED for r in results) else 0
