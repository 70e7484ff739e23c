data "azurerm_client_config" "current" {}

module "naming" {
  source = "./modules/naming"

  prefix      = var.prefix
  environment = var.environment
  # Stable per subscription and environment: the same inputs always give the same names.
  unique_seed = "${data.azurerm_client_config.current.subscription_id}/${var.prefix}/${var.environment}"
}

resource "azurerm_resource_group" "main" {
  name     = local.names.resource_group
  location = var.location
  tags     = local.tags
}
