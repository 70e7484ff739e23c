# The app's user-assigned identity and its least-privilege role assignments. Every assignment
# is scoped to one resource (storage account, key vault, Application Insights), never to the
# resource group or subscription.
resource "azurerm_user_assigned_identity" "app" {
  name                = local.names.user_assigned_identity
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  tags                = local.tags
}

# Host storage (timer schedule state, leases; Event Grid mode keeps no blob receipts), the model
# registry (write) and the training data (read), plus the deployment package container. The Functions host's
# identity-based AzureWebJobsStorage connection documents Storage Blob Data Owner.
resource "azurerm_role_assignment" "app_blob_data_owner" {
  scope                = azurerm_storage_account.main.id
  role_definition_name = "Storage Blob Data Owner"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}

# The blob trigger keeps its poison and internal queues in host storage.
resource "azurerm_role_assignment" "app_queue_data_contributor" {
  scope                = azurerm_storage_account.main.id
  role_definition_name = "Storage Queue Data Contributor"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}

# Telemetry with Entra ID authentication (local authentication is disabled on the component).
resource "azurerm_role_assignment" "app_metrics_publisher" {
  scope                = azurerm_application_insights.main.id
  role_definition_name = "Monitoring Metrics Publisher"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}

# Key Vault references are resolved with the app's system-assigned identity: read secrets only.
resource "azurerm_role_assignment" "app_key_vault_secrets_user" {
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_function_app_flex_consumption.main.identity[0].principal_id
  principal_type       = "ServicePrincipal"
}

# The principal running Terraform writes the generated secrets into the vault.
resource "azurerm_role_assignment" "deployer_key_vault_secrets_officer" {
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}

# The deploy workflow's smoke test uploads a CSV to training-data with the same principal
# (shared keys are disabled, so uploads need a data-plane role).
resource "azurerm_role_assignment" "deployer_blob_data_contributor" {
  scope                = azurerm_storage_account.main.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = data.azurerm_client_config.current.object_id
}
