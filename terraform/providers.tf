provider "azurerm" {
  # The subscription comes from ARM_SUBSCRIPTION_ID (and OIDC settings from ARM_* variables
  # in the deploy workflow); nothing subscription-specific is written here.
  features {
    key_vault {
      # Purge protection is on: never try to purge a vault or its secrets on destroy.
      purge_soft_delete_on_destroy          = false
      purge_soft_deleted_secrets_on_destroy = false
      recover_soft_deleted_key_vaults       = true
      recover_soft_deleted_secrets          = true
    }
    resource_group {
      prevent_deletion_if_contains_resources = true
    }
    application_insights {
      # Azure adds a "Failure Anomalies" smart-detector rule beside every Application Insights
      # component, outside this configuration: the provider disables it at creation (the
      # alerts are this configuration's own) and deletes it with the component, so that it
      # does not keep the resource group's deletion guard above from letting a destroy end.
      disable_generated_rule = true
    }
  }

  # Flex Consumption's virtual network integration needs the Microsoft.App resource provider,
  # which the provider's default set does not register.
  resource_providers_to_register = ["Microsoft.App"]

  # Shared-key access is disabled on the storage account: use Entra ID for data-plane calls.
  storage_use_azuread = true
}
