# Azure Monitor, the second alerting plane: it watches the app from outside the monitoring VM
# (availability from several regions, server errors, failed requests), notices when the VM plane
# goes blind (the app's pushes to the Pushgateway keep failing) and watches the VM itself.
# Alerts go to one action group; the VM's Alertmanager gets the same people through the
# Ansible inventory, its secrets kept in Key Vault.

locals {
  alert_emails_set            = nonsensitive(length(var.alert_email_addresses) > 0)
  alert_email_count           = nonsensitive(length(var.alert_email_addresses))
  alert_webhook_set           = nonsensitive(var.alert_webhook_url != "")
  alertmanager_smtp_set       = nonsensitive(var.alertmanager_smtp_password != "")
  alertmanager_slack_set      = nonsensitive(var.alertmanager_slack_webhook_url != "")
  alertmanager_webhook_set    = nonsensitive(var.alertmanager_webhook_url != "")
  alertmanager_heartbeat_set  = nonsensitive(var.alertmanager_heartbeat_url != "")
  health_url                  = "https://${azurerm_function_app_flex_consumption.main.default_hostname}/api/health"
  function_app_metrics_source = "Microsoft.Web/sites"
}

resource "azurerm_monitor_action_group" "main" {
  name                = "ag-${trimprefix(local.names.resource_group, "rg-")}"
  resource_group_name = azurerm_resource_group.main.name
  short_name          = "sommelier"

  # The common alert schema is one JSON shape for every alert type; a chat tool needs a Logic
  # App or workflow in between to render it.
  dynamic "email_receiver" {
    for_each = range(local.alert_email_count)
    content {
      name                    = "email-${email_receiver.value}"
      email_address           = var.alert_email_addresses[email_receiver.value]
      use_common_alert_schema = true
    }
  }

  dynamic "webhook_receiver" {
    for_each = local.alert_webhook_set ? [1] : []
    content {
      name                    = "webhook"
      service_uri             = var.alert_webhook_url
      use_common_alert_schema = true
    }
  }

  tags = local.tags
}

# ---------------------------------------------------------------------------------------------
# The app, from outside
# ---------------------------------------------------------------------------------------------

# GET /api/health (anonymous) from several regions; billed per run.
resource "azurerm_application_insights_standard_web_test" "health" {
  name                    = "${local.names.application_insights}-health"
  resource_group_name     = azurerm_resource_group.main.name
  location                = azurerm_application_insights.main.location
  application_insights_id = azurerm_application_insights.main.id
  description             = "GET /api/health of the function app answers 200."
  enabled                 = true
  frequency               = var.availability_test_frequency
  timeout                 = 30
  retry_enabled           = true
  geo_locations           = var.availability_test_locations

  request {
    url                              = local.health_url
    http_verb                        = "GET"
    follow_redirects_enabled         = false
    parse_dependent_requests_enabled = false
  }

  validation_rules {
    expected_status_code        = 200
    ssl_check_enabled           = true
    ssl_cert_remaining_lifetime = 7
  }

  tags = local.tags
}

resource "azurerm_monitor_metric_alert" "availability" {
  name                = "${local.names.application_insights}-health-failing"
  resource_group_name = azurerm_resource_group.main.name
  description         = "GET /api/health failed from at least ${var.availability_failed_locations} test locations. Runbook: monitoring/README.md, section Azure Monitor."
  # Both the test and the component: the alert is refused with the test alone.
  scopes      = [azurerm_application_insights_standard_web_test.health.id, azurerm_application_insights.main.id]
  severity    = 1
  frequency   = "PT1M"
  window_size = "PT5M"

  application_insights_web_test_location_availability_criteria {
    web_test_id           = azurerm_application_insights_standard_web_test.health.id
    component_id          = azurerm_application_insights.main.id
    failed_location_count = var.availability_failed_locations
  }

  action {
    action_group_id = azurerm_monitor_action_group.main.id
  }

  tags = local.tags
}

# The platform's count of 5xx answers. That Flex Consumption apps emit Http5xx is to be checked
# after the first deployment (az monitor metrics list-definitions --resource <app id>): with
# skip_metric_validation left false, a metric the resource does not have fails the apply.
resource "azurerm_monitor_metric_alert" "http_5xx" {
  name                = "${local.names.function_app}-http5xx"
  resource_group_name = azurerm_resource_group.main.name
  description         = "More than ${var.http_5xx_threshold} server errors (5xx) in 5 minutes. Runbook: monitoring/README.md, section Azure Monitor."
  scopes              = [azurerm_function_app_flex_consumption.main.id]
  severity            = 2
  frequency           = "PT1M"
  window_size         = "PT5M"

  criteria {
    metric_namespace = local.function_app_metrics_source
    metric_name      = "Http5xx"
    aggregation      = "Total"
    operator         = "GreaterThan"
    threshold        = var.http_5xx_threshold
  }

  action {
    action_group_id = azurerm_monitor_action_group.main.id
  }

  tags = local.tags
}

# Failed requests as Application Insights records them (any function, any status the host
# counts as a failure).
resource "azurerm_monitor_scheduled_query_rules_alert_v2" "failed_requests" {
  name                 = "${local.names.application_insights}-failed-requests"
  resource_group_name  = azurerm_resource_group.main.name
  location             = azurerm_application_insights.main.location
  description          = "More than ${var.failed_requests_threshold} failed requests in 15 minutes. Runbook: monitoring/README.md, section Azure Monitor."
  scopes               = [azurerm_application_insights.main.id]
  severity             = 2
  evaluation_frequency = "PT5M"
  window_duration      = "PT15M"
  # Resolves by itself once the condition clears (the default, false, never resolves).
  auto_mitigation_enabled = true

  criteria {
    query                   = "requests\n| where success == false\n| project timestamp, name, resultCode"
    time_aggregation_method = "Count"
    operator                = "GreaterThan"
    threshold               = var.failed_requests_threshold

    failing_periods {
      minimum_failing_periods_to_trigger_alert = 1
      number_of_evaluation_periods             = 1
    }
  }

  action {
    action_groups = [azurerm_monitor_action_group.main.id]
  }

  tags = local.tags
}

# The VM plane going blind: the app logs each failed or refused push on stderr, which the
# Functions host records as an error trace. At the default 15 s interval an instance pushes 60
# times in 15 minutes.
resource "azurerm_monitor_scheduled_query_rules_alert_v2" "push_failures" {
  name                    = "${local.names.application_insights}-push-failures"
  resource_group_name     = azurerm_resource_group.main.name
  location                = azurerm_application_insights.main.location
  description             = "The app's pushes to the Pushgateway keep failing: Prometheus and Grafana see nothing new. Runbook: monitoring/README.md, section Azure Monitor."
  scopes                  = [azurerm_application_insights.main.id]
  severity                = 2
  evaluation_frequency    = "PT5M"
  window_duration         = "PT15M"
  auto_mitigation_enabled = true

  criteria {
    query                   = "traces\n| where message has \"pushgateway\" and message has \"push\"\n| where message has \"failed\" or message has \"refused\"\n| project timestamp, message"
    time_aggregation_method = "Count"
    operator                = "GreaterThan"
    threshold               = var.push_failures_threshold

    failing_periods {
      minimum_failing_periods_to_trigger_alert = 1
      number_of_evaluation_periods             = 1
    }
  }

  action {
    action_groups = [azurerm_monitor_action_group.main.id]
  }

  tags = local.tags
}

# ---------------------------------------------------------------------------------------------
# The monitoring VM
# ---------------------------------------------------------------------------------------------

# 1 while the VM runs, 0 when the platform finds it unavailable.
resource "azurerm_monitor_metric_alert" "monitoring_vm_availability" {
  name                = "${local.names.virtual_machine}-unavailable"
  resource_group_name = azurerm_resource_group.main.name
  description         = "The monitoring VM is unavailable: Prometheus, Alertmanager and Grafana are down. Runbook: monitoring/README.md, section Azure Monitor."
  scopes              = [azurerm_linux_virtual_machine.monitoring.id]
  severity            = 1
  frequency           = "PT1M"
  window_size         = "PT5M"

  criteria {
    metric_namespace = "Microsoft.Compute/virtualMachines"
    metric_name      = "VmAvailabilityMetric"
    aggregation      = "Average"
    operator         = "LessThan"
    threshold        = 1
  }

  action {
    action_group_id = azurerm_monitor_action_group.main.id
  }

  tags = local.tags
}

# A VM stopped through the API has no availability value at all (the metric alert stays
# quiet): Resource Health reports it.
resource "azurerm_monitor_activity_log_alert" "monitoring_vm_health" {
  name                = "${local.names.virtual_machine}-health"
  resource_group_name = azurerm_resource_group.main.name
  location            = "global"
  description         = "Resource Health reports the monitoring VM degraded, unavailable or unknown. Runbook: monitoring/README.md, section Azure Monitor."
  scopes              = [azurerm_linux_virtual_machine.monitoring.id]

  criteria {
    category = "ResourceHealth"

    resource_health {
      current = ["Degraded", "Unavailable", "Unknown"]
    }
  }

  action {
    action_group_id = azurerm_monitor_action_group.main.id
  }

  tags = local.tags
}

# ---------------------------------------------------------------------------------------------
# The receivers' secrets, for the VM's Alertmanager (handed over in the Ansible inventory)
# ---------------------------------------------------------------------------------------------

resource "azurerm_key_vault_secret" "alert_email_addresses" {
  #checkov:skip=CKV_AZURE_41:The receivers change with the on-call rota, through this variable; an expiry date would not rotate anything.
  count        = local.alert_emails_set ? 1 : 0
  name         = "alert-email-addresses"
  value        = join(", ", var.alert_email_addresses)
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/plain"
  tags         = local.tags

  depends_on = [terraform_data.deployer_key_vault_access]
}

resource "azurerm_key_vault_secret" "alertmanager_smtp_password" {
  #checkov:skip=CKV_AZURE_41:The relay's password is rotated at the relay and then here, through the variable; an expiry date would not rotate anything.
  count        = local.alertmanager_smtp_set ? 1 : 0
  name         = "alertmanager-smtp-password"
  value        = var.alertmanager_smtp_password
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/plain"
  tags         = local.tags

  depends_on = [terraform_data.deployer_key_vault_access]
}

resource "azurerm_key_vault_secret" "alertmanager_slack_webhook_url" {
  #checkov:skip=CKV_AZURE_41:A Slack webhook lives until it is revoked in Slack; it is replaced through the variable.
  count        = local.alertmanager_slack_set ? 1 : 0
  name         = "alertmanager-slack-webhook-url"
  value        = var.alertmanager_slack_webhook_url
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/uri-list"
  tags         = local.tags

  depends_on = [terraform_data.deployer_key_vault_access]
}

resource "azurerm_key_vault_secret" "alertmanager_webhook_url" {
  #checkov:skip=CKV_AZURE_41:A webhook URL lives until it is revoked at its service; it is replaced through the variable.
  count        = local.alertmanager_webhook_set ? 1 : 0
  name         = "alertmanager-webhook-url"
  value        = var.alertmanager_webhook_url
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/uri-list"
  tags         = local.tags

  depends_on = [terraform_data.deployer_key_vault_access]
}

resource "azurerm_key_vault_secret" "alertmanager_heartbeat_url" {
  #checkov:skip=CKV_AZURE_41:A heartbeat URL lives until it is revoked at the heartbeat service; it is replaced through the variable.
  count        = local.alertmanager_heartbeat_set ? 1 : 0
  name         = "alertmanager-heartbeat-url"
  value        = var.alertmanager_heartbeat_url
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/uri-list"
  tags         = local.tags

  depends_on = [terraform_data.deployer_key_vault_access]
}
