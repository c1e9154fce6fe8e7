// What pages the operators: an action group (their mail, and a Teams webhook when one is given) and log
// alert rules on the Application Insights component, reading the custom events the app emits
// (gatekeeper/telemetry.py; docs/telemetry.md, "Alert rules"). tests/infra/test_alert_rules.py checks every
// query reads only events and fields the code emits.

@description('Azure region of the alert rules (the action group is global).')
param location string

@description('Prefix of the alert resources\' names.')
param name string

@description('Resource id of the Application Insights component the rules query.')
param appInsightsId string

@description('Mail address (or distribution list) of the operators who are paged.')
@minLength(3)
@maxLength(254)
param operatorEmail string

@description('Teams incoming webhook (Workflows) URL that also receives the alerts; empty: mail only.')
@secure()
param teamsWebhookUrl string = ''

@description('Minutes a gate may wait past its stage deadline before it counts as stuck.')
@minValue(5)
@maxValue(1440)
param stuckGateGraceMinutes int = 30

@description('Percent of a route\'s executions that may fail (failed executions plus handled 5xx answers) in 15 minutes before it alerts.')
@minValue(1)
@maxValue(100)
param routeFailureThresholdPercent int = 10

@description('Executions a route needs in 15 minutes before its failure rate is judged.')
@minValue(1)
@maxValue(10000)
param routeMinimumRequests int = 10

@description('Tags applied to every resource.')
param tags object

var teamsReceiver = {
  name: 'teams'
  serviceUri: teamsWebhookUrl
  useCommonAlertSchema: true
}
var teamsReceivers = empty(teamsWebhookUrl) ? [] : [ teamsReceiver ]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: '${name}-operators'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'gatekeeper'
    enabled: true
    emailReceivers: [
      {
        name: 'operators'
        emailAddress: operatorEmail
        useCommonAlertSchema: true
      }
    ]
    webhookReceivers: teamsReceivers
  }
}

// A pipeline was never told the gate's answer: every retry of its callback failed.
var callbackFailedQuery = '''
customEvents
| where name == "CallbackFailed"
| where tostring(customDimensions.final) =~ "true"
| summarize failures = sum(itemCount) by tenant = tostring(customDimensions.tenant)
'''

// A queue message was kept as a dead letter: moved to <queue>-poison after its retries, or refused as bad.
var deadLetterQuery = '''
customEvents
| where name == "DeadLettered"
| summarize deadLetters = sum(itemCount) by queue = tostring(customDimensions.queue), cause = tostring(customDimensions.cause)
'''

// A gate whose latest approval stage is past its deadline plus the grace period, with no decision, no outcome
// and no later stage: the orchestration did not act on its own timer.
var stuckGateQuery = format(
  '''
let graceMinutes = {0};
let closed = customEvents
| where name in ("ApprovalDecided", "GateOutcome")
| distinct instance_id = tostring(customDimensions.instance_id);
customEvents
| where name == "ApprovalRequested"
| extend instance_id = tostring(customDimensions.instance_id), tenant = tostring(customDimensions.tenant)
| extend deadlineSeconds = todouble(customMeasurements.deadline_seconds)
| summarize arg_max(timestamp, deadlineSeconds) by instance_id, tenant
| where timestamp + 1s * deadlineSeconds + 1m * graceMinutes < now()
| join kind=leftanti closed on instance_id
| summarize stuckGates = count() by tenant
''',
  stuckGateGraceMinutes
)

// Any route (HTTP path, or the function's name for queue and timer triggers) whose failed executions plus
// handled 5xx answers pass the threshold.
var routeFailureQuery = format(
  '''
let handled = customEvents
| where name == "IngestRejected"
| where toint(customDimensions.status) >= 500
| summarize handled = sum(itemCount) by route = tostring(customDimensions.route);
requests
| extend route = iff(isempty(url), name, tostring(parse_url(url).Path))
| summarize total = sum(itemCount), failed = sumif(itemCount, success == false) by route
| join kind=leftouter handled on route
| extend failures = failed + coalesce(handled, long(0))
| where total >= {0}
| extend failurePercent = round(100.0 * failures / total, 1)
| project route, failurePercent, failures, total
''',
  routeMinimumRequests
)

// Key Vault did not unwrap a tenant's data key: a wrong or deleted key, or Key Vault down or throttling.
var keyUnwrapQuery = '''
customEvents
| where name == "KeyUnwrapFailed"
| summarize failures = sum(itemCount) by tenant = tostring(customDimensions.tenant), kind = tostring(customDimensions.kind)
'''

var rules = [
  {
    key: 'callback-failed'
    displayName: 'Gatekeeper: pipeline callback failed after retries'
    description: 'A gate\'s answer never reached its pipeline (GitHub, Azure DevOps or webhook): every retry failed. The pipeline waits until its own timeout; answer it by hand and check the callback target.'
    severity: 1
    frequency: 'PT5M'
    window: 'PT15M'
    query: callbackFailedQuery
    measure: 'failures'
    aggregation: 'Total'
    threshold: 0
    dimensions: [
      'tenant'
    ]
  }
  {
    key: 'dead-letter'
    displayName: 'Gatekeeper: message dead-lettered'
    description: 'A queue message was moved to a poison queue after its retries, or refused as permanently bad; it is kept in gkDeadLetters (gatekeeper deadletters list).'
    severity: 1
    frequency: 'PT5M'
    window: 'PT15M'
    query: deadLetterQuery
    measure: 'deadLetters'
    aggregation: 'Total'
    threshold: 0
    dimensions: [
      'queue'
      'cause'
    ]
  }
  {
    key: 'stuck-gate'
    displayName: 'Gatekeeper: gate waiting past its deadline'
    description: 'A gate\'s approval stage is past its deadline plus the grace period and nothing decided it: the orchestration is stuck. Check the instance in the Durable task hub.'
    severity: 2
    frequency: 'PT1H'
    window: 'P2D'
    query: stuckGateQuery
    measure: 'stuckGates'
    aggregation: 'Total'
    threshold: 0
    dimensions: [
      'tenant'
    ]
  }
  {
    key: 'route-failure-rate'
    displayName: 'Gatekeeper: route failure rate above threshold'
    description: 'A route\'s failed executions plus handled 5xx answers passed the threshold percentage of its executions.'
    severity: 2
    frequency: 'PT5M'
    window: 'PT15M'
    query: routeFailureQuery
    measure: 'failurePercent'
    aggregation: 'Maximum'
    threshold: routeFailureThresholdPercent
    dimensions: [
      'route'
    ]
  }
  {
    key: 'key-unwrap-failed'
    displayName: 'Gatekeeper: Key Vault unwrap failures'
    description: 'Key Vault did not unwrap a tenant\'s data key (refused: wrong or damaged key; gone: the key was deleted; unavailable: Key Vault down or throttling). The tenant\'s sealed data cannot be read meanwhile.'
    severity: 1
    frequency: 'PT5M'
    window: 'PT15M'
    query: keyUnwrapQuery
    measure: 'failures'
    aggregation: 'Total'
    threshold: 0
    dimensions: [
      'tenant'
      'kind'
    ]
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in rules: {
    name: '${name}-${rule.key}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        appInsightsId
      ]
      evaluationFrequency: rule.frequency
      windowSize: rule.window
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: rule.aggregation
            metricMeasureColumn: rule.measure
            dimensions: [
              for dimension in rule.dimensions: {
                name: dimension
                operator: 'Include'
                values: [
                  '*'
                ]
              }
            ]
            operator: 'GreaterThan'
            threshold: rule.threshold
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      autoMitigate: false
      actions: {
        actionGroups: [
          actionGroup.id
        ]
      }
    }
  }
]

output actionGroupId string = actionGroup.id
output alertRuleNames array = [for (rule, i) in rules: alertRules[i].name]
