# Runs the real ARM-TTK (Azure/arm-ttk, pinned by the workflows) on an unpacked Marketplace offer folder
# (mainTemplate.json + createUiDefinition.json), the way Test-AzMarketplacePackage does: the tests Partner
# Center only warns about are reported, every other failing test fails this script.
param(
    [Parameter(Mandatory = $true)][string] $OfferFolder,
    [Parameter(Mandatory = $true)][string] $TtkModule
)
$ErrorActionPreference = 'Stop'
Import-Module $TtkModule

# The warning-only tests of Test-AzMarketplacePackage (arm-ttk/Test-AzMarketplacePackage.ps1).
$warningOnly = @(
    'CreateUIDefinition-Must-Not-Have-Blanks',
    'apiVersions-Should-Be-Recent-In-Reference-Functions',
    'apiVersions-Should-Be-Recent',
    'DependsOn-Best-Practices',
    'DeploymentTemplate-Schema-Is-Correct',
    'Dynamic-Variable-References-Should-Not-Use-Concat',
    'IDs-Should-Be-Derived-From-ResourceIDs',
    'ManagedIdentityExtension-must-not-be-used',
    'Parameters-Must-Be-Referenced',
    'providers_apiVersions-Is-Not-Permitted',
    'ResourceIds-should-not-contain',
    'Template-Should-Not-Contain-Blanks',
    'VM-Images-Should-Use-Latest-Version',
    'Variables-Must-Be-Referenced',
    'URIs-Should-Be-Properly-Constructed'
)

$warnings = @(Test-AzTemplate -TemplatePath $OfferFolder -Test $warningOnly | Where-Object { -not $_.Passed })
foreach ($w in $warnings) { Write-Host "::warning::ARM-TTK $($w.Name): $($w.Errors -join '; ')" }

$results = @(Test-AzTemplate -TemplatePath $OfferFolder -Skip $warningOnly)
$results | Format-Table -Property Group, Name, Passed -AutoSize | Out-String -Width 200 | Write-Host
$failed = @($results | Where-Object { -not $_.Passed })
foreach ($f in $failed) { Write-Host "::error::ARM-TTK $($f.Name): $($f.Errors -join '; ')" }
if ($results.Count -eq 0) { Write-Host '::error::ARM-TTK ran no test'; exit 1 }
if ($failed.Count -gt 0) { exit 1 }
Write-Host "ARM-TTK: $($results.Count) tests passed, $($warnings.Count) warning(s)"
