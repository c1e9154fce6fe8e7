// App settings of an existing Function App: Gatekeeper's settings merged over the ones already there.
// A plain 'appsettings' resource replaces every setting, which would drop what an admin added after the
// first deployment (the GitHub App id, tenants' Key Vault secret references).

@description('Name of the existing Function App.')
param appName string

@description('App settings to set (name to value); they win over existing values of the same name.')
param settings object

resource app 'Microsoft.Web/sites@2025-03-01' existing = {
  name: appName
}

var existingSettings = list('${app.id}/config/appsettings', '2025-03-01').properties

resource appSettings 'Microsoft.Web/sites/config@2025-03-01' = {
  parent: app
  name: 'appsettings'
  properties: union(existingSettings, settings)
}
