# One StorageV2 account for the application (models, training data), the Functions host (timer
# state, leases, the blob trigger's queues) and the Flex Consumption deployment package. Every
# client uses Entra ID: the app and the host through the user-assigned identity, the deployment container
# through the same identity, Terraform through storage_use_azuread. Shared keys are disabled.
resource "azurerm_storage_account" "main" {
  #checkov:skip=CKV_AZURE_59:Public endpoint stays reachable: the hosted deploy runner (package deployment, the smoke upload) and the platform's deployment of the package reach storage over the internet; access still needs an Entra ID token (shared keys are disabled).
  #checkov:skip=CKV_AZURE_35:Default network action stays Allow for the same reason; authorization is identity-only and anonymous access is off.
  #checkov:skip=CKV2_AZURE_33:No private endpoint: the app reaches storage through the integration subnet's service endpoint, and the hosted deploy runner needs the public endpoint.
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys with infrastructure (double) encryption are enough for wine-quality models and public training data; a customer-managed key adds a key lifecycle to operate.
  #checkov:skip=CKV_AZURE_33:Queue service logging is classic Storage Analytics (shared-key era); the queues here are the Functions host's internal ones, and the host logs to Application Insights.
  name                     = local.names.storage_account
  resource_group_name      = azurerm_resource_group.main.name
  location                 = azurerm_resource_group.main.location
  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = var.storage_replication_type
  access_tier              = "Hot"

  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  public_network_access_enabled     = true
  cross_tenant_replication_enabled  = false
  local_user_enabled                = false
  infrastructure_encryption_enabled = true

  blob_properties {
    versioning_enabled = true

    delete_retention_policy {
      days = var.blob_soft_delete_days
    }

    container_delete_retention_policy {
      days = var.blob_soft_delete_days
    }
  }

  sas_policy {
    expiration_period = "01.00:00:00"
    expiration_action = "Log"
  }

  tags = local.tags
}

resource "azurerm_storage_container" "training_data" {
  #checkov:skip=CKV2_AZURE_21:Blob read logging would need a diagnostic setting per blob service; uploads are already visible as Event Grid deliveries and function invocations in Application Insights.
  name                  = local.training_data_container
  storage_account_id    = azurerm_storage_account.main.id
  container_access_type = "private"
}

resource "azurerm_storage_container" "models" {
  #checkov:skip=CKV2_AZURE_21:Model writes and reads are logged by the application (registry events in Application Insights); no separate blob logging.
  name                  = local.models_container
  storage_account_id    = azurerm_storage_account.main.id
  container_access_type = "private"
}

# The prediction log and the labels (append blobs, one writer per instance and hour) and the
# feedback join's results, beside the registry; the name is fixed in the app (`predictions`).
resource "azurerm_storage_container" "predictions" {
  #checkov:skip=CKV2_AZURE_21:Written and read by the application alone (the prediction log, labels and the join's results); its writes are counted in the app's metrics.
  name                  = local.predictions_container
  storage_account_id    = azurerm_storage_account.main.id
  container_access_type = "private"
}

# The storage account's lifecycle rules (one policy per account).
# - The prediction log and the labels: the same retention the feedback join applies after each
#   run (SOMMELIER_PREDICTION_LOG_RETENTION_DAYS), so storage stays bounded even while the join
#   does not run. Only the append blobs of the two streams match; the join's results (block
#   blobs under joined/) are kept.
# - Deployment checks (training-data/checks/, the deploy workflow's smoke test): removed a day
#   after they were written, should the workflow not have removed them itself.
# The policy held only the prediction log's rule before (with a count); an account has one
# policy, so it moves rather than being created beside the old one.
moved {
  from = azurerm_storage_management_policy.prediction_log_retention[0]
  to   = azurerm_storage_management_policy.lifecycle
}

resource "azurerm_storage_management_policy" "lifecycle" {
  storage_account_id = azurerm_storage_account.main.id

  dynamic "rule" {
    for_each = var.prediction_log_retention_days > 0 ? [var.prediction_log_retention_days] : []
    content {
      name    = "prediction-log-retention"
      enabled = true

      filters {
        prefix_match = ["${local.predictions_container}/log/", "${local.predictions_container}/labels/"]
        blob_types   = ["appendBlob"]
      }

      actions {
        base_blob {
          delete_after_days_since_modification_greater_than = rule.value
        }
      }
    }
  }

  rule {
    name    = "deployment-checks"
    enabled = true

    filters {
      prefix_match = ["${local.training_data_container}/checks/"]
      blob_types   = ["blockBlob"]
    }

    actions {
      base_blob {
        delete_after_days_since_modification_greater_than = 1
      }
      version {
        delete_after_days_since_creation = 1
      }
    }
  }
}

resource "azurerm_storage_container" "app_package" {
  #checkov:skip=CKV2_AZURE_21:Holds only the deployment zip written by the platform during deployment; deployments are logged by the deploy workflow and the app's activity log.
  name                  = local.package_container
  storage_account_id    = azurerm_storage_account.main.id
  container_access_type = "private"
}
