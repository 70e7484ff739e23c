terraform {
  required_version = ">= 1.9.0"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # 4.55 or newer: `runtime_name = "custom"`, `always_ready`, `http_concurrency` on the
      # Flex Consumption resource and `rbac_authorization_enabled` on Key Vault.
      version = "~> 4.55"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.7"
    }
  }

  # Remote state in an Azure Storage container, configured at init time:
  #   terraform init -backend-config=backend.hcl   (see README.md)
  backend "azurerm" {}
}
