# Generated secrets: the Pushgateway basic-auth password (app + Ansible) and the Grafana admin
# password (Ansible), plus the optional MLflow credentials. RBAC authorization, purge protection.
resource "azurerm_key_vault" "main" {
  #checkov:skip=CKV_AZURE_109:The firewall stays open: the hosted deploy runner writes the secrets from outside the VNet, and App Service resolves Key Vault references over the public endpoint unless told to route them through the VNet; data access still needs an RBAC role.
  #checkov:skip=CKV_AZURE_189:Public network access is needed for the same reason (the deploy runner writes secrets from outside the VNet).
  #checkov:skip=CKV2_AZURE_32:No private endpoint: the deploy runner writes secrets over the public endpoint, and the app reaches the vault through the integration subnet's service endpoint.
  name                = local.names.key_vault
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  tenant_id           = data.azurerm_client_config.current.tenant_id
  sku_name            = "standard"

  rbac_authorization_enabled    = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = 90
  public_network_access_enabled = true

  network_acls {
    default_action = "Allow"
    bypass         = "AzureServices"
  }

  tags = local.tags
}

resource "random_password" "pushgateway" {
  length  = 32
  special = false
}

resource "random_password" "grafana_admin" {
  length      = 32
  special     = true
  min_special = 2
  # Characters that survive YAML, shell and URL contexts in the Ansible roles.
  override_special = "-_.~"
}

resource "azurerm_key_vault_secret" "pushgateway_password" {
  #checkov:skip=CKV_AZURE_41:Rotation is a Terraform action (terraform apply -replace=random_password.pushgateway); an expiry date would break the app's Key Vault reference without rotating anything.
  name         = "pushgateway-basic-auth-password"
  value        = random_password.pushgateway.result
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/plain"
  tags         = local.tags

  depends_on = [terraform_data.deployer_key_vault_access]
}

resource "azurerm_key_vault_secret" "grafana_admin_password" {
  #checkov:skip=CKV_AZURE_41:Rotation is a Terraform action (terraform apply -replace=random_password.grafana_admin) followed by the Ansible playbook; an expiry date would not rotate anything.
  name         = "grafana-admin-password"
  value        = random_password.grafana_admin.result
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/plain"
  tags         = local.tags

  depends_on = [terraform_data.deployer_key_vault_access]
}

resource "azurerm_key_vault_secret" "mlflow_password" {
  #checkov:skip=CKV_AZURE_41:The MLflow credential's lifetime is set by the MLflow server's operator; it is replaced by changing the variable.
  count        = local.mlflow_password_set ? 1 : 0
  name         = "mlflow-tracking-password"
  value        = var.mlflow_tracking_password
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/plain"
  tags         = local.tags

  depends_on = [terraform_data.deployer_key_vault_access]
}

resource "azurerm_key_vault_secret" "mlflow_token" {
  #checkov:skip=CKV_AZURE_41:The MLflow token's lifetime is set by the MLflow server's operator; it is replaced by changing the variable.
  count        = local.mlflow_token_set ? 1 : 0
  name         = "mlflow-tracking-token"
  value        = var.mlflow_tracking_token
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/plain"
  tags         = local.tags

  depends_on = [terraform_data.deployer_key_vault_access]
}

# Function keys (set on the functions by the deploy workflow after the package deployment:
# azurerm has no resource for a function's key). Two keys, so that whoever holds the prediction
# clients' key cannot send labels: labels steer retraining.
resource "random_password" "prediction_client_key" {
  length  = 48
  special = false
}

resource "random_password" "feedback_function_key" {
  length  = 48
  special = false
}

resource "azurerm_key_vault_secret" "prediction_client_key" {
  #checkov:skip=CKV_AZURE_41:Rotation is a Terraform action (terraform apply -replace=random_password.prediction_client_key) followed by a deployment, which sets the new key on the functions; an expiry date would not rotate anything.
  name         = "prediction-client-function-key"
  value        = random_password.prediction_client_key.result
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/plain"
  tags         = local.tags

  depends_on = [terraform_data.deployer_key_vault_access]
}

resource "azurerm_key_vault_secret" "feedback_function_key" {
  #checkov:skip=CKV_AZURE_41:Rotation is a Terraform action (terraform apply -replace=random_password.feedback_function_key) followed by a deployment, which sets the new key on the feedback function; an expiry date would not rotate anything.
  name         = "feedback-function-key"
  value        = random_password.feedback_function_key.result
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/plain"
  tags         = local.tags

  depends_on = [terraform_data.deployer_key_vault_access]
}
