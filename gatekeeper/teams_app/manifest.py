"""The Teams app manifest: the template in infra/teams/ filled with one deployment's values, then checked.

The template keeps its `id` literal because the Bicep reads it (`loadJsonContent`) for the app setting
GATEKEEPER_TEAMS_APP_ID; everything that differs per deployment is a `{{PLACEHOLDER}}` filled here from the
app settings (the bot's app id, the app's host) and the admin's options (the MSP's name and pages).

Values are put into the parsed JSON, never spliced into its text, so a name with quotes cannot change the
manifest's shape. The JSON schema cannot see what the checks here see: that ids are GUIDs and agree with each
other, that `validDomains` holds host names (Teams refuses a scheme or path), and what is inside the icons.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gatekeeper import json_bounded
from gatekeeper.errors import InvalidInput
from gatekeeper.teams_app.png import PngError, read_png, rgba_pixels

MANIFEST_VERSION = "1.25"
SCHEMA_URL = f"https://developer.microsoft.com/json-schemas/teams/v{MANIFEST_VERSION}/MicrosoftTeams.schema.json"
COLOR_ICON_SIZE = (192, 192)
OUTLINE_ICON_SIZE = (32, 32)
MAX_TEMPLATE_BYTES = 65_536
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SEMVER = re.compile(r"^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})$")
PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
# A host name as Teams takes it in validDomains: labels, an optional port, no scheme, path or wildcard.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
DOMAIN = re.compile(rf"^(?=[^:]{{1,253}}(?::|$))(?:{_LABEL}\.)*{_LABEL}(?::\d{{1,5}})?$")
MSP_NAME_MAX = 32  # the schema's developer.name limit
URL_MAX = 2048


@dataclass(frozen=True)
class TeamsAppInputs:
    """What one deployment's package is built from. Field names are those the admin sees (settings, options)."""

    bot_app_id: str | None  # GATEKEEPER_BOT_APP_ID
    approval_base_url: str | None  # GATEKEEPER_APPROVAL_BASE_URL
    msp_name: str  # --msp-name
    website_url: str  # --website-url
    privacy_url: str  # --privacy-url
    terms_url: str  # --terms-url
    team: bool = False  # --team: the bot may also be added to a team (the optional approval channel)
    app_version: str | None = None  # --app-version; default: the template's
    teams_app_id: str | None = None  # GATEKEEPER_TEAMS_APP_ID, when set: must be the template's id


def _bad(field: str, detail: str) -> InvalidInput:
    return InvalidInput(f"{field}: {detail}", field=field, code="usage", title="Invalid input")


def _https_url(value: str, field: str) -> str:
    text = value.strip()
    if not text or len(text) > URL_MAX or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise _bad(field, f"must be an https URL of at most {URL_MAX} characters without spaces")
    parts = urlsplit(text)
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise _bad(field, f"must be an https URL such as https://contoso.com/privacy, not {text[:100]!r}")
    if parts.username is not None or parts.password is not None:
        raise _bad(field, "must not carry a user name or password")
    return text


def valid_domain(approval_base_url: str | None) -> str:
    """The app's host name as `validDomains` wants it, from GATEKEEPER_APPROVAL_BASE_URL."""
    field = "GATEKEEPER_APPROVAL_BASE_URL"
    if not approval_base_url:
        raise _bad(field, "is not set; it is the app's public https URL (azd output GATEKEEPER_APPROVAL_BASE_URL)")
    url = _https_url(approval_base_url, field)
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    domain = f"{host}:{parts.port}" if parts.port not in (None, 443) else host
    if not DOMAIN.match(domain):
        raise _bad(field, f"has no usable host name for validDomains ({domain[:100]!r})")
    return domain


def _checked_inputs(inputs: TeamsAppInputs) -> dict[str, str]:
    """The placeholder values, each checked and named after what the admin sets."""
    bot = (inputs.bot_app_id or "").strip()
    if not bot:
        raise _bad(
            "GATEKEEPER_BOT_APP_ID",
            "is not set; it is the bot's app id, the managed identity's client id "
            "(azd outputs GATEKEEPER_BOT_APP_ID and AZURE_MANAGED_IDENTITY_CLIENT_ID)",
        )
    if not GUID.match(bot):
        raise _bad("GATEKEEPER_BOT_APP_ID", "must be a GUID such as 3f2504e0-4f89-11d3-9a0c-0305e82c3301")
    name = inputs.msp_name.strip()
    if not name or len(name) > MSP_NAME_MAX or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise _bad("--msp-name", f"must be 1 to {MSP_NAME_MAX} printable characters (Teams shows it as the developer)")
    options = {
        "--msp-name": name,
        "--website-url": inputs.website_url,
        "--privacy-url": inputs.privacy_url,
        "--terms-url": inputs.terms_url,
    }
    for field, value in options.items():
        if "{{" in value or "}}" in value:
            raise _bad(field, "must not contain '{{' or '}}' (the manifest template's placeholder marks)")
    return {
        "BOT_APP_ID": bot.lower(),
        "APP_HOSTNAME": valid_domain(inputs.approval_base_url),
        "MSP_NAME": name,
        "MSP_WEBSITE_URL": _https_url(inputs.website_url, "--website-url"),
        "MSP_PRIVACY_URL": _https_url(inputs.privacy_url, "--privacy-url"),
        "MSP_TERMS_URL": _https_url(inputs.terms_url, "--terms-url"),
    }


def _fill(value: Any, values: Mapping[str, str], where: str) -> Any:
    if isinstance(value, dict):
        return {key: _fill(item, values, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, values, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, str):
        unknown = [name for name in PLACEHOLDER.findall(value) if name not in values]
        if unknown:
            raise _bad("manifest.json", f"{where}: unknown placeholder {{{{{unknown[0]}}}}}")
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], value)
    return value


def load_template(source: Path) -> dict[str, Any]:
    """infra/teams/manifest.json (or the --source folder's), parsed; errors name the file."""
    path = source / "manifest.json"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _bad(str(path), f"cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_TEMPLATE_BYTES:
        raise _bad(str(path), f"is larger than {MAX_TEMPLATE_BYTES} bytes")

    try:
        document = json_bounded.loads_object(raw)
    except json_bounded.JsonBoundsError as exc:
        where = "" if exc.path == "$" else f"{exc.path}: "
        raise _bad(str(path), f"{where}{exc.message} ({json_bounded.verdict(exc)})") from None
    return document


def build_manifest(template: Mapping[str, Any], inputs: TeamsAppInputs) -> dict[str, Any]:
    """The filled manifest; InvalidInput naming the setting or option at fault."""
    values = _checked_inputs(inputs)
    manifest: dict[str, Any] = _fill(copy.deepcopy(dict(template)), values, "manifest")
    if inputs.app_version is not None:
        if not SEMVER.match(inputs.app_version.strip()):
            raise _bad("--app-version", "must be a version such as 1.2.0 (major.minor.patch)")
        manifest["version"] = inputs.app_version.strip()
    if inputs.team:
        for bot in manifest.get("bots") or []:
            if isinstance(bot, dict) and "team" not in bot.get("scopes", []):
                bot["scopes"] = [*bot.get("scopes", []), "team"]
    expected_id = (inputs.teams_app_id or "").strip()
    if expected_id and expected_id.lower() != str(manifest.get("id", "")).lower():
        raise _bad(
            "GATEKEEPER_TEAMS_APP_ID",
            f"is {expected_id}, but the manifest's id is {manifest.get('id')}: notifications would name another app",
        )
    return manifest


def manifest_problems(manifest: Mapping[str, Any], files: Mapping[str, bytes]) -> list[str]:
    """What the Teams manifest schema cannot check; each entry names the manifest path at fault."""
    problems: list[str] = []
    if manifest.get("manifestVersion") != MANIFEST_VERSION or manifest.get("$schema") != SCHEMA_URL:
        problems.append(f"manifestVersion/$schema: must be {MANIFEST_VERSION} and {SCHEMA_URL}")
    leftover = PLACEHOLDER.findall(json.dumps(manifest))
    if leftover:
        problems.append(f"a placeholder is left: {{{{{leftover[0]}}}}}")
    app_id = str(manifest.get("id", ""))
    if not GUID.match(app_id):
        problems.append("id: must be a GUID")
    bots = manifest.get("bots")
    if not isinstance(bots, list) or len(bots) != 1 or not isinstance(bots[0], dict):
        problems.append("bots: must hold exactly one bot")
        bot_id = ""
    else:
        bot_id = str(bots[0].get("botId", ""))
        scopes = bots[0].get("scopes")
        if not GUID.match(bot_id):
            problems.append("bots[0].botId: must be a GUID (the bot's app id)")
        if not isinstance(scopes, list) or "personal" not in scopes or not set(scopes) <= {"personal", "team"}:
            problems.append("bots[0].scopes: must be personal, and team when the channel option is on")
    web_app = manifest.get("webApplicationInfo")
    web_id = str(web_app.get("id", "")) if isinstance(web_app, dict) else ""
    if web_id.lower() != bot_id.lower():
        problems.append(
            "webApplicationInfo.id: must be the bot's app id, the identity that sends activity notifications"
        )
    domains = manifest.get("validDomains")
    if not isinstance(domains, list) or not domains:
        problems.append("validDomains: must name the app's host")
    else:
        for i, domain in enumerate(domains):
            if not isinstance(domain, str) or not DOMAIN.match(domain):
                problems.append(f"validDomains[{i}]: must be a host name without scheme, path or wildcard")
    found = manifest.get("icons")
    icons: dict[str, Any] = found if isinstance(found, dict) else {}
    for key, size in (("color", COLOR_ICON_SIZE), ("outline", OUTLINE_ICON_SIZE)):
        problems.extend(_icon_problems(key, str(icons.get(key, "")), size, files))
    return problems


def _icon_problems(key: str, name: str, size: tuple[int, int], files: Mapping[str, bytes]) -> list[str]:
    where = f"icons.{key} ({name})"
    if name not in files:
        return [f"{where}: the file is not in the package"]
    try:
        png = read_png(files[name])
        if (png.width, png.height) != size:
            return [f"{where}: is {png.width}x{png.height}; Teams needs {size[0]}x{size[1]}"]
        if key != "outline":
            return []
        pixels = rgba_pixels(png)
    except PngError as exc:
        return [f"{where}: {exc}"]
    if not any(a == 0 for *_, a in pixels):
        return [f"{where}: has no transparent pixel; the outline icon's background must be transparent"]
    if any(a and (r, g, b) != (255, 255, 255) for r, g, b, a in pixels):
        return [f"{where}: must be white on transparent; it has coloured pixels"]
    return []
