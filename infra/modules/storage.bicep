// The storage account behind the Functions host, Durable Functions, the per-tenant tables, the deployment
// package and the audit checkpoints. Shared-key access is off: every client uses the managed identity, which
// gets only the three data roles the app needs (blob, queue, table).

@description('Azure region of the storage account.')
param location string

@description('Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Name of the blob container holding the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Name of the immutable (WORM) blob container holding signed audit checkpoints.')
param auditContainerName string

@description('Days each audit checkpoint blob stays immutable after it is written.')
@minValue(1)
@maxValue(146000)
param auditImmutabilityDays int

@description('True once an admin has locked the WORM policy: the template then leaves it alone, because a locked policy accepts only an extension and a deployment that writes it fails.')
param auditPolicyLocked bool

@description('Replication of the account: Standard_GRS where the paired region lies inside the data boundary, Standard_ZRS where it does not (main.bicep decides).')
@allowed([
  'Standard_GRS'
  'Standard_ZRS'
])
param skuName string

@description('Principal id of the Function App identity.')
param appPrincipalId string

@description('Principal id of the connector relays (a PSA/RMM relay\'s managed identity or service principal) that may post messages to the connector-events queue; empty for none.')
param connectorRelayPrincipalId string

@description('Principal id of the person or pipeline that onboards tenants with the CLI (azd: AZURE_PRINCIPAL_ID); empty for none.')
param deployerPrincipalId string

@description('Principal type of deployerPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param deployerPrincipalType string

@description('Resource id of the Log Analytics workspace receiving diagnostics.')
param workspaceId string

@description('Tags applied to every resource.')
param tags object

// Built-in data roles. Storage Blob Data Owner is what the Functions host needs for AzureWebJobsStorage
// (leases, deployment package); queues and tables carry Durable Functions state and the app's own tables.
var storageRoles = [
  'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
  '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
  '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
]
// The deployer's data role: `tenants import` and the other admin commands write the tenant tables.
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
// Connector relays only post messages, to one queue: Storage Queue Data Message Sender on connector-events.
var storageQueueDataMessageSenderRoleId = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
// The app's queues (gatekeeper/ingest/queue.py) and the poison queues the Functions host moves a message to
// after host.json's maxDequeueCount; functions/queues.py keeps what lands there.
var queueNames = [
  'pipeline-events'
  'pipeline-events-poison'
  'connector-events'
  'connector-events-poison'
  'slack-interactions'
  'slack-interactions-poison'
]

resource storage 'Microsoft.Storage/storageAccounts@2025-06-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    // Geo-redundant where the paired region is inside the data boundary: the audit trail survives the loss of
    // a region. Zone-redundant otherwise, so no copy leaves the boundary.
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        file: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2025-06-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-06-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource auditContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-06-01' = {
  parent: blobService
  name: auditContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Claim-check blobs: sealed pipeline events too large for a 64 KiB queue message (gatekeeper/ingest/queue.py
// LARGE_EVENTS_CONTAINER). The dispatcher deletes each after dispatch; dead-lettered ones stay for inspection.
resource largeEventsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-06-01' = {
  parent: blobService
  name: 'pipeline-events-large'
  properties: {
    publicAccess: 'None'
  }
}

// A claim-check blob outlives its message only when the message was dead-lettered; those are kept long enough
// to inspect and replay, then removed, so a stuck or abandoned event does not stay in storage for ever.
resource largeEventsLifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2025-06-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-claim-check-blobs'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${largeEventsContainer.name}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: 30
                }
              }
            }
          }
        }
      ]
    }
  }
}

// Time-based retention (WORM). Created unlocked because ARM cannot lock a policy; docs/deploy.md has the
// admin step that locks it, after which nobody (not even the subscription owner) can shorten it. A locked
// policy rejects every write but an extension, so once it is locked the deployment passes auditPolicyLocked
// and leaves the policy alone (incremental mode keeps it).
resource auditImmutability 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2025-06-01' = if (!auditPolicyLocked) {
  parent: auditContainer
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: auditImmutabilityDays
    allowProtectedAppendWrites: false
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2025-06-01' = {
  parent: storage
  name: 'default'
}

// Created here, not on first use: a relay can post before the app's first start, and the poison queues exist
// for `deadletters list` from day one.
resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2025-06-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

resource connectorEventsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2025-06-01' existing = {
  parent: queueService
  name: 'connector-events'
}

resource connectorRelaySender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(connectorRelayPrincipalId)) {
  name: guid(storage.id, 'connector-events', connectorRelayPrincipalId, storageQueueDataMessageSenderRoleId)
  scope: connectorEventsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSenderRoleId)
    principalId: connectorRelayPrincipalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    queues
  ]
}

resource deployerTableRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(storage.id, deployerPrincipalId, storageTableDataContributorRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2025-06-01' = {
  parent: storage
  name: 'default'
}

resource dataRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in storageRoles: {
    name: guid(storage.id, appPrincipalId, roleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

resource queueDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: queueService
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

resource tableDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: tableService
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output deploymentContainerUrl string = '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
output auditContainerName string = auditContainer.name
output queueNames array = queueNames
output skuName string = storage.sku.name
