// Gatekeeper: everything one MSP deployment needs, in one resource group.
// Deployed by `azd up` (developers) and, compiled to mainTemplate.json, by the Azure Marketplace offer
// (infra/marketplace/createUiDefinition.json asks for exactly these parameters). docs/deploy.md explains each.
targetScope = 'resourceGroup'

@description('Azure region for every resource. Defaults to the resource group\'s region. With a data boundary it must lie inside it.')
param location string = resourceGroup().location

@description('Geography all data stays in: EU, US, or any. With EU or US the region must lie inside it, storage replicates only inside it, an "Allowed locations" policy keeps the resource group there, and the app refuses tenants that require another boundary (one deployment, a stamp, per geography).')
@allowed([
  'EU'
  'US'
  'any'
])
param dataBoundary string = 'any'

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

@description('URL of the released app package the template installs (onedeploy). The default is the release asset of this template\'s version; leave it unless you mirror the package. Empty deploys no code (azd deploys from source).')
param packageUri string = 'https://github.com/OWNER/gatekeeper/releases/download/v0.1.0/gatekeeper-functionapp-0.1.0.zip'

@description('Gatekeeper id of the first managed tenant, imported with the example policy on the app\'s first start (3-32 lowercase letters or digits, starting with a letter). Empty: onboard tenants later with the CLI.')
@maxLength(32)
param firstTenantId string = ''

@description('Display name of the first managed tenant.')
@maxLength(128)
param firstTenantName string = ''

@description('Entra ID tenant id (GUID) of the first managed tenant.')
@maxLength(36)
param firstTenantEntraId string = ''

@description('Mail addresses of the first tenant\'s operators, comma-separated.')
@maxLength(1024)
param operatorsMail string = ''

@description('Whether the first tenant deploys with GitHub.')
param useGitHub bool = false

@description('Whether the first tenant deploys with Azure DevOps.')
param useAzureDevOps bool = false

@description('Name of the Key Vault key that signs audit checkpoints. Change it to move to a new key (docs/deploy.md, the RSA upgrade): the template creates the key if missing and grants the app Crypto User on it.')
@minLength(1)
@maxLength(127)
param checkpointKeyName string = 'audit-checkpoint'

@description('GitHub REST API base URL: https://api.github.com, or https://<host>/api/v3 for GitHub Enterprise Server.')
@minLength(8)
@maxLength(256)
param githubApiUrl string = 'https://api.github.com'

@description('Log Analytics query API of your cloud, for the post-deploy watch\'s KQL probes (the default is Azure public cloud\'s; sovereign clouds have their own). A parameter because ARM has no environment() value for it.')
@minLength(8)
@maxLength(256)
param logAnalyticsApiUrl string = 'https://api.loganalytics.io'

@description('Set to true after you locked the audit WORM policy (docs/deploy.md, step 7): a locked policy accepts only an extension, so the template must leave it alone.')
param auditPolicyLocked bool = false

@description('Reinstall only: any short text that gives the Key Vault a new name, because a deleted vault keeps its name for 90 days (purge protection). Leave empty otherwise.')
@maxLength(20)
param keyVaultNameSalt string = ''

@description('Reinstall only: \'recover\' restores the soft-deleted Key Vault of the same name, with its keys, instead of creating it.')
@allowed([
  'default'
  'recover'
])
param keyVaultCreateMode string = 'default'

@description('Object id of the managed identity or service principal that relays PSA/RMM events to the connector-events queue; it gets Storage Queue Data Message Sender on that queue. Empty for none.')
@maxLength(36)
param connectorRelayPrincipalId string = ''

@description('Object id of the person or pipeline that onboards tenants with the CLI (azd passes AZURE_PRINCIPAL_ID). Gets Storage Table Data Contributor, Key Vault Crypto Officer and Key Vault Secrets Officer. Empty for none.')
@maxLength(36)
param principalId string = ''

@description('Principal type of principalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Send Microsoft the customer usage attribution of the Marketplace offer (the Marketplace form sets true; developer deployments send none unless asked).')
param partnerAttribution bool = false

// Data boundaries (docs/deploy.md, "Data boundary and stamps"): the Azure regions of each geography, for the
// "Allowed locations" policy, and the regions whose storage must not be geo-redundant because their paired
// region lies outside the geography or they have none.
var boundaryRegions = {
  EU: [
    'francecentral'
    'francesouth'
    'germanywestcentral'
    'germanynorth'
    'italynorth'
    'northeurope'
    'westeurope'
    'polandcentral'
    'spaincentral'
    'swedencentral'
    'swedensouth'
  ]
  US: [
    'centralus'
    'eastus'
    'eastus2'
    'northcentralus'
    'southcentralus'
    'westcentralus'
    'westus'
    'westus2'
    'westus3'
  ]
  any: []
}
var unpairedRegions = [
  'italynorth'
  'polandcentral'
  'spaincentral'
]
var boundaryLocations = boundaryRegions[dataBoundary]
var locationInBoundary = (dataBoundary == 'any') || contains(boundaryLocations, toLower(location))
// Every resource's region. A region outside the boundary becomes a name no region has, so the deployment
// stops at the first resource and the error names the boundary (ARM templates have no assertion).
var deployLocation = locationInBoundary ? location : 'region-${location}-is-outside-the-${dataBoundary}-data-boundary'
var storageSku = ((dataBoundary != 'any') && contains(unpairedRegions, toLower(location))) ? 'Standard_ZRS' : 'Standard_GRS'
// Built-in policy "Allowed locations" (deny); it exempts 'global' resources such as the Azure Bot.
var allowedLocationsPolicyId = 'e56962a6-4747-49cd-b67b-bf8b01975c4c'
@description('Mail address (or distribution list) of the operators who are paged by the alert rules.')
@minLength(3)
@maxLength(254)
param alertEmailAddress string

@description('Teams incoming webhook (Workflows) URL that also receives the alerts; empty: mail only.')
@secure()
param alertTeamsWebhookUrl string = ''

var token = take(uniqueString(subscription().id, resourceGroup().id, namePrefix), 10)
var vaultToken = empty(keyVaultNameSalt) ? token : take(uniqueString(subscription().id, resourceGroup().id, namePrefix, keyVaultNameSalt), 10)
var tags = {
  application: 'gatekeeper'
  'gatekeeper-prefix': namePrefix
}
var githubAppKeyName = 'github-app'

module identity 'modules/identity.bicep' = {
  name: 'gatekeeper-identity'
  params: {
    location: deployLocation
    name: '${namePrefix}-id-${token}'
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'gatekeeper-monitoring'
  params: {
    location: deployLocation
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
    location: deployLocation
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
    location: deployLocation
    name: 'st${namePrefix}${token}'
    deploymentContainerName: 'app-package'
    auditContainerName: 'audit-checkpoints'
    auditImmutabilityDays: auditImmutabilityDays
    auditPolicyLocked: auditPolicyLocked
    skuName: storageSku
    appPrincipalId: identity.outputs.principalId
    connectorRelayPrincipalId: connectorRelayPrincipalId
    deployerPrincipalId: principalId
    deployerPrincipalType: principalType
    workspaceId: monitoring.outputs.workspaceId
    tags: tags
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'gatekeeper-keyvault'
  params: {
    location: deployLocation
    name: 'kv-${namePrefix}-${vaultToken}'
    checkpointKeyName: checkpointKeyName
    createMode: keyVaultCreateMode
    appPrincipalId: identity.outputs.principalId
    deployerPrincipalId: principalId
    deployerPrincipalType: principalType
    workspaceId: monitoring.outputs.workspaceId
    tags: tags
  }
}

module eventGrid 'modules/eventgrid.bicep' = {
  name: 'gatekeeper-eventgrid'
  params: {
    location: deployLocation
    name: '${namePrefix}-evgt-${token}'
    appPrincipalId: identity.outputs.principalId
    workspaceId: monitoring.outputs.workspaceId
    tags: tags
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'gatekeeper-functionapp'
  params: {
    location: deployLocation
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
    packageUri: packageUri
    githubApiUrl: githubApiUrl
    logAnalyticsApiUrl: logAnalyticsApiUrl
    dataBoundary: dataBoundary
    firstTenantId: firstTenantId
    firstTenantName: firstTenantName
    firstTenantEntraId: firstTenantEntraId
    operatorsMail: operatorsMail
    useGitHub: useGitHub
    useAzureDevOps: useAzureDevOps
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

// Keeps later resources of the group inside the data boundary too (what this template creates is held by
// deployLocation above, since a new assignment takes effect only after this deployment).
resource allowedLocations 'Microsoft.Authorization/policyAssignments@2025-03-01' = if (dataBoundary != 'any') {
  name: 'gatekeeper-allowed-locations'
  properties: {
    displayName: 'Gatekeeper: resources stay in the ${dataBoundary} data boundary'
    description: 'Assigned by the Gatekeeper template (dataBoundary = ${dataBoundary}). Resources of this group may only be created in these regions; global resources are exempt.'
    policyDefinitionId: tenantResourceId('Microsoft.Authorization/policyDefinitions', allowedLocationsPolicyId)
    enforcementMode: 'Default'
    parameters: {
      listOfAllowedLocations: {
        value: boundaryLocations
      }
    }
    nonComplianceMessages: [
      {
        message: 'This Gatekeeper stamp keeps its data in the ${dataBoundary} data boundary: deploy in one of its regions, or use a stamp for the other geography.'
      }
    ]
  }
}

// Empty nested deployment whose name carries the Partner Center tracking GUID (customer usage attribution),
// deployed only when asked: the Marketplace form asks for it, developer deployments do not. The GUID is written
// literally, so the compiled template names it as Partner Center expects. The nil GUID is the placeholder:
// replace it with the GUID of the plan's technical configuration; `package marketplace --release` refuses it
// (docs/deploy.md, "Marketplace release").
resource partnerCenterAttribution 'Microsoft.Resources/deployments@2025-04-01' = if (partnerAttribution) {
  name: 'pid-00000000-0000-0000-0000-000000000000-partnercenter'
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
output GATEKEEPER_DATA_BOUNDARY string = dataBoundary
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
// The endpoints for the CLI on an admin's machine (sovereign clouds have other suffixes).
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output AZURE_STORAGE_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
output AZURE_STORAGE_QUEUE_ENDPOINT string = storage.outputs.queueEndpoint
output AZURE_APPLICATION_INSIGHTS_NAME string = monitoring.outputs.appInsightsName
output AZURE_WORKBOOK_ID string = monitoring.outputs.workbookId
