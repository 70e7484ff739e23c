terraform {
  required_version = ">= 1.9.0"

  # Exact releases: CI, a deployment and a developer resolve the same providers, and each one
  # is a release the offline schema check has the schema of (tests/infra/test_schema.py). The
  # lock file (.terraform.lock.hcl, README.md) pins their checksums; Dependabot proposes updates.
  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # 4.78 or newer: `local_authentication_enabled` on Application Insights (the argument it
      # replaces is deprecated from 4.78). 4.81 also has `runtime_name = "custom"`,
      # `always_ready`, `http_concurrency` and `virtual_network_subnet_id` on the Flex
      # Consumption resource, accepts `maximum_instance_count` from 1 (4.55-4.57 refused values
      # below 40) and has `rbac_authorization_enabled` on Key Vault.
      version = "4.81.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "3.7.2"
    }
    # The monitoring VM's SSH host key, generated here so that Ansible can pin it.
    tls = {
      source  = "hashicorp/tls"
      version = "4.1.0"
    }
  }

  # Remote state in an Azure Storage container, configured at init time:
  #   terraform init -backend-config=backend.hcl   (see README.md)
  backend "azurerm" {}
}
