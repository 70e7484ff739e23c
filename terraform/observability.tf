# Application Insights (workspace-based) for the Functions host and the handler's stdout/stderr.
resource "azurerm_log_analytics_workspace" "main" {
  name                = local.names.log_analytics_workspace
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = local.tags
}

resource "azurerm_application_insights" "main" {
  name                = local.names.application_insights
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  workspace_id        = azurerm_log_analytics_workspace.main.id
  application_type    = "web"

  # Ingestion only with an Entra ID token (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
  local_authentication_enabled = false

  tags = local.tags
}
