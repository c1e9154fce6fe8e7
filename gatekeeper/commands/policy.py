"""`gatekeeper policy publish|show|history|recommend`: a tenant's versioned policy, every change audited;
`recommend` proposes changes from the tenant's own gate history (gatekeeper.recommend.proposals)."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path

from gatekeeper.commands.common import add_storage_option, services_from_args, storage_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    policy = subparsers.add_parser("policy", help="publish and inspect tenants' gate policies")
    actions = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")

    publish = actions.add_parser("publish", help="validate a policy file and make it the tenant's current one")
    publish.add_argument("--tenant", required=True)
    publish.add_argument("file", type=Path)
    publish.add_argument("--by", default=None, help="who publishes (recorded in the audit log; default: $USER)")
    add_storage_option(publish)
    publish.set_defaults(handler=publish_policy)

    show = actions.add_parser("show", help="print the current (or a given) revision")
    show.add_argument("--tenant", required=True)
    show.add_argument("--revision", type=int)
    add_storage_option(show)
    show.set_defaults(handler=show_policy)

    recommend = actions.add_parser(
        "recommend", help="propose policy changes from the tenant's own gate history (never lowers L3 or compliance)"
    )
    recommend.add_argument("--tenant", required=True)
    recommend.add_argument("--since", default="90d", help="how far back to look: Nd (days), default 90d")
    recommend.add_argument(
        "--out", type=Path, default=None, help="write the proposed policy here (YAML), for `policy publish`"
    )
    add_storage_option(recommend)
    recommend.set_defaults(handler=recommend_policy)

    history = actions.add_parser("history", help="list every revision")
    history.add_argument("--tenant", required=True)
    add_storage_option(history)
    history.set_defaults(handler=policy_history)


def _store(args: argparse.Namespace):
    from gatekeeper.commands.common import UsageError
    from gatekeeper.policy.store import PolicyStore
    from gatekeeper.store.tables import InvalidTenantId

    try:
        return PolicyStore(storage_from_args(args), args.tenant)
    except InvalidTenantId as exc:
        raise UsageError(f"--tenant: {exc}") from None


def publish_policy(args: argparse.Namespace) -> int:
    from gatekeeper.commands.common import UsageError

    try:
        text = args.file.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{args.file}: cannot read: {exc.strerror}") from None
    store = _store(args)
    try:  # the audit log is opened first: a change that cannot be audited is not made
        audit = services_from_args(args).audit_for(args.tenant)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"app settings: {exc}") from None
    by = args.by or getpass.getuser()
    from gatekeeper.policy.document import PolicyError

    try:
        revision = store.publish(text, published_by=by)
    except PolicyError as exc:
        raise UsageError(f"{args.file}: {exc.field}: {exc.detail}") from None
    audit.append(
        "policy_changed",
        by,
        "",
        f"policy revision {revision.revision}",
        {"revision": revision.revision, "fingerprint": revision.fingerprint, "file": args.file.name},
    )
    print(f"published policy revision {revision.revision} for {args.tenant} (fingerprint {revision.fingerprint})")
    return 0


def show_policy(args: argparse.Namespace) -> int:
    from gatekeeper.commands.common import UsageError
    from gatekeeper.policy.store import NoPolicy

    store = _store(args)
    try:
        revision = store.revision(args.revision) if args.revision else store.current()
    except NoPolicy as exc:
        raise UsageError(str(exc)) from None
    when = f"{revision.published_at:%Y-%m-%dT%H:%M:%SZ}"
    print(f"# revision {revision.revision}, published by {revision.published_by} at {when}")
    print(revision.text, end="" if revision.text.endswith("\n") else "\n")
    return 0


def policy_history(args: argparse.Namespace) -> int:
    rows = _store(args).history()
    if not rows:
        print(f"no policy published for {args.tenant}")
    for revision, fingerprint, by, at in rows:
        print(f"{revision:>5}  {at:%Y-%m-%dT%H:%M:%SZ}  {fingerprint[:16]}  {by}")
    return 0


def _since_days(text: str) -> int:
    from gatekeeper.commands.common import UsageError

    value = text.strip().lower()
    if not value.endswith("d") or not value[:-1].isdigit() or not 1 <= int(value[:-1]) <= 3650:
        raise UsageError(f"--since: {text!r} is not a number of days such as 90d (1d to 3650d)")
    return int(value[:-1])


def recommend_policy(args: argparse.Namespace) -> int:
    """Proposals from the evidence (gatekeeper.recommend.proposals), the policy diff, and with --out the
    proposed policy file. Exit 0 with or without proposals; 2 for bad input or no policy."""
    import difflib
    from datetime import UTC, datetime, timedelta

    import yaml

    from gatekeeper.commands.common import UsageError
    from gatekeeper.policy.document import load_policy, policy_data
    from gatekeeper.policy.store import NoPolicy
    from gatekeeper.recommend.history import read_history
    from gatekeeper.recommend.proposals import apply_changes
    from gatekeeper.recommend.proposals import recommend_policy as propose

    days = _since_days(args.since)
    store = _store(args)
    try:
        revision = store.current()
    except NoPolicy as exc:
        raise UsageError(str(exc)) from None
    try:
        audit = services_from_args(args).audit_for(args.tenant)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"app settings: {exc}") from None
    now = datetime.now(UTC)
    history = read_history(audit.records(), since=now - timedelta(days=days))
    result = propose(load_policy(revision.text), history, days)
    print(f"# {args.tenant}: policy revision {revision.revision}, {len(history)} gate(s) in the last {days} days")
    if not result.proposals:
        print("no proposals: the evidence supports no change")
    for proposal in result.proposals:
        print(proposal.summary)
    changes = result.changes
    if not changes:
        return 0
    document = policy_data(revision.text, f"revision {revision.revision}")
    proposed = apply_changes(document, changes)
    load_policy(proposed)  # the edit must itself be a valid policy
    before = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    after = yaml.safe_dump(proposed, sort_keys=False, allow_unicode=True)
    print()
    print(
        "".join(
            difflib.unified_diff(
                before.splitlines(keepends=True),
                after.splitlines(keepends=True),
                f"policy revision {revision.revision}",
                "proposed",
            )
        ),
        end="",
    )
    if args.out is not None:
        try:
            args.out.write_text(after, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{args.out}: cannot write: {exc.strerror}") from None
        print(
            f"\nproposed policy written to {args.out}; publish it with: "
            f"python -m gatekeeper policy publish --tenant {args.tenant} {args.out}"
        )
    return 0
