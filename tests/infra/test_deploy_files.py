"""azure.yaml, the azd parameters file, the release workflow and the Teams app manifest stay consistent
with main.bicep and the code."""

from __future__ import annotations

import re

import yaml

from gatekeeper.integrations.notify import ACTIVITY_TYPES
from gatekeeper.marketplace.bicep_params import read_parameters
from tests.infra.conftest import INFRA, ROOT, load_json

PARAMETERS = read_parameters((INFRA / "main.bicep").read_text())
ENV_REFERENCE = re.compile(r"^\$\{(?P<name>[A-Z][A-Z0-9_]*)(?:=(?P<default>[^}]*))?\}$")


def test_azure_yaml_provisions_main_bicep_and_deploys_the_function_app():
    config = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert config["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert config["services"]["api"] == {"project": ".", "language": "python", "host": "function"}
    # azd finds the app to deploy by this tag
    assert "'azd-service-name': 'api'" in (INFRA / "modules" / "functionapp.bicep").read_text()


def test_azd_parameters_cover_every_parameter_with_the_same_defaults():
    values = load_json(INFRA / "main.parameters.json")["parameters"]
    assert set(values) == set(PARAMETERS)
    for name, parameter in PARAMETERS.items():
        match = ENV_REFERENCE.match(values[name]["value"])
        assert match, f"{name}: expected an azd environment reference ${{NAME}} or ${{NAME=default}}"
        if name == "location":
            assert match["name"] == "AZURE_LOCATION"
        elif name == "packageUri":
            # azd deploys the code from source (azure.yaml), so it installs no released package
            assert (match["name"], match["default"]) == ("GATEKEEPER_PACKAGE_URI", "")
        elif parameter.has_default:
            assert match["default"] == parameter.default, f"{name}: azd default differs from main.bicep"
        else:
            assert match["default"] is None, f"{name}: a required parameter must come from the azd environment"


def test_azd_feeds_the_deployer_principal_from_its_own_environment_values():
    """azd sets AZURE_PRINCIPAL_ID (and AZURE_PRINCIPAL_TYPE) to the signed-in account: its data roles for
    onboarding tenants come from there, and developer deployments send no attribution unless asked."""
    values = load_json(INFRA / "main.parameters.json")["parameters"]
    assert values["principalId"]["value"] == "${AZURE_PRINCIPAL_ID=}"
    assert values["principalType"]["value"] == "${AZURE_PRINCIPAL_TYPE=User}"
    assert values["partnerAttribution"]["value"] == "${GATEKEEPER_PARTNER_ATTRIBUTION=false}"
    assert PARAMETERS["partnerAttribution"].default == "false"


def test_release_workflow_compiles_packages_and_uploads():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))
    assert "tags" in triggers["push"]
    steps = workflow["jobs"]["marketplace-package"]["steps"]
    script = "\n".join(step.get("run", "") for step in steps)
    assert "az bicep build --file infra/main.bicep --outfile build/mainTemplate.json" in script
    assert "python -m gatekeeper package marketplace" in script and "--template build/mainTemplate.json" in script
    upload = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert upload and upload[0]["with"]["path"] == "build/marketplace/gatekeeper-marketplace.zip"
    order = [i for i, s in enumerate(steps) if "bicep build" in s.get("run", "")] + [
        i for i, s in enumerate(steps) if "package marketplace" in s.get("run", "")
    ]
    assert order == sorted(order) and len(order) == 2


def test_teams_manifest_declares_the_activity_types_the_notifier_sends():
    manifest = load_json(INFRA / "teams" / "manifest.json")
    declared = {a["type"]: a["templateText"] for a in manifest["activities"]["activityTypes"]}
    assert set(declared) == set(ACTIVITY_TYPES.values())
    for text in declared.values():
        assert set(re.findall(r"\{(\w+)\}", text)) <= {"title"}, "the notifier only sends the 'title' parameter"
    # activity notifications come from the managed identity, which is also the bot (GATEKEEPER_BOT_APP_ID)
    assert manifest["webApplicationInfo"]["id"] == "{{BOT_APP_ID}}"
    assert [bot["botId"] for bot in manifest["bots"]] == ["{{BOT_APP_ID}}"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", manifest["id"])
    for icon in manifest["icons"].values():
        assert (INFRA / "teams" / icon).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_workbook_is_a_notebook_with_the_four_views():
    workbook = load_json(INFRA / "workbook.json")
    assert workbook["version"] == "Notebook/1.0"
    titles = " ".join(item["content"].get("title", "") for item in workbook["items"] if item["type"] == 3)
    for view in ("throughput", "Error rate", "Approval latency", "overrides"):
        assert view.lower() in titles.lower()


def _workflow(name: str) -> dict:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    workflow["on"] = workflow.get("on", workflow.get(True))
    return workflow


def _script(steps: list[dict]) -> str:
    return "\n".join(step.get("run", "") for step in steps)


def test_release_builds_the_app_package_and_publishes_it_with_its_checksum():
    steps = _workflow("release.yml")["jobs"]["marketplace-package"]["steps"]
    script = _script(steps)
    assert "--platform manylinux2014_x86_64 --python-version 3.11" in script and "--only-binary=:all:" in script
    assert "--target .python_packages/lib/site-packages" in script
    assert 'python -m gatekeeper package functionapp --version "$VERSION" --out build/app' in script
    assert '--release-package-url "$PACKAGE_URL"' in script
    assert "gatekeeper-functionapp-${VERSION}.zip.sha256" in script and "gh release create" in script
    order = [next(i for i, s in enumerate(steps) if marker in s.get("run", "")) for marker in (
        "package functionapp", "bicep build", "package marketplace", "arm-ttk.ps1", "gh release create")]  # fmt: skip
    assert order == sorted(order)


def test_release_package_url_is_the_one_main_bicep_defaults_to():
    """The workflow's asset URL, for this repository and version, is the template's packageUri default."""
    script = _script(_workflow("release.yml")["jobs"]["marketplace-package"]["steps"])
    line = next(x for x in script.splitlines() if "PACKAGE_URL=" in x)
    template = line.split("PACKAGE_URL=", 1)[1].split('" >>', 1)[0]
    default = PARAMETERS["packageUri"].default
    version = re.search(r"/v([^/]+)/", default)[1]
    repository = default.split("https://github.com/", 1)[1].split("/releases/", 1)[0]
    expected = template.replace("${GITHUB_REPOSITORY}", repository).replace("${version}", version)
    assert expected == default


def test_pull_requests_touching_infra_run_compile_package_arm_ttk_and_what_if():
    workflow = _workflow("infra.yml")
    assert "infra/**" in workflow["on"]["pull_request"]["paths"]
    assert re.fullmatch(r"[0-9a-f]{40}", workflow["env"]["ARM_TTK_COMMIT"])
    check = _script(workflow["jobs"]["compile-and-check"]["steps"])
    for command in (
        "az bicep build --file infra/main.bicep --outfile build/mainTemplate.json",
        "python -m gatekeeper package functionapp",
        "python -m gatekeeper package marketplace",
        "./infra/checks/arm-ttk.ps1 -OfferFolder build/offer",
        "checkout --quiet $env:ARM_TTK_COMMIT",
    ):
        assert command in check, command
    what_if = workflow["jobs"]["what-if"]
    assert what_if["permissions"]["id-token"] == "write"
    assert "secrets.AZURE_CLIENT_ID != ''" in what_if["env"]["HAS_AZURE"]
    login = next(s for s in what_if["steps"] if str(s.get("uses", "")).startswith("azure/login@"))
    assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}, "OIDC: no client secret"
    for step in what_if["steps"]:
        if "az deployment group what-if" in step.get("run", "") or step is login:
            assert step["if"] == "env.HAS_AZURE == 'true'"


def test_arm_ttk_script_fails_on_any_failed_test():
    script = (INFRA / "checks" / "arm-ttk.ps1").read_text()
    assert "Test-AzTemplate -TemplatePath $OfferFolder -Skip $warningOnly" in script
    assert "if ($failed.Count -gt 0) { exit 1 }" in script and "ran no test" in script
