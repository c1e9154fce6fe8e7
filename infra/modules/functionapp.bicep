// The Function App on the Flex Consumption plan (Linux, Python 3.11), running as the user-assigned identity.
// Its app settings are the deployment side of the contract in gatekeeper/settings.py; a test
// (tests/infra/test_app_settings_contract.py) checks that both lists agree.

@description('Azure region of the plan and the app.')
param location string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Name of the Function App.')
param appName string

@description('Resource id of the user-assigned managed identity the app runs as.')
param identityId string

@description('Client id of the user-assigned managed identity.')
param identityClientId string

@description('Name of the storage account (host storage, Durable Functions, tenant tables).')
param storageAccountName string

@description('Blob endpoint of the storage account.')
param blobEndpoint string

@description('Queue endpoint of the storage account.')
param queueEndpoint string

@description('Table endpoint of the storage account.')
param tableEndpoint string

@description('URL of the blob container that holds the deployment package.')
param deploymentContainerUrl string

@description('Name of the immutable container for audit checkpoints.')
param auditContainerName string

@description('Key Vault URI.')
param keyVaultUri string

@description('Name of the audit checkpoint signing key.')
param checkpointKeyName string

@description('Name of the GitHub App private key in Key Vault.')
param githubAppKeyName string

@description('Application Insights connection string (no secret: local auth is disabled).')
param appInsightsConnectionString string

@description('Entra ID group whose members may approve deployments.')
param approverGroupObjectId string

@description('Client id of the Entra ID app registration of the Teams app and approval page.')
param teamsAppClientId string

@description('Mailbox that sends approval mails when Teams is not reachable.')
param mailSenderAddress string

@description('Seconds an unwrapped tenant data key stays cached in memory.')
param dataKeyCacheSeconds int

@description('Largest number of instances the app scales out to.')
param maximumInstanceCount int

@description('Memory of each instance in MB.')
param instanceMemoryMB int

@description('Resource id of the Log Analytics workspace receiving diagnostics.')
param workspaceId string

@description('Tags applied to every resource.')
param tags object

var loginEndpoint = environment().authentication.loginEndpoint
var authorityHost = endsWith(loginEndpoint, '/') ? substring(loginEndpoint, 0, length(loginEndpoint) - 1) : loginEndpoint

resource plan 'Microsoft.Web/serverfarms@2024-11-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-11-01' = {
  name: appName
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // Every app setting. Platform settings first, then Gatekeeper's own (gatekeeper/settings.py).
      appSettings: [
        // Functions host storage through the managed identity (no connection string: shared keys are off).
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: blobEndpoint
        }
        {
          name: 'AzureWebJobsStorage__queueServiceUri'
          value: queueEndpoint
        }
        {
          name: 'AzureWebJobsStorage__tableServiceUri'
          value: tableEndpoint
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsightsConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
        {
          name: 'GATEKEEPER_STORAGE_ACCOUNT'
          value: storageAccountName
        }
        {
          name: 'GATEKEEPER_TASK_HUB'
          value: 'GatekeeperHub'
        }
        {
          name: 'GATEKEEPER_KEY_MODE'
          value: 'keyvault'
        }
        {
          name: 'GATEKEEPER_KEY_VAULT_URL'
          value: keyVaultUri
        }
        {
          name: 'GATEKEEPER_MAX_BODY_BYTES'
          value: '1048576'
        }
        {
          name: 'GATEKEEPER_TENANT_CACHE_SECONDS'
          value: '60'
        }
        {
          name: 'GATEKEEPER_ENTRA_AUDIENCE'
          value: teamsAppClientId
        }
        {
          name: 'GATEKEEPER_ENTRA_AUTHORITY_HOST'
          value: authorityHost
        }
        {
          name: 'GATEKEEPER_APPROVER_GROUP_ID'
          value: approverGroupObjectId
        }
        {
          name: 'GATEKEEPER_APPROVAL_BASE_URL'
          value: 'https://${appName}.azurewebsites.net/api/approvals'
        }
        {
          name: 'GATEKEEPER_MAIL_SENDER'
          value: mailSenderAddress
        }
        {
          name: 'GATEKEEPER_DATA_KEY_CACHE_SECONDS'
          value: string(dataKeyCacheSeconds)
        }
        {
          name: 'GATEKEEPER_AUDIT_CONTAINER'
          value: auditContainerName
        }
        {
          name: 'GATEKEEPER_CHECKPOINT_KEY_NAME'
          value: checkpointKeyName
        }
        {
          name: 'GATEKEEPER_GITHUB_APP_KEY_NAME'
          value: githubAppKeyName
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Deployments use Entra ID (azd, the release workflow); basic publishing credentials stay off.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-11-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-11-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

resource appDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: app
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'FunctionAppLogs'
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

output id string = app.id
output name string = app.name
output hostName string = app.properties.defaultHostName
output approvalBaseUrl string = 'https://${app.properties.defaultHostName}/api/approvals'
