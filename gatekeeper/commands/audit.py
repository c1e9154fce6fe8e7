"""`gatekeeper audit export|verify|public-key|checkpoint`: the tenant audit log for auditors and operators.

    audit export --tenant T --format bundle|oscal|jsonl --out FILE [--from ISO --to ISO]
    audit verify BUNDLE [--public-key PEM] [--expect-size N] [--against-worm [--storage-connection CS]]
    audit public-key [--out FILE]
    audit checkpoint --tenant T [--force]

`verify` runs offline (no storage, no Azure): exit 0 and `verified <size> entries, root <hex>`, or exit 1 and
`first bad entry: seq <n>: <what is wrong>`; exit 2 when the bundle or key file cannot be read (or is not
strict JSON: NaN, nesting past the bound; a repeated key is readable but ambiguous, so it is exit 1).
`--expect-size N` and `--against-worm` (the checkpoints in the WORM container, read from storage) catch a
bundle cut back to an older checkpoint, which verifies on its own.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatekeeper.commands.common import add_storage_option, services_from_args, storage_from_args

if TYPE_CHECKING:
    from gatekeeper.audit.verify import VerificationResult

PROGRESS_MIN_ENTRIES = 5000  # below this a bar would only flicker


def register(subparsers: argparse._SubParsersAction) -> None:
    audit = subparsers.add_parser("audit", help="export and verify tenant audit logs")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    export = actions.add_parser("export", help="export a tenant's audit log (bundle, OSCAL or JSON Lines)")
    export.add_argument("--tenant", required=True, help="tenant id")
    export.add_argument("--format", required=True, choices=("bundle", "oscal", "jsonl"), dest="fmt")
    export.add_argument("--out", required=True, help="output file ('-' for standard output)")
    export.add_argument("--from", dest="time_from", metavar="ISO", help="first instant (RFC 3339; UTC if no zone)")
    export.add_argument("--to", dest="time_to", metavar="ISO", help="last instant (RFC 3339; UTC if no zone)")
    add_storage_option(export)
    export.set_defaults(handler=export_command)

    verify = actions.add_parser("verify", help="verify an exported bundle offline")
    verify.add_argument("bundle", type=Path, help="bundle file from `audit export --format bundle`")
    verify.add_argument(
        "--public-key",
        type=Path,
        metavar="PEM",
        help="trusted checkpoint public key(s), PEM (default: the key inside the bundle)",
    )
    verify.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    verify.add_argument(
        "--expect-size",
        type=int,
        metavar="N",
        help="fail unless the verified log has exactly N entries (a size you learnt elsewhere)",
    )
    verify.add_argument(
        "--against-worm",
        action="store_true",
        help="also compare with the checkpoints in the WORM blob container (needs storage access)",
    )
    add_storage_option(verify)
    verify.set_defaults(handler=verify_command)

    public_key = actions.add_parser("public-key", help="print or write the checkpoint public key (PEM)")
    public_key.add_argument("--out", help="output file (default: standard output)")
    public_key.set_defaults(handler=public_key_command)

    checkpoint = actions.add_parser("checkpoint", help="sign a checkpoint now if one is due (or --force)")
    checkpoint.add_argument("--tenant", required=True, help="tenant id")
    checkpoint.add_argument("--force", action="store_true", help="sign even if fewer than N entries/T minutes")
    add_storage_option(checkpoint)
    checkpoint.set_defaults(handler=checkpoint_command)


def _usage(message: str) -> Exception:
    from gatekeeper.commands.common import UsageError

    return UsageError(message)


def _instant(option: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        value.astimezone(UTC)  # 0001-01-01T00:00:00+14:00 parses but has no UTC equivalent
    except (ValueError, OverflowError):
        raise _usage(f"{option}: {text!r} is not an ISO 8601 date or date-time in range") from None
    return value


def _tenant(text: str) -> str:
    from gatekeeper.store.tables import InvalidTenantId, validate_tenant_id

    try:
        return validate_tenant_id(text)
    except InvalidTenantId as exc:
        raise _usage(f"--tenant: {exc}") from None


def _signer(args: argparse.Namespace) -> Any:
    from gatekeeper.audit.signing import CheckpointKeyError

    try:
        return services_from_args(args).checkpoint_signer
    except (ValueError, RuntimeError) as exc:
        if isinstance(exc, CheckpointKeyError):
            raise
        raise _usage(f"app settings: {exc}") from None


def _log(args: argparse.Namespace, tenant: str) -> Any:
    from gatekeeper.audit.signing import CheckpointKeyError

    services = services_from_args(args)
    try:
        services.sealer  # noqa: B018  (the tenant keys first: a settings error names them)
    except (ValueError, RuntimeError) as exc:
        raise _usage(f"app settings: {exc}") from None
    _signer(args)  # the checkpoint key next, as before: an unreadable key is its own error
    try:
        return services.audit_for(tenant)
    except (ValueError, RuntimeError) as exc:
        if isinstance(exc, CheckpointKeyError):
            raise
        raise _usage(f"app settings: {exc}") from None


def _write(out: str, data: bytes) -> None:
    if out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(data)
    except OSError as exc:
        raise _usage(f"{out}: cannot write: {exc.strerror or type(exc).__name__}") from None


def export_command(args: argparse.Namespace) -> int:
    from gatekeeper.audit.export import export_bytes

    tenant = _tenant(args.tenant)
    start, end = _instant("--from", args.time_from), _instant("--to", args.time_to)
    if start and end and end < start:
        raise _usage("--to: must not be earlier than --from")
    data = export_bytes(_log(args, tenant), args.fmt, start=start, end=end)
    _write(args.out, data)
    if args.out != "-":
        print(f"exported tenant {tenant} audit log ({args.fmt}) to {args.out}", file=sys.stderr)
    return 0


def verify_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from gatekeeper.audit.bundle import BundleFormatError, check_bundle, load_bundle
    from gatekeeper.audit.verify import VerificationError

    path: Path = args.bundle
    if args.expect_size is not None and args.expect_size < 0:
        raise _usage("--expect-size: must be a number of entries, 0 or more")
    try:
        bundle = load_bundle(path)
    except VerificationError as exc:  # a repeated key: readable but ambiguous, so unverified (exit 1)
        print(exc.detail)
        print(str(exc.__cause__), file=sys.stderr)
        return 1
    except BundleFormatError as exc:
        raise _usage(str(exc)) from None
    pem: bytes | None = None
    if args.public_key is not None:
        try:
            pem = args.public_key.read_bytes()
        except OSError as exc:
            raise _usage(f"{args.public_key}: cannot read: {exc.strerror or type(exc).__name__}") from None
    entries = bundle.get("entries")
    total = len(entries) if isinstance(entries, list) else 0
    show = not args.no_progress and total >= PROGRESS_MIN_ENTRIES
    with tqdm(
        total=total, unit="entry", file=sys.stderr, disable=None if show else True, desc="verifying", leave=False
    ) as bar:
        try:
            result = check_bundle(bundle, public_key_pem=pem, progress=bar.update)
        except BundleFormatError as exc:
            where = args.public_key if pem is not None and "public key" in str(exc) else path
            raise _usage(f"{where}: {exc}") from None
    extra: list[str] = []
    if result.ok and args.expect_size is not None and result.size != args.expect_size:
        expected = args.expect_size
        result = replace(
            result,
            ok=False,
            first_bad_seq=min(result.size, expected),
            problem=f"the bundle verifies {result.size} entries, not the {expected} expected (--expect-size)",
        )
    if result.ok and args.against_worm:
        result, extra = _against_worm(args, bundle, pem, result)
    print(result.summary())
    for line in extra:
        print(line)
    if result.ok and not result.trusted_key:
        print(
            "note: signatures were checked against the key inside the bundle; pass --public-key with your own "
            "copy of the checkpoint key to rule out a re-signed forgery",
            file=sys.stderr,
        )
    return 0 if result.ok else 1


def _against_worm(
    args: argparse.Namespace, bundle: dict[str, Any], pem: bytes | None, result: VerificationResult
) -> tuple[VerificationResult, list[str]]:
    """The result compared with the tenant's archived checkpoints, and the line that says so."""
    from azure.core.exceptions import AzureError

    from gatekeeper.audit.archive import CheckpointArchive
    from gatekeeper.audit.bundle import bundle_keys, parse_header
    from gatekeeper.audit.worm_check import against_archive, summary

    header = parse_header(bundle)
    keys, _ = bundle_keys(header, pem)
    try:
        container = services_from_args(args).settings.audit_container
        archive = CheckpointArchive.from_storage(storage_from_args(args), container)
        blobs = archive.list(header.tenant)
    except (ValueError, RuntimeError) as exc:
        raise _usage(f"--against-worm: {exc}") from None
    except AzureError as exc:
        raise _usage(f"--against-worm: cannot read the WORM archive ({type(exc).__name__})") from None
    checked = against_archive(header, result, blobs, keys)
    return checked, [summary(blobs, checked)] if checked.ok else []


def public_key_command(args: argparse.Namespace) -> int:
    pem = _signer(args).public_key_pem()
    if args.out:
        _write(args.out, pem.encode("ascii"))
    else:
        sys.stdout.write(pem)
    return 0


def checkpoint_command(args: argparse.Namespace) -> int:
    tenant = _tenant(args.tenant)
    log = _log(args, tenant)
    signed = log.checkpoint(force=args.force)
    if signed is None:
        size = log.head().size
        print(
            f"tenant {tenant}: the audit log is empty, nothing to sign"
            if size == 0
            else f"tenant {tenant}: no checkpoint due yet ({size} unsigned entries; --force signs now)"
        )
        return 0
    cp = signed.checkpoint()
    print(f"tenant {tenant}: checkpoint at size {cp.size}, root {cp.root.hex()}, {cp.time}")
    return 0
