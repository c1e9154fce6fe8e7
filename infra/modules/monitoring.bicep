// Log Analytics and Application Insights with local (key) authentication disabled, so telemetry is only
// accepted from Entra ID identities; plus the Azure Monitor workbook MSP operators open in the portal.

@description('Azure region of the monitoring resources.')
param location string

@description('Name of the Log Analytics workspace.')
param workspaceName string

@description('Name of the Application Insights component.')
param appInsightsName string

@description('Display name of the Gatekeeper workbook in the portal.')
param workbookDisplayName string

@description('Days Log Analytics keeps logs.')
@minValue(30)
@maxValue(730)
param logRetentionDays int

@description('Principal id of the Function App identity that publishes telemetry.')
param publisherPrincipalId string

@description('Object id of the Entra ID group of approvers, who may read the workbook and its telemetry.')
param approverGroupObjectId string

@description('Tags applied to every resource.')
param tags object

// Built-in role: Monitoring Metrics Publisher (needed to send telemetry when local auth is disabled).
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'
// Built-in roles for the approvers: read the workbook, and the telemetry it queries.
var workbookReaderRoleId = 'b279062a-9be3-42a0-92ae-8b3cf002ec4d'
var monitoringReaderRoleId = '43d0d8ad-25c7-4714-9337-8ba259a9fe05'

resource workspace 'Microsoft.OperationalInsights/workspaces@2025-07-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
    features: {
      disableLocalAuth: true
      enableLogAccessUsingOnlyResourcePermissions: true
    }
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    DisableLocalAuth: true
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

resource publisherRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, publisherPrincipalId, monitoringMetricsPublisherRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: publisherPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, appInsights.id, 'gatekeeper-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: workbookDisplayName
    category: 'workbook'
    sourceId: appInsights.id
    // The workbook opens on this component without a resource picker: fallbackResourceIds names it.
    serializedData: string(union(loadJsonContent('../workbook.json'), { fallbackResourceIds: [ appInsights.id ] }))
    version: '1.0'
  }
}

resource approversWorkbookReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workbook.id, approverGroupObjectId, workbookReaderRoleId)
  scope: workbook
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', workbookReaderRoleId)
    principalId: approverGroupObjectId
    principalType: 'Group'
  }
}

resource approversMonitoringReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, approverGroupObjectId, monitoringReaderRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringReaderRoleId)
    principalId: approverGroupObjectId
    principalType: 'Group'
  }
}

output workspaceId string = workspace.id
output appInsightsId string = appInsights.id
output appInsightsName string = appInsights.name
// The connection string holds no secret once local auth is disabled: ingestion needs an Entra ID token.
output appInsightsConnectionString string = appInsights.properties.ConnectionString
output workbookId string = workbook.id
