// The event mesh: an Event Grid topic that takes gate lifecycle events as CloudEvents 1.0 (docs/integrations.md,
// "Event mesh"). Local (key/SAS) auth is off: the app publishes with its user-assigned managed identity, which
// gets the EventGrid Data Sender role on this topic only. Subscribers add their own event subscriptions.

@description('Azure region of the topic (no default: the main template passes its location).')
param location string

@description('Name of the Event Grid topic (also the deployment name in every event source).')
param name string

@description('Principal id of the app\'s user-assigned managed identity (the publisher).')
param appPrincipalId string

@description('Resource id of the Log Analytics workspace receiving diagnostics.')
param workspaceId string

@description('Tags applied to the topic.')
param tags object

// Built-in role "EventGrid Data Sender": publish events to a topic, nothing else.
var eventGridDataSenderRoleId = 'd5a91429-5739-47e2-a06b-3470a27159e7'

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = {
  name: name
  location: location
  tags: tags
  // Its own identity, so subscriptions can deliver to Service Bus, Event Hubs or storage queues with Entra ID
  // (deliveryWithResourceIdentity) instead of keys.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    // The Flex Consumption app publishes without VNet integration (see the storage and Key Vault notes);
    // every publisher must hold an Entra ID token with the data sender role.
    publicNetworkAccess: 'Enabled'
    minimumTlsVersionAllowed: '1.2'
  }
}

resource senderRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, appPrincipalId, eventGridDataSenderRoleId)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSenderRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource topicDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: topic
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output id string = topic.id
output name string = topic.name
output endpoint string = topic.properties.endpoint
