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
  }

  # Shared-key access is disabled on the storage account: use Entra ID for data-plane calls.
  storage_use_azuread = true
}
