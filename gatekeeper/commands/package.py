"""`gatekeeper package marketplace`: build the Azure Marketplace offer zip from the compiled template.

Run by .github/workflows/release.yml after `bicep build infra/main.bicep --outfile mainTemplate.json`.
Exit 0 with the zip written, 1 when the template or createUiDefinition fails a check (each finding
printed), 2 when an input is missing or unreadable.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from gatekeeper.commands.common import UsageError
from gatekeeper.marketplace.package import PackageError, PackageInputs, build_package

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_UI_DEFINITION = ROOT / "infra" / "marketplace" / "createUiDefinition.json"
DEFAULT_BICEP = ROOT / "infra" / "main.bicep"
DEFAULT_API_EXCEPTIONS = ROOT / "infra" / "checks" / "api-version-exceptions.json"
DEFAULT_SCHEMA_DIR = ROOT.parent / "shared" / "fixtures" / "arm"


def register(subparsers: argparse._SubParsersAction) -> None:
    package = subparsers.add_parser("package", help="build release packages")
    targets = package.add_subparsers(dest="target", required=True, metavar="TARGET")
    market = targets.add_parser("marketplace", help="build the Azure Marketplace offer zip")
    market.add_argument(
        "--template",
        required=True,
        type=Path,
        help="compiled ARM template (bicep build infra/main.bicep --outfile mainTemplate.json)",
    )
    market.add_argument("--out", required=True, type=Path, help="folder to write the offer zip into")
    market.add_argument(
        "--ui-definition",
        type=Path,
        default=DEFAULT_UI_DEFINITION,
        help="createUiDefinition.json (default: infra/marketplace/createUiDefinition.json)",
    )
    market.add_argument(
        "--bicep",
        type=Path,
        default=DEFAULT_BICEP,
        help="Bicep source the template was compiled from (default: infra/main.bicep)",
    )
    market.add_argument(
        "--artifacts", type=Path, default=None, help="folder of nested artifacts to add to the zip, paths kept"
    )
    market.add_argument(
        "--api-exceptions",
        type=Path,
        default=DEFAULT_API_EXCEPTIONS,
        help="reviewed apiVersion exceptions (default: infra/checks/api-version-exceptions.json)",
    )
    market.add_argument(
        "--schema-dir",
        type=Path,
        default=None,
        help="folder with Azure's createUiDefinition schemas; validates against them when given "
        f"(default: {DEFAULT_SCHEMA_DIR} when it exists)",
    )
    market.set_defaults(handler=run_marketplace)


def _exceptions(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        exceptions = data["exceptions"]
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: file not found") from exc
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: exceptions: expected a JSON object with an 'exceptions' map") from exc
    if not isinstance(exceptions, dict) or not all(isinstance(v, str) and v.strip() for v in exceptions.values()):
        raise UsageError(f"{path}: exceptions: every entry needs a reason")
    return exceptions


def run_marketplace(args: argparse.Namespace) -> int:
    schema_dir = args.schema_dir
    if schema_dir is None and DEFAULT_SCHEMA_DIR.is_dir():
        schema_dir = DEFAULT_SCHEMA_DIR
    inputs = PackageInputs(
        template=args.template,
        ui_definition=args.ui_definition,
        bicep=args.bicep,
        artifacts=args.artifacts,
        api_exceptions=_exceptions(args.api_exceptions),
        schema_dir=schema_dir,
    )
    try:
        target, findings = build_package(inputs, args.out, date.today())
    except PackageError as exc:
        raise UsageError(str(exc)) from exc
    if findings:
        print(
            f"gatekeeper: refusing to package: {len(findings)} problem(s) in the compiled template or "
            "createUiDefinition:",
            file=sys.stderr,
        )
        for finding in findings:
            print(f"  {finding}", file=sys.stderr)
        return 1
    print(f"wrote {target}")
    return 0
