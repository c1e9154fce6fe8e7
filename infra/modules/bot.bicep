// The Azure Bot that carries Gatekeeper's approval cards in Teams. Its identity is the Function App's
// user-assigned managed identity (no app registration, no client secret): the Agents SDK in the app gets
// Bot Connector tokens as that identity, and the Bot Connector signs the activities it sends to
// https://<app host>/api/messages for the same app id (GATEKEEPER_BOT_APP_ID).

@description('Globally unique name of the bot (2-64 letters, digits, hyphens, underscores, periods).')
@minLength(2)
@maxLength(64)
param name string

@description('Display name approvers see in Teams.')
param displayName string

@description('Client id of the user-assigned managed identity the bot runs as (its Microsoft App ID).')
param identityClientId string

@description('Resource id of that user-assigned managed identity.')
param identityId string

@description('Host name of the Function App whose /api/messages route is the messaging endpoint.')
param appHostName string

@description('Tags applied to the bot.')
param tags object

resource bot 'Microsoft.BotService/botServices@2022-09-15' = {
  name: name
  // Bots are global resources; the Bot Connector service itself is not regional.
  location: 'global'
  tags: tags
  kind: 'azurebot'
  sku: {
    // Standard: Teams is a standard channel, free of message charges on either SKU; S1 has the SLA.
    name: 'S1'
  }
  properties: {
    displayName: displayName
    description: 'Gatekeeper approval cards: approve or reject gated deployments in Teams.'
    endpoint: 'https://${appHostName}/api/messages'
    msaAppType: 'UserAssignedMSI'
    msaAppId: identityClientId
    msaAppMSIResourceId: identityId
    msaAppTenantId: tenant().tenantId
    tenantId: tenant().tenantId
    // Only Entra ID (the managed identity) authenticates; no channel keys or app passwords.
    disableLocalAuth: true
    // The Teams service must reach the bot's channel endpoints over the internet; the messaging endpoint
    // validates every activity's Bot Connector token in the app (Agents SDK).
    publicNetworkAccess: 'Enabled'
    isStreamingSupported: false
    isCmekEnabled: false
    schemaTransformationVersion: '1.3'
  }
}

// The Microsoft Teams channel: approval cards in 1:1 chats and, when the app is added to a team, a channel.
resource teamsChannel 'Microsoft.BotService/botServices/channels@2022-09-15' = {
  parent: bot
  name: 'MsTeamsChannel'
  location: 'global'
  properties: {
    channelName: 'MsTeamsChannel'
    properties: {
      isEnabled: true
      enableCalling: false
      acceptedTerms: true
      deploymentEnvironment: 'CommercialDeployment'
    }
  }
}

output name string = bot.name
output messagingEndpoint string = bot.properties.endpoint
output appId string = bot.properties.msaAppId
