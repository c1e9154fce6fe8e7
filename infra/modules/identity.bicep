// The Function App's user-assigned managed identity. User-assigned (not system-assigned) so that role
// assignments exist before the app starts and survive a redeployment of the app.

@description('Azure region of the identity (no default: the main template passes its location).')
param location string

@description('Name of the user-assigned managed identity.')
param name string

@description('Tags applied to the identity.')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
