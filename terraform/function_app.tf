# The Rust custom handler on Flex Consumption (Linux, FC1). Deployment: a zip in the
# app-package container, read by the platform with the user-assigned identity.
resource "azurerm_service_plan" "main" {
  #checkov:skip=CKV_AZURE_212:Flex Consumption has no plan-level worker count; warm capacity is the app's always-ready setting (http_always_ready_instances).
  #checkov:skip=CKV_AZURE_225:Zone redundancy on Flex Consumption is available only in some regions and costs always-ready instances; a scale-to-zero demo service accepts a zonal outage.
  name                = local.names.service_plan
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  os_type             = "Linux"
  sku_name            = "FC1"
  tags                = local.tags
}

resource "azurerm_function_app_flex_consumption" "main" {
  name                = local.names.function_app
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  service_plan_id     = azurerm_service_plan.main.id

  runtime_name    = var.function_runtime_name
  runtime_version = var.function_runtime_version

  storage_container_type            = "blobContainer"
  storage_container_endpoint        = local.package_container_url
  storage_authentication_type       = "UserAssignedIdentity"
  storage_user_assigned_identity_id = azurerm_user_assigned_identity.app.id

  instance_memory_in_mb  = var.function_instance_memory_mb
  maximum_instance_count = var.function_maximum_instance_count
  http_concurrency       = var.function_http_concurrency

  # Flex Consumption scales every HTTP function as one group named `http` (`function:<name>`
  # groups exist only for triggers outside the http, blob and durable groups).
  dynamic "always_ready" {
    for_each = var.http_always_ready_instances > 0 ? [var.http_always_ready_instances] : []
    content {
      name           = "http"
      instance_count = always_ready.value
    }
  }

  # User-assigned: storage, telemetry and the app's own Azure calls (SOMMELIER_IDENTITY_CLIENT_ID).
  # System-assigned: Key Vault references (the resource cannot select another identity for them).
  identity {
    type         = "SystemAssigned, UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.app.id]
  }

  # Regional VNet integration: outbound traffic, including the metric pushes to the monitoring
  # VM's private address, leaves through the delegated subnet.
  virtual_network_subnet_id = azurerm_subnet.functions.id

  https_only                                     = true
  public_network_access_enabled                  = true
  webdeploy_publish_basic_authentication_enabled = false
  client_certificate_enabled                     = false

  site_config {
    application_insights_connection_string = azurerm_application_insights.main.connection_string
    minimum_tls_version                    = "1.2"
    http2_enabled                          = true
  }

  app_settings = local.app_settings

  tags = local.tags

  # The platform reads the deployment container and host storage with the identity from the
  # first start: grant the roles before the app exists.
  depends_on = [
    azurerm_role_assignment.app_blob_data_owner,
    azurerm_role_assignment.app_queue_data_contributor,
    azurerm_role_assignment.app_metrics_publisher,
  ]
}

# azurerm writes an `AzureWebJobsStorage` connection string with an empty key on every create
# and every in-place update of a Flex Consumption app, and hides it on read (open provider
# issues hashicorp/terraform-provider-azurerm#29693, #29149, #33211). The host would prefer it
# over the identity-based `AzureWebJobsStorage__*` settings and fail (shared keys are
# disabled). This step runs at the end of every apply, after any update of the app: it deletes
# the setting with the Azure CLI and, once phase 2 is on, waits until the app answers again, so
# that the Event Grid subscription below is validated against working host storage.
# Needs `az` logged in to the subscription and `curl` where Terraform runs.
resource "terraform_data" "remove_injected_storage_setting" {
  triggers_replace = [timestamp()]

  provisioner "local-exec" {
    command = "bash ${path.module}/scripts/remove-injected-storage-setting.sh"
    environment = {
      RESOURCE_GROUP = azurerm_resource_group.main.name
      FUNCTION_APP   = azurerm_function_app_flex_consumption.main.name
      HEALTH_URL     = var.enable_blob_trigger_subscription ? "https://${azurerm_function_app_flex_consumption.main.default_hostname}/api/health" : ""
    }
  }

  # The restart that deleting the setting causes resolves the app's Key Vault references, so
  # it comes after the roles that let the app's identity read them are assigned (Key Vault may
  # honour them minutes later: the smoke test restarts the app while health names one).
  depends_on = [azurerm_function_app_flex_consumption.main, azurerm_role_assignment.app_key_vault_secrets_user]
}
