# The app's user-assigned identity and its least-privilege role assignments. Every assignment
# is scoped to one resource (storage account, container, secret, Application Insights), never to
# the resource group or subscription.
resource "azurerm_user_assigned_identity" "app" {
  name                = local.names.user_assigned_identity
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  tags                = local.tags
}

# Host storage (timer schedule state, leases; Event Grid mode keeps no blob receipts), the model
# registry, the training data (read, and the reports written beside uploads), the prediction log
# and the labels, plus the deployment package container. The Functions host's identity-based
# AzureWebJobsStorage connection documents Storage Blob Data Owner on the account: while the host's
# storage and the data share one account, the app's data role cannot be narrower than that.
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

# Key Vault references are resolved with the app's system-assigned identity: it may read the
# secrets its settings refer to (the Pushgateway's password, MLflow's credentials when set) and
# no other, so neither the function keys nor the monitoring VM's secrets are within its reach.
locals {
  app_referenced_secret_ids = merge(
    { pushgateway_password = azurerm_key_vault_secret.pushgateway_password.resource_versionless_id },
    local.mlflow_password_set ? { mlflow_password = azurerm_key_vault_secret.mlflow_password[0].resource_versionless_id } : {},
    local.mlflow_token_set ? { mlflow_token = azurerm_key_vault_secret.mlflow_token[0].resource_versionless_id } : {},
  )
}

resource "azurerm_role_assignment" "app_key_vault_secrets_user" {
  for_each             = local.app_referenced_secret_ids
  scope                = each.value
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

# The assignment exists in Azure Resource Manager before Key Vault's data plane honours it, and
# the provider does not retry a 403: the secrets wait until the vault lets this principal in.
resource "terraform_data" "deployer_key_vault_access" {
  triggers_replace = [azurerm_role_assignment.deployer_key_vault_secrets_officer.id]

  provisioner "local-exec" {
    command = "bash ${path.module}/scripts/wait-for-key-vault-access.sh"
    environment = {
      KEY_VAULT = azurerm_key_vault.main.name
    }
  }
}

# The deploy workflow's smoke test writes a deployment check to training-data/checks/, reads the
# report beside it and removes both, with the same principal (shared keys are disabled, so
# uploads need a data-plane role). Scoped to that container: the deploy principal cannot read
# the prediction log or the labels, nor write the registry.
resource "azurerm_role_assignment" "deployer_blob_data_contributor" {
  scope                = azurerm_storage_container.training_data.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = data.azurerm_client_config.current.object_id
}
