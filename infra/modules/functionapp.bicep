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

@description('Endpoint of the Event Grid topic the gate lifecycle events are published to (CloudEvents 1.0).')
param eventGridTopicEndpoint string

@description('URL of the released app package (zip with .python_packages) that the onedeploy extension installs; empty to deploy the code some other way (azd deploys from source).')
param packageUri string

@description('GitHub REST API base URL: https://api.github.com, or https://<host>/api/v3 for GitHub Enterprise Server.')
param githubApiUrl string

@description('Log Analytics query API of the cloud (the post-deploy watch\'s KQL probes).')
param logAnalyticsApiUrl string

@description('The deployment\'s data boundary (EU, US or any), recorded for the app: it refuses tenants that require another one.')
param dataBoundary string

@description('Gatekeeper id of the first managed tenant the app imports on its first start; empty for none.')
param firstTenantId string

@description('Display name of the first managed tenant.')
param firstTenantName string

@description('Entra ID tenant id of the first managed tenant.')
param firstTenantEntraId string

@description('Operators\' mail addresses of the first managed tenant (comma-separated).')
param operatorsMail string

@description('Whether the first tenant deploys with GitHub.')
param useGitHub bool

@description('Whether the first tenant deploys with Azure DevOps.')
param useAzureDevOps bool

@description('Tags applied to every resource.')
param tags object

var loginEndpoint = environment().authentication.loginEndpoint
// The Teams app (infra/teams/manifest.json) whose activity types the notifications use.
var teamsManifest = loadJsonContent('../teams/manifest.json')
var authorityHost = endsWith(loginEndpoint, '/') ? substring(loginEndpoint, 0, length(loginEndpoint) - 1) : loginEndpoint

resource plan 'Microsoft.Web/serverfarms@2025-03-01' = {
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

resource app 'Microsoft.Web/sites@2025-03-01' = {
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

// Every app setting Gatekeeper owns. Platform settings first, then Gatekeeper's own (gatekeeper/settings.py).
var appSettings = {
  // Functions host storage through the managed identity (no connection string: shared keys are off).
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: blobEndpoint
  AzureWebJobsStorage__queueServiceUri: queueEndpoint
  AzureWebJobsStorage__tableServiceUri: tableEndpoint
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  AZURE_CLIENT_ID: identityClientId
  // Gatekeeper uses no pydantic plugin; without this, the first model a new instance builds scans the metadata
  // of every installed distribution for one (docs/cold-start.md).
  PYDANTIC_DISABLE_PLUGINS: '__all__'
  GATEKEEPER_STORAGE_ACCOUNT: storageAccountName
  // The cloud's storage DNS suffix: sovereign clouds have their own.
  GATEKEEPER_STORAGE_ENDPOINT_SUFFIX: environment().suffixes.storage
  GATEKEEPER_TASK_HUB: 'GatekeeperHub'
  GATEKEEPER_KEY_MODE: 'keyvault'
  GATEKEEPER_KEY_VAULT_URL: keyVaultUri
  GATEKEEPER_MAX_BODY_BYTES: '1048576'
  GATEKEEPER_TENANT_CACHE_SECONDS: '60'
  GATEKEEPER_ENTRA_AUDIENCE: '${teamsAppClientId},api://${teamsAppClientId}'
  GATEKEEPER_ENTRA_AUTHORITY_HOST: authorityHost
  GATEKEEPER_ENTRA_JWKS_CACHE_SECONDS: '3600'
  // GitHub Actions jobs ask for action approvals with their OIDC token (id-token: write), audience below.
  GATEKEEPER_GITHUB_OIDC_AUDIENCE: 'api://${teamsAppClientId}/github-actions'
  GATEKEEPER_GITHUB_OIDC_ISSUER: 'https://token.actions.githubusercontent.com'
  // App Service authentication (authsettingsV2 below) strips client-sent principal headers.
  GATEKEEPER_TRUST_EASYAUTH_HEADER: 'true'
  // Notifications link to <base>/api/approvals/<gate id>.
  GATEKEEPER_APPROVAL_BASE_URL: 'https://${app.properties.defaultHostName}'
  GATEKEEPER_TEAMS_APP_ID: teamsManifest.id
  // The Azure Bot (Teams approval cards) uses the user-assigned managed identity as its app identity.
  GATEKEEPER_BOT_APP_ID: identityClientId
  GATEKEEPER_BOT_TENANT_ID: tenant().tenantId
  GATEKEEPER_BOT_SERVICE_URL: 'https://smba.trafficmanager.net/teams/'
  GATEKEEPER_BOT_OPENID_METADATA: 'https://login.botframework.com/v1/.well-known/openidconfiguration'
  GATEKEEPER_GRAPH_BASE_URL: '${environment().graph}v1.0'
  // Group-overage lookups read the directory the managed identity lives in.
  GATEKEEPER_GRAPH_TENANT_ID: tenant().tenantId
  GATEKEEPER_NOTIFY_MODE: 'graph'
  GATEKEEPER_MAIL_SENDER: mailSenderAddress
  GATEKEEPER_DATA_KEY_CACHE_SECONDS: string(dataKeyCacheSeconds)
  // Longer than a queued message lives (Azure's default TTL, 7 days): docs/encryption.md, "Transit keys".
  GATEKEEPER_TRANSIT_KEY_RETENTION_DAYS: '30'
  GATEKEEPER_AUDIT_CONTAINER: auditContainerName
  GATEKEEPER_CHECKPOINT_KEY_NAME: checkpointKeyName
  GATEKEEPER_CHECKPOINT_EVERY: '100'
  GATEKEEPER_CHECKPOINT_MINUTES: '15'
  GATEKEEPER_GITHUB_APP_KEY_NAME: githubAppKeyName
  // A parameter, so a GitHub Enterprise Server URL survives redeployments (the template's values win the merge).
  GATEKEEPER_GITHUB_API_URL: githubApiUrl
  GATEKEEPER_CALLBACK_MAX_ATTEMPTS: '5'
  // KQL probes of the post-deploy watch (the managed identity needs Log Analytics Reader on the workspaces).
  GATEKEEPER_LOG_ANALYTICS_ENDPOINT: logAnalyticsApiUrl
  // The event mesh: gate lifecycle CloudEvents, published with the managed identity (EventGrid Data Sender).
  GATEKEEPER_EVENTGRID_TOPIC_ENDPOINT: eventGridTopicEndpoint
  // Issue 17: the stamp's data boundary, and the first tenant the app imports idempotently on first start
  // (with the example policy). The app half of issue 17 declares these in gatekeeper/settings.py.
  GATEKEEPER_DATA_BOUNDARY: dataBoundary
  GATEKEEPER_BOOTSTRAP_TENANT_ID: firstTenantId
  GATEKEEPER_BOOTSTRAP_TENANT_NAME: firstTenantName
  GATEKEEPER_BOOTSTRAP_TENANT_ENTRA_ID: firstTenantEntraId
  GATEKEEPER_BOOTSTRAP_TENANT_OPERATORS: operatorsMail
  GATEKEEPER_BOOTSTRAP_TENANT_GITHUB: useGitHub ? 'true' : 'false'
  GATEKEEPER_BOOTSTRAP_TENANT_AZURE_DEVOPS: useAzureDevOps ? 'true' : 'false'
}

// Written through a module that keeps settings an admin added by hand (GATEKEEPER_GITHUB_APP_ID, tenants'
// Key Vault references), so a redeployment does not remove them.
module settings 'appsettings.bicep' = {
  name: 'gatekeeper-appsettings'
  params: {
    appName: app.name
    settings: appSettings
  }
}

// The released app package, installed by the onedeploy extension: the documented way to deploy code to a Flex
// Consumption app from a template (it stores the zip in the deployment container above). The package holds
// its Python dependencies (.python_packages, built for Linux and Python 3.11 by the release workflow), so
// no remote build runs. After the app settings, so the first start reads them.
resource packageDeployment 'Microsoft.Web/sites/extensions@2025-03-01' = if (!empty(packageUri)) {
  parent: app
  name: 'onedeploy'
  properties: {
    packageUri: packageUri
    remoteBuild: false
  }
  dependsOn: [
    settings
  ]
}

// App Service authentication: signs approvers in with Entra ID on the approval page and sets a trusted
// X-MS-CLIENT-PRINCIPAL header. Anonymous requests still reach the app, because webhooks authenticate
// with signatures and keys, and each route decides what it requires.
//
// Login redirect for the approval page only: authsettingsV2 cannot say "redirect for this path". Its one
// path list, globalValidation.excludedPaths, is an exclusion list with a trailing-wildcard prefix at most,
// so a platform redirect would have to cover /api/approvals/{id} (JSON, bearer tokens) and .../decisions too,
// and every webhook route added later would start answering 302 unless someone remembered to exclude it. So
// the platform allows anonymous requests, and GET /api/approvals/{id}/page itself answers a browser that has
// no App Service session with 302 to /.auth/login/aad?post_login_redirect_uri=/api/approvals/{id}/page.
// /.auth/login/aad works in this mode because the Entra ID provider below is configured.
//
// /api/messages is listed in excludedPaths as a precaution: the Bot Connector's bearer tokens are issued by
// the Bot Framework for the bot's app id, not by this tenant for the app registration, so the platform has
// no say on them; the bot validates them itself (Agents SDK, GATEKEEPER_BOT_OPENID_METADATA) and never
// reads X-MS-CLIENT-PRINCIPAL.
resource authSettings 'Microsoft.Web/sites/config@2025-03-01' = {
  parent: app
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
      excludedPaths: [
        '/api/messages'
      ]
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: teamsAppClientId
          openIdIssuer: '${loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            teamsAppClientId
            'api://${teamsAppClientId}'
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

// Deployments use Entra ID (azd, the release workflow); basic publishing credentials stay off.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2025-03-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2025-03-01' = {
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
output approvalBaseUrl string = 'https://${app.properties.defaultHostName}'
