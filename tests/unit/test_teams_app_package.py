"""`gatekeeper package teams-app`: a manifest the official Teams schema accepts, the checks the schema cannot
make, the same bytes for the same inputs, and exit 2 naming the setting or option for every bad input."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator, Draft7Validator, validators

from gatekeeper.cli import main
from gatekeeper.integrations.notify import ACTIVITY_TYPES
from gatekeeper.teams_app.manifest import MANIFEST_VERSION, SCHEMA_URL, TeamsAppInputs, build_manifest, load_template
from gatekeeper.teams_app.png import PngError, read_png, rgba_pixels

ROOT = Path(__file__).resolve().parents[2]
TEAMS = ROOT / "infra" / "teams"
SCHEMA_PATH = ROOT / "tests" / "fixtures" / "teams" / f"MicrosoftTeams.schema.{MANIFEST_VERSION}.json"
SCHEMA_SHA256 = "c12e46862889f8314edb30b991f748683dc5358267693c79436984e5e585be84"
BOT = "9c1d2e3f-1111-4222-8333-444455556666"
OTHER_GUID = "11111111-2222-4333-8444-555555555555"
HOST = "gk-func-abc123.azurewebsites.net"
OPTIONS = [
    "--msp-name",
    "Contoso MSP",
    "--website-url",
    "https://contoso.example",
    "--privacy-url",
    "https://contoso.example/privacy",
    "--terms-url",
    "https://contoso.example/terms",
]
# The schema declares draft-04 but pins manifestVersion with `const` (draft-06); honour both.
TeamsValidator = validators.extend(Draft4Validator, {"const": Draft7Validator.VALIDATORS["const"]})


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("GATEKEEPER_TEAMS_APP_ID", "GATEKEEPER_BOT_APP_ID", "GATEKEEPER_APPROVAL_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GATEKEEPER_BOT_APP_ID", BOT)
    monkeypatch.setenv("GATEKEEPER_APPROVAL_BASE_URL", f"https://{HOST}")
    return monkeypatch


def schema() -> dict[str, Any]:
    raw = SCHEMA_PATH.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, "the vendored Teams schema was edited"
    return json.loads(raw)


SCHEMA_VALIDATOR = TeamsValidator(schema())


def build(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str, name: str = "app.zip") -> tuple[int, str]:
    code = main(["package", "teams-app", "--out", str(tmp_path / name), *OPTIONS, *extra])
    return code, capsys.readouterr().err


def read_zip(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        files = {info.filename: archive.read(info) for info in archive.infolist()}
    return json.loads(files["manifest.json"]), files


Pixel = tuple[int, int, int, int]


def png_bytes(width: int, height: int, pixel: Pixel, corner: Pixel | None = None) -> bytes:
    """An 8-bit RGBA PNG of one colour, optionally with a different top-left pixel (filter type 0)."""
    rows = b""
    for y in range(height):
        line = b"".join(bytes(corner if (corner and x == 0 and y == 0) else pixel) for x in range(width))
        rows += b"\0" + line

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def source_copy(tmp_path: Path, **files: bytes) -> Path:
    folder = tmp_path / "teams"
    shutil.copytree(TEAMS, folder)
    for name, content in files.items():
        (folder / name.replace("_", ".")).write_bytes(content)
    return folder


# ------------------------------------------------------------------------------------------ valid packages


@pytest.mark.parametrize("team", [False, True])
def test_the_package_is_valid_against_the_official_teams_schema(env, tmp_path, capsys, team):
    code, err = build(tmp_path, capsys, *(["--team"] if team else []))
    assert code == 0, err
    manifest, files = read_zip(tmp_path / "app.zip")
    errors = sorted(TeamsValidator(schema()).iter_errors(manifest), key=str)
    assert errors == [], "\n".join(e.message for e in errors)
    assert sorted(files) == ["color.png", "manifest.json", "outline.png"]
    assert manifest["manifestVersion"] == MANIFEST_VERSION and manifest["$schema"] == SCHEMA_URL
    assert manifest["bots"] == [
        {
            "botId": BOT,
            "scopes": ["personal", "team"] if team else ["personal"],
            "isNotificationOnly": False,
            "supportsFiles": False,
            "supportsCalling": False,
            "supportsVideo": False,
        }
    ]
    # activity notifications are sent by the managed identity, which is also the bot: one id for both
    assert manifest["webApplicationInfo"] == {"id": BOT}
    assert manifest["validDomains"] == [HOST]
    assert manifest["developer"] == {
        "name": "Contoso MSP",
        "websiteUrl": "https://contoso.example",
        "privacyUrl": "https://contoso.example/privacy",
        "termsOfUseUrl": "https://contoso.example/terms",
    }
    assert {a["type"] for a in manifest["activities"]["activityTypes"]} == set(ACTIVITY_TYPES.values())
    # the id the Bicep reads for GATEKEEPER_TEAMS_APP_ID is the template's, unchanged
    assert manifest["id"] == json.loads((TEAMS / "manifest.json").read_text())["id"]
    assert files["color.png"] == (TEAMS / "color.png").read_bytes()


def test_the_schema_check_can_fail(env, tmp_path, capsys):
    """The validator is live: the old version, an unknown scope and a missing developer URL are refused."""
    assert build(tmp_path, capsys)[0] == 0
    manifest, _ = read_zip(tmp_path / "app.zip")
    checker = TeamsValidator(schema())
    assert checker.is_valid(manifest)
    for broken in (
        {**manifest, "manifestVersion": "1.17"},
        {**manifest, "bots": [{**manifest["bots"][0], "scopes": ["everyone"]}]},
        {**manifest, "developer": {"name": "x", "websiteUrl": "https://a", "privacyUrl": "https://a"}},
        {**manifest, "webApplicationInfo": {"id": "not-a-guid"}},
    ):
        assert not checker.is_valid(broken)


def test_the_same_inputs_give_the_same_bytes_and_other_inputs_do_not(env, tmp_path, capsys):
    assert build(tmp_path, capsys, name="a.zip")[0] == 0
    assert build(tmp_path, capsys, name="b.zip")[0] == 0
    assert build(tmp_path, capsys, "--team", name="c.zip")[0] == 0
    a, b, c = ((tmp_path / n).read_bytes() for n in ("a.zip", "b.zip", "c.zip"))
    assert a == b and a != c
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_a_base_url_with_a_port_and_path_gives_host_and_port(env, tmp_path, capsys):
    env.setenv("GATEKEEPER_APPROVAL_BASE_URL", "https://Approvals.Contoso.example:8443/gatekeeper/")
    assert build(tmp_path, capsys)[0] == 0
    assert read_zip(tmp_path / "app.zip")[0]["validDomains"] == ["approvals.contoso.example:8443"]


def test_a_hostile_msp_name_stays_a_value_and_cannot_reshape_the_manifest(env, tmp_path, capsys):
    hostile = 'Evil", "bots": [], "x": "\\u0000'
    code = main(["package", "teams-app", "--out", str(tmp_path / "app.zip"), *OPTIONS, "--msp-name", hostile])
    assert code == 0, capsys.readouterr().err
    manifest, _ = read_zip(tmp_path / "app.zip")
    assert manifest["developer"]["name"] == hostile
    assert len(manifest["bots"]) == 1 and manifest["bots"][0]["botId"] == BOT
    assert "x" not in manifest


def test_a_placeholder_in_an_option_is_refused_naming_the_option(env, tmp_path, capsys):
    code = main(["package", "teams-app", "--out", str(tmp_path / "app.zip"), *OPTIONS, "--msp-name", "{{BOT_APP_ID}}"])
    assert code == 2
    assert "--msp-name: must not contain '{{'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- bad input, exit 2


@pytest.mark.parametrize(
    ("replace", "value", "named"),
    [
        ("--website-url", "http://contoso.example", "--website-url"),
        ("--privacy-url", "javascript:alert(1)", "--privacy-url"),
        ("--terms-url", "", "--terms-url"),
        ("--terms-url", "https://user:pw@contoso.example/terms", "--terms-url"),
        ("--website-url", "https://contoso.example/a b", "--website-url"),
        ("--msp-name", "x" * 33, "--msp-name"),
        ("--msp-name", "   ", "--msp-name"),
        ("--msp-name", "bad\nname", "--msp-name"),
    ],
)
def test_a_bad_option_exits_2_naming_it_and_writes_nothing(env, tmp_path, capsys, replace, value, named):
    options = list(OPTIONS)
    options[options.index(replace) + 1] = value
    code = main(["package", "teams-app", "--out", str(tmp_path / "app.zip"), *options])
    err = capsys.readouterr().err
    assert code == 2
    assert named in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("missing", ["--msp-name", "--website-url", "--privacy-url", "--terms-url", "--out"])
def test_a_missing_option_exits_2_naming_it(env, tmp_path, capsys, missing):
    args = ["package", "teams-app", "--out", str(tmp_path / "app.zip"), *OPTIONS]
    at = args.index(missing)
    del args[at : at + 2]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert missing in capsys.readouterr().err


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("GATEKEEPER_BOT_APP_ID", None, "GATEKEEPER_BOT_APP_ID"),
        ("GATEKEEPER_BOT_APP_ID", "my-bot", "GATEKEEPER_BOT_APP_ID"),
        ("GATEKEEPER_APPROVAL_BASE_URL", None, "GATEKEEPER_APPROVAL_BASE_URL"),
        ("GATEKEEPER_APPROVAL_BASE_URL", "http://gk.example", "GATEKEEPER_APPROVAL_BASE_URL"),
        ("GATEKEEPER_APPROVAL_BASE_URL", "ftp://gk.example", "GATEKEEPER_APPROVAL_BASE_URL"),
        ("GATEKEEPER_TEAMS_APP_ID", "00000000-0000-4000-8000-000000000000", "GATEKEEPER_TEAMS_APP_ID"),
    ],
)
def test_a_missing_or_wrong_setting_exits_2_naming_it(env, tmp_path, capsys, setting, value, named):
    if value is None:
        env.delenv(setting, raising=False)
    else:
        env.setenv(setting, value)
    code, err = build(tmp_path, capsys)
    assert code == 2
    assert named in err
    assert list(tmp_path.iterdir()) == []


def test_the_teams_app_id_setting_may_name_the_templates_id(env, tmp_path, capsys):
    env.setenv("GATEKEEPER_TEAMS_APP_ID", json.loads((TEAMS / "manifest.json").read_text())["id"].upper())
    assert build(tmp_path, capsys)[0] == 0


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--app-version", "1.2"], "--app-version"),
        (["--app-version", "01.2.3"], "--app-version"),
    ],
)
def test_a_bad_app_version_exits_2(env, tmp_path, capsys, args, named):
    code, err = build(tmp_path, capsys, *args)
    assert code == 2 and named in err


def test_the_app_version_option_sets_the_version(env, tmp_path, capsys):
    assert build(tmp_path, capsys, "--app-version", "2.3.4")[0] == 0
    assert read_zip(tmp_path / "app.zip")[0]["version"] == "2.3.4"


@pytest.mark.parametrize("out", ["app.txt", "missing-folder/app.zip"])
def test_a_bad_out_path_exits_2_naming_out(env, tmp_path, capsys, out):
    code = main(["package", "teams-app", "--out", str(tmp_path / out), *OPTIONS])
    assert code == 2
    assert "--out" in capsys.readouterr().err


def test_an_existing_package_is_replaced_whole_and_kept_when_the_build_fails(env, tmp_path, capsys):
    target = tmp_path / "app.zip"
    target.write_bytes(b"previous package")
    env.setenv("GATEKEEPER_BOT_APP_ID", "not-a-guid")
    assert build(tmp_path, capsys)[0] == 2
    assert target.read_bytes() == b"previous package"
    env.setenv("GATEKEEPER_BOT_APP_ID", BOT)
    assert build(tmp_path, capsys)[0] == 0
    assert zipfile.is_zipfile(target) and sorted(p.name for p in tmp_path.iterdir()) == ["app.zip"]


# --------------------------------------------------------------------- what the schema cannot check: icons


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"color_png": png_bytes(96, 96, (31, 78, 121, 255))}, "icons.color (color.png): is 96x96; Teams needs"),
        ({"outline_png": png_bytes(48, 48, (255, 255, 255, 255))}, "icons.outline (outline.png): is 48x48"),
        ({"outline_png": png_bytes(32, 32, (255, 255, 255, 255))}, "has no transparent pixel"),
        ({"outline_png": png_bytes(32, 32, (0, 0, 0, 0), corner=(200, 0, 0, 255))}, "must be white on transparent"),
        ({"outline_png": b"GIF89a not a png"}, "is not a PNG file"),
        ({"color_png": (TEAMS / "color.png").read_bytes()[:-20]}, "icons.color (color.png)"),
    ],
)
def test_icons_teams_would_refuse_exit_2_naming_the_icon(env, tmp_path, capsys, files, message):
    source = source_copy(tmp_path, **files)
    code, err = build(tmp_path, capsys, "--source", str(source))
    assert code == 2
    assert message in err
    assert not (tmp_path / "app.zip").exists()


def test_the_shipped_icons_are_the_sizes_teams_needs_and_the_outline_is_white_on_transparent():
    color = read_png((TEAMS / "color.png").read_bytes())
    outline = read_png((TEAMS / "outline.png").read_bytes())
    assert (color.width, color.height) == (192, 192)
    assert (outline.width, outline.height) == (32, 32) and outline.has_alpha
    pixels = rgba_pixels(outline)
    assert {p for p in pixels if p[3]} <= {(255, 255, 255, a) for a in range(1, 256)}
    assert any(p[3] == 0 for p in pixels)


def test_the_png_reader_refuses_damaged_and_oversized_files():
    good = png_bytes(32, 32, (255, 255, 255, 0))
    damaged = bytearray(good)
    damaged[20] ^= 0xFF  # inside IHDR: its CRC no longer matches
    with pytest.raises(PngError, match="damaged"):
        read_png(bytes(damaged))
    with pytest.raises(PngError, match="at most"):
        read_png(b"\x89PNG\r\n\x1a\n" + b"\0" * 2_000_000)
    with pytest.raises(PngError, match="at most 1024x1024"):
        read_png(png_bytes(5000, 1, (0, 0, 0, 0)))


# ------------------------------------------------------------------ what the schema cannot check: the manifest


def _template_with(tmp_path: Path, change) -> Path:
    source = source_copy(tmp_path)
    manifest = json.loads((source / "manifest.json").read_text())
    change(manifest)
    (source / "manifest.json").write_text(json.dumps(manifest))
    return source


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["validDomains"].append("https://evil.example/path"), "validDomains[1]"),
        (lambda m: m["validDomains"].append("*"), "validDomains[1]"),
        (lambda m: m.update(webApplicationInfo={"id": OTHER_GUID}), "webApplicationInfo.id"),
        (lambda m: m["bots"][0].update(scopes=["personal", "groupChat"]), "bots[0].scopes"),
        (lambda m: m.update(id="not-a-guid"), "id: must be a GUID"),
        (lambda m: m.update(manifestVersion="1.17"), "manifestVersion"),
        (lambda m: m["developer"].update(name="{{MSP_TYPO}}"), "unknown placeholder {{MSP_TYPO}}"),
        (lambda m: m["bots"].append(dict(m["bots"][0])), "bots: must hold exactly one bot"),
    ],
)
def test_manifest_mistakes_the_schema_lets_through_exit_2(env, tmp_path, capsys, change, message):
    source = _template_with(tmp_path, change)
    code, err = build(tmp_path, capsys, "--source", str(source))
    assert code == 2
    assert message in err


def test_a_template_with_a_repeated_key_is_refused_naming_the_file(env, tmp_path, capsys):
    source = source_copy(tmp_path)
    text = (source / "manifest.json").read_text()
    repeated = text.replace('"version": "1.1.0",', '"version": "1.1.0", "version": "9.0.0",')
    (source / "manifest.json").write_text(repeated)
    code, err = build(tmp_path, capsys, "--source", str(source))
    assert code == 2 and "manifest.json: $.version: key appears more than once" in err


def test_a_template_nested_too_deep_is_refused_before_parsing(env, tmp_path, capsys):
    source = source_copy(tmp_path)
    (source / "manifest.json").write_text("[" * 5000 + "]" * 5000)
    code, err = build(tmp_path, capsys, "--source", str(source))
    assert code == 2 and "manifest.json: nested deeper than 64 levels" in err


# ------------------------------------------------------------------------------------------ properties


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    name=st.text(
        alphabet=st.characters(min_codepoint=32, blacklist_categories=("Cs", "Cc")), min_size=1, max_size=32
    ).filter(lambda n: n.strip() and "{{" not in n and "}}" not in n),
    team=st.booleans(),
)
def test_any_printable_msp_name_is_kept_verbatim_and_the_manifest_stays_schema_valid(name, team):
    inputs = TeamsAppInputs(
        bot_app_id=BOT,
        approval_base_url=f"https://{HOST}",
        msp_name=name,
        website_url="https://contoso.example",
        privacy_url="https://contoso.example/privacy",
        terms_url="https://contoso.example/terms",
        team=team,
    )
    manifest = build_manifest(load_template(TEAMS), inputs)
    assert manifest["developer"]["name"] == name.strip()
    assert SCHEMA_VALIDATOR.is_valid(manifest)
    assert manifest["bots"][0]["scopes"] == (["personal", "team"] if team else ["personal"])


def test_separate_processes_write_the_same_bytes(tmp_path):
    """Same inputs, two interpreters with different hash seeds: byte-identical packages."""
    env = {**os.environ, "GATEKEEPER_BOT_APP_ID": BOT, "GATEKEEPER_APPROVAL_BASE_URL": f"https://{HOST}"}
    env.pop("GATEKEEPER_TEAMS_APP_ID", None)
    for seed in ("1", "2"):
        command = ["package", "teams-app", "--out", str(tmp_path / f"{seed}.zip"), *OPTIONS]
        result = subprocess.run(
            [sys.executable, "-m", "gatekeeper", *command],
            cwd=ROOT,
            env={**env, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "1.zip").read_bytes() == (tmp_path / "2.zip").read_bytes()
