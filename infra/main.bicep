// Gatekeeper: everything one MSP deployment needs, in one resource group.
// Deployed by `azd up` (developers) and, compiled to mainTemplate.json, by the Azure Marketplace offer
// (infra/marketplace/createUiDefinition.json asks for exactly these parameters). docs/deploy.md explains each.
targetScope = 'resourceGroup'

@description('Azure region for every resource. Defaults to the resource group\'s region.')
param location string = resourceGroup().location

@description('Short lowercase prefix for resource names (3-10 letters or digits, starting with a letter).')
@minLength(3)
@maxLength(10)
param namePrefix string

@description('Object id of the Entra ID group of approvers: tenant policies name it as group:<id>, and its members can open the Gatekeeper workbook.')
@minLength(36)
@maxLength(36)
param approverGroupObjectId string

@description('Client (application) id of the Entra ID app registration used by the Teams app and the approval page.')
@minLength(36)
@maxLength(36)
param teamsAppClientId string

@description('Mailbox (user principal name) that sends approval mails when a Teams notification cannot be delivered.')
@minLength(3)
@maxLength(254)
param mailSenderAddress string

@description('Seconds an unwrapped tenant data key stays cached in memory (Key Vault is called once per tenant per period).')
@minValue(60)
@maxValue(3600)
param dataKeyCacheSeconds int = 300

@description('Days each signed audit checkpoint stays immutable (WORM) after it is written.')
@minValue(1)
@maxValue(3650)
param auditImmutabilityDays int = 365

@description('Days Log Analytics keeps logs.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 90

@description('Largest number of Function App instances (Flex Consumption scale-out limit).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Memory of each Function App instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Mail address (or distribution list) of the operators who are paged by the alert rules.')
@minLength(3)
@maxLength(254)
param alertEmailAddress string

@description('Teams incoming webhook (Workflows) URL that also receives the alerts; empty: mail only.')
@secure()
param alertTeamsWebhookUrl string = ''

// Customer usage attribution for the Marketplace offer. Replace with the tracking GUID Partner Center shows
// in the plan's technical configuration before publishing (docs/deploy.md, "Marketplace release").
var partnerCenterTrackingId = '97a7f287-6daf-4b56-af5e-8997cba933b4'

var token = take(uniqueString(subscription().id, resourceGroup().id, namePrefix), 10)
var tags = {
  application: 'gatekeeper'
  'gatekeeper-prefix': namePrefix
}
var checkpointKeyName = 'audit-checkpoint'
var githubAppKeyName = 'github-app'

module identity 'modules/identity.bicep' = {
  name: 'gatekeeper-identity'
  params: {
    location: location
    name: '${namePrefix}-id-${token}'
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'gatekeeper-monitoring'
  params: {
    location: location
    workspaceName: '${namePrefix}-log-${token}'
    appInsightsName: '${namePrefix}-appi-${token}'
    workbookDisplayName: 'Gatekeeper (${namePrefix})'
    logRetentionDays: logRetentionDays
    publisherPrincipalId: identity.outputs.principalId
    approverGroupObjectId: approverGroupObjectId
    tags: tags
  }
}

// What pages the operators: callback failures, dead letters, stuck gates, route failure rate, Key Vault unwrap
// failures (docs/telemetry.md, "Alert rules").
module alerts 'modules/alerts.bicep' = {
  name: 'gatekeeper-alerts'
  params: {
    location: location
    name: '${namePrefix}-alert-${token}'
    appInsightsId: monitoring.outputs.appInsightsId
    operatorEmail: alertEmailAddress
    teamsWebhookUrl: alertTeamsWebhookUrl
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'gatekeeper-storage'
  params: {
    location: location
    name: 'st${namePrefix}${token}'
    deploymentContainerName: 'app-package'
    auditContainerName: 'audit-checkpoints'
    auditImmutabilityDays: auditImmutabilityDays
    appPrincipalId: identity.outputs.principalId
    workspaceId: monitoring.outputs.workspaceId
    tags: tags
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'gatekeeper-keyvault'
  params: {
    location: location
    name: 'kv-${namePrefix}-${token}'
    checkpointKeyName: checkpointKeyName
    appPrincipalId: identity.outputs.principalId
    workspaceId: monitoring.outputs.workspaceId
    tags: tags
  }
}

module eventGrid 'modules/eventgrid.bicep' = {
  name: 'gatekeeper-eventgrid'
  params: {
    location: location
    name: '${namePrefix}-evgt-${token}'
    appPrincipalId: identity.outputs.principalId
    workspaceId: monitoring.outputs.workspaceId
    tags: tags
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'gatekeeper-functionapp'
  params: {
    location: location
    planName: '${namePrefix}-plan-${token}'
    appName: '${namePrefix}-func-${token}'
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    auditContainerName: storage.outputs.auditContainerName
    keyVaultUri: keyVault.outputs.uri
    checkpointKeyName: keyVault.outputs.checkpointKeyName
    githubAppKeyName: githubAppKeyName
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    teamsAppClientId: teamsAppClientId
    mailSenderAddress: mailSenderAddress
    dataKeyCacheSeconds: dataKeyCacheSeconds
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    workspaceId: monitoring.outputs.workspaceId
    eventGridTopicEndpoint: eventGrid.outputs.endpoint
    tags: tags
  }
}

// The Azure Bot for Teams approval cards, running as the app's managed identity, messaging endpoint
// https://<app host>/api/messages, with the Microsoft Teams channel.
module bot 'modules/bot.bicep' = {
  name: 'gatekeeper-bot'
  params: {
    name: '${namePrefix}-bot-${token}'
    displayName: 'Gatekeeper'
    identityClientId: identity.outputs.clientId
    identityId: identity.outputs.id
    appHostName: functionApp.outputs.hostName
    tags: tags
  }
}

// Empty nested deployment whose name carries the Partner Center tracking id (customer usage attribution).
resource partnerCenterAttribution 'Microsoft.Resources/deployments@2025-04-01' = {
  name: 'pid-${partnerCenterTrackingId}-partnercenter'
  properties: {
    mode: 'Incremental'
    template: {
      '$schema': 'https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#'
      contentVersion: '1.0.0.0'
      resources: []
    }
  }
}

// Names and ids only: nothing here is a secret. azd stores these as environment values.
output AZURE_LOCATION string = location
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_HOSTNAME string = functionApp.outputs.hostName
output GATEKEEPER_APPROVAL_BASE_URL string = functionApp.outputs.approvalBaseUrl
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
// The bot's app id (the managed identity's client id): `package teams-app` reads it as GATEKEEPER_BOT_APP_ID.
output GATEKEEPER_BOT_APP_ID string = bot.outputs.appId
output AZURE_BOT_NAME string = bot.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URI string = keyVault.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_APPLICATION_INSIGHTS_NAME string = monitoring.outputs.appInsightsName
output AZURE_WORKBOOK_ID string = monitoring.outputs.workbookId
