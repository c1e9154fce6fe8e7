"""The Teams bot's infrastructure: one identity is the bot, the app's GATEKEEPER_BOT_APP_ID and (through
`package teams-app`) the manifest's botId; the Azure Bot posts to the app's /api/messages; App Service
authentication stays anonymous-allowed (bearer tokens and webhooks keep working) and keeps out of the bot's
route. Read from the Bicep as pycep parses it, so a change to any link of the chain fails here."""

from __future__ import annotations

from typing import Any

from tests.infra.conftest import needs_infra_venv


def reference(node: Any) -> str:
    """`identity.outputs.clientId` from pycep's nested property accessors; plain strings as they are."""
    if isinstance(node, str):
        return node
    operator = node.get("operator", {}) if isinstance(node, dict) else {}
    if operator.get("type") == "property_accessor":
        operands = operator["operands"]
        return f"{reference(operands['operand_1'])}.{reference(operands['operand_2'])}"
    if isinstance(node, dict) and node.get("function", {}).get("type") == "tenant":
        return "tenant().tenantId"
    raise AssertionError(f"not a reference: {node!r}")


def resources_of(parsed: dict[str, Any], path: str, rtype: str) -> list[dict[str, Any]]:
    return [r for r in parsed[path]["resources"].values() if r["type"] == rtype]


@needs_infra_venv
def test_the_azure_bot_runs_as_the_managed_identity_and_posts_to_the_apps_messages_route(parsed_infra):
    (bot,) = resources_of(parsed_infra, "modules/bot.bicep", "Microsoft.BotService/botServices")
    config, properties = bot["config"], bot["config"]["properties"]
    assert config["kind"] == "azurebot" and config["location"] == "global" and config["sku"] == {"name": "S1"}
    assert properties["msaAppType"] == "UserAssignedMSI"
    assert reference(properties["msaAppId"]) == "identityClientId"
    assert reference(properties["msaAppMSIResourceId"]) == "identityId"
    assert reference(properties["msaAppTenantId"]) == "tenant().tenantId"
    assert properties["endpoint"] == "https://${appHostName}/api/messages"
    assert properties["disableLocalAuth"] is True
    assert properties["publicNetworkAccess"] == "Enabled"  # the Teams service reaches the bot over the internet
    (channel,) = resources_of(parsed_infra, "modules/bot.bicep", "Microsoft.BotService/botServices/channels")
    assert channel["config"]["parent"] == "bot" and channel["config"]["name"] == "MsTeamsChannel"
    assert channel["config"]["properties"]["channelName"] == "MsTeamsChannel"
    assert channel["config"]["properties"]["properties"]["isEnabled"] is True


@needs_infra_venv
def test_one_identity_is_the_bot_and_the_apps_bot_app_id(parsed_infra):
    main = parsed_infra["main.bicep"]["modules"]
    bot_params, app_params = main["bot"]["config"]["params"], main["functionApp"]["config"]["params"]
    assert reference(bot_params["identityClientId"]) == "identity.outputs.clientId"
    assert reference(bot_params["identityId"]) == "identity.outputs.id"
    assert reference(app_params["identityClientId"]) == "identity.outputs.clientId"
    assert reference(app_params["identityId"]) == "identity.outputs.id"
    assert reference(bot_params["appHostName"]) == "functionApp.outputs.hostName"
    settings = parsed_infra["modules/functionapp.bicep"]["variables"]["appSettings"]["value"]
    assert reference(settings["GATEKEEPER_BOT_APP_ID"]) == "identityClientId"
    assert reference(settings["GATEKEEPER_BOT_TENANT_ID"]) == "tenant().tenantId"
    # azd hands this output to `package teams-app` as GATEKEEPER_BOT_APP_ID
    outputs = parsed_infra["main.bicep"]["outputs"]
    assert reference(outputs["GATEKEEPER_BOT_APP_ID"]["value"]) == "bot.outputs.appId"
    assert reference(parsed_infra["modules/bot.bicep"]["outputs"]["appId"]["value"]) == "bot.properties.msaAppId"


@needs_infra_venv
def test_app_service_authentication_allows_anonymous_and_keeps_out_of_the_bots_route(parsed_infra):
    """authsettingsV2 cannot redirect to login for one path only (excludedPaths is an exclusion list), so the
    platform allows anonymous requests and the page route redirects to /.auth/login/aad itself. A platform-wide
    RedirectToLoginPage would answer webhooks and bearer-less API calls with 302 instead of the routes' own
    401 problem+json."""
    (auth,) = [
        r
        for r in resources_of(parsed_infra, "modules/functionapp.bicep", "Microsoft.Web/sites/config")
        if r["config"]["name"] == "authsettingsV2"
    ]
    properties = auth["config"]["properties"]
    validation = properties["globalValidation"]
    assert validation["requireAuthentication"] is False
    assert validation["unauthenticatedClientAction"] == "AllowAnonymous"
    assert validation["excludedPaths"] == ["/api/messages"]
    entra = properties["identityProviders"]["azureActiveDirectory"]
    assert entra["enabled"] is True
    assert reference(entra["registration"]["clientId"]) == "teamsAppClientId"
    assert properties["platform"]["enabled"] is True
