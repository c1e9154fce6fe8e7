"""`gatekeeper package marketplace`, `package functionapp` and `package teams-app`: the release packages.

`marketplace` builds the Azure Marketplace offer zip from the compiled template; run by
.github/workflows/release.yml after `bicep build infra/main.bicep --outfile mainTemplate.json`. Exit 0 with
the zip written, 1 when the template or createUiDefinition fails a check (each finding printed), 2 when an
input is missing or unreadable.

With `--release-package-url URL` (the tag workflow) `marketplace` also refuses the placeholder Partner Center
tracking GUID and a template whose default package URL is not this release's app package.

`functionapp` builds the app package the offer installs (onedeploy, no remote build): the files `.funcignore`
lets through plus `.python_packages` (Linux x86_64, CPython 3.11), a deterministic zip and its SHA-256. Exit 0
with both written, 2 naming what is missing or foreign (nothing written).

`slack-app` writes the Slack app manifest (gatekeeper.slack.manifest): scopes and this deployment's request
URLs. Exit 0 with the file written, 2 naming the setting or option at fault.

`teams-app` builds the Teams app package an admin uploads (docs/deploy.md): infra/teams/ filled with the
bot's app id (GATEKEEPER_BOT_APP_ID), the app's host (GATEKEEPER_APPROVAL_BASE_URL) and the MSP's name and
pages. Exit 0 with the zip written, 2 naming the setting, option or manifest field at fault (nothing written).
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
DEFAULT_TEAMS_SOURCE = ROOT / "infra" / "teams"


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
    market.add_argument(
        "--release-package-url",
        default=None,
        metavar="URL",
        help="a release: refuse the placeholder tracking GUID and a packageUri default other than URL",
    )
    market.set_defaults(handler=run_marketplace)
    app = targets.add_parser(
        "functionapp", help="build the Function App package (with .python_packages) and its SHA-256"
    )
    app.add_argument("--version", required=True, help="the release version (pyproject.toml's), e.g. 0.1.0")
    app.add_argument("--out", required=True, type=Path, help="folder to write the zip and its .sha256 into")
    app.add_argument("--root", type=Path, default=ROOT, help="the checkout to package (default: this one)")
    app.set_defaults(handler=run_functionapp, needs_services=False)
    _register_teams_app(targets)
    slack = targets.add_parser("slack-app", help="write the Slack app manifest (create the app from it)")
    slack.add_argument("--out", required=True, type=Path, metavar="FILE.json", help="the manifest to write")
    slack.add_argument("--name", default="Gatekeeper", help="the app's name in Slack (at most 35 characters)")
    slack.set_defaults(handler=run_slack_app)


def _register_teams_app(targets: argparse._SubParsersAction) -> None:
    teams = targets.add_parser(
        "teams-app",
        help="build the Teams app package (bot, activity types, icons) to upload to the Teams admin center",
        description="Reads GATEKEEPER_BOT_APP_ID and GATEKEEPER_APPROVAL_BASE_URL (and GATEKEEPER_TEAMS_APP_ID, "
        "when set, to check it) from the environment; the MSP's details come from the options.",
    )
    teams.add_argument("--out", required=True, type=Path, metavar="FILE.zip", help="the package to write")
    teams.add_argument(
        "--team", action="store_true", help="let the bot be added to a team too (the optional approval channel)"
    )
    teams.add_argument("--msp-name", required=True, help="your company's name as Teams shows it (at most 32 chars)")
    teams.add_argument("--website-url", required=True, help="your company's https web site")
    teams.add_argument("--privacy-url", required=True, help="https URL of your privacy statement")
    teams.add_argument("--terms-url", required=True, help="https URL of your terms of use")
    teams.add_argument(
        "--app-version", default=None, help="the app's version, higher than the uploaded one (default: the template's)"
    )
    teams.add_argument(
        "--source", type=Path, default=DEFAULT_TEAMS_SOURCE, help="template folder (default: infra/teams)"
    )
    teams.set_defaults(handler=run_teams_app)


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
        release_package_url=args.release_package_url,
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


def _project_version(root: Path) -> str | None:
    import tomllib

    try:
        return str(tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None


def run_functionapp(args: argparse.Namespace) -> int:
    from gatekeeper.marketplace.app_package import build_app_package, folder_files

    root: Path = args.root
    declared = _project_version(root)
    if declared != args.version:
        raise UsageError(f"command line: --version: {args.version!r} differs from pyproject.toml's {declared!r}")
    try:
        package = build_app_package(root, folder_files(root), args.version, args.out)
    except PackageError as exc:
        raise UsageError(str(exc)) from exc
    print(f"wrote {package.zip_path} ({package.files} files) and {package.sha256_path}: sha256 {package.sha256}")
    return 0


def run_teams_app(args: argparse.Namespace) -> int:
    from gatekeeper.commands.common import services_from_args
    from gatekeeper.teams_app.manifest import TeamsAppInputs
    from gatekeeper.teams_app.package import build_teams_app, write_zip

    out: Path = args.out
    if out.suffix.lower() != ".zip":
        raise UsageError(f"command line: --out: {out}: the package must be a .zip file")
    if out.is_dir() or not out.parent.is_dir():
        raise UsageError(f"command line: --out: {out}: name a file in an existing folder")
    settings = services_from_args(args).settings
    inputs = TeamsAppInputs(
        bot_app_id=settings.bot_app_id,
        approval_base_url=settings.approval_base_url,
        msp_name=args.msp_name,
        website_url=args.website_url,
        privacy_url=args.privacy_url,
        terms_url=args.terms_url,
        team=args.team,
        app_version=args.app_version,
        teams_app_id=settings.teams_app_id,
    )
    package = build_teams_app(args.source, inputs)
    write_zip(package, out)
    manifest = package.manifest
    scopes = ", ".join(manifest["bots"][0]["scopes"])
    print(
        f"wrote {out}: Teams app {manifest['id']} version {manifest['version']}, bot {manifest['bots'][0]['botId']} "
        f"({scopes}), valid domain {manifest['validDomains'][0]}"
    )
    return 0


def run_slack_app(args: argparse.Namespace) -> int:
    """The Slack app manifest for this deployment (GATEKEEPER_APPROVAL_BASE_URL): exit 0 written, 2 naming the
    setting or option at fault (nothing written)."""
    from gatekeeper.commands.common import services_from_args
    from gatekeeper.errors import InvalidInput
    from gatekeeper.slack.manifest import slack_app_manifest

    out: Path = args.out
    if out.is_dir() or not out.parent.is_dir():
        raise UsageError(f"command line: --out: {out}: name a file in an existing folder")
    try:
        manifest = slack_app_manifest(services_from_args(args).settings.approval_base_url, args.name)
    except InvalidInput as exc:
        where = "app settings" if exc.field and exc.field.startswith("GATEKEEPER_") else "command line"
        raise UsageError(f"{where}: {exc.field}: {exc.detail}") from None
    out.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    settings = manifest["settings"]
    print(
        f"wrote {out}: Slack app {manifest['display_information']['name']!r}, bot scopes "
        f"{', '.join(manifest['oauth_config']['scopes']['bot'])}; interactivity "
        f"{settings['interactivity']['request_url']}, events {settings['event_subscriptions']['request_url']}"
    )
    return 0
