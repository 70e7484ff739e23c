locals {
  # All names come from modules/naming (prefix + environment + a stable hash).
  names = module.naming.names

  tags = merge(var.tags, {
    project     = "sommelier"
    environment = var.environment
    managed-by  = "terraform"
  })

  # Blob containers shared with the application.
  training_data_container = "training-data"
  models_container        = "models"
  # Fixed in the app: the prediction log beside the registry (src/feedback/store.rs).
  predictions_container = "predictions"
  package_container     = "app-package"

  blob_endpoint         = azurerm_storage_account.main.primary_blob_endpoint # ends with "/"
  models_container_url  = "${local.blob_endpoint}${local.models_container}"
  training_data_url     = "${local.blob_endpoint}${local.training_data_container}"
  package_container_url = "${local.blob_endpoint}${local.package_container}"

  # The VNet: a /26 for the app's integration subnet, a /27 for the monitoring VM, whose
  # private address is fixed so that the app's Pushgateway URL never changes.
  functions_subnet_prefix  = cidrsubnet(var.vnet_address_space, 2, 1)
  monitoring_subnet_prefix = cidrsubnet(var.vnet_address_space, 3, 0)
  monitoring_private_ip    = cidrhost(local.monitoring_subnet_prefix, 4)

  # The app pushes over the VNet to the VM's private address: the basic-auth credentials and
  # the metrics never cross the internet. Grafana is served by Caddy over HTTPS on the public
  # DNS name.
  monitoring_fqdn = azurerm_public_ip.monitoring.fqdn
  pushgateway_url = "http://${local.monitoring_private_ip}:9091"
  grafana_url     = "https://${local.monitoring_fqdn}/"

  # Key Vault references resolve with the app's system-assigned identity (the Flex resource has
  # no key_vault_reference_identity_id argument).
  # Whether the optional MLflow secrets were given (only the emptiness is revealed, not the value).
  mlflow_password_set = nonsensitive(var.mlflow_tracking_password != "")
  mlflow_token_set    = nonsensitive(var.mlflow_tracking_token != "")

  pushgateway_password_reference = "@Microsoft.KeyVault(SecretUri=${azurerm_key_vault_secret.pushgateway_password.versionless_id})"
  mlflow_password_reference      = !local.mlflow_password_set ? "" : "@Microsoft.KeyVault(SecretUri=${azurerm_key_vault_secret.mlflow_password[0].versionless_id})"
  mlflow_token_reference         = !local.mlflow_token_set ? "" : "@Microsoft.KeyVault(SecretUri=${azurerm_key_vault_secret.mlflow_token[0].versionless_id})"

  # Every setting the handler reads (local.settings.json.example), plus the identity-based host
  # storage connection. FUNCTIONS_WORKER_RUNTIME and AzureWebJobsStorage are not set on Flex
  # Consumption: the runtime comes from functionAppConfig and host storage uses the identity.
  app_settings = {
    # Host storage through the user-assigned identity.
    "AzureWebJobsStorage__accountName" = azurerm_storage_account.main.name
    "AzureWebJobsStorage__credential"  = "managedidentity"
    "AzureWebJobsStorage__clientId"    = azurerm_user_assigned_identity.app.client_id

    # Application Insights with Entra ID authentication (local auth is disabled).
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" = "ClientId=${azurerm_user_assigned_identity.app.client_id};Authorization=AAD"

    # Model registry and training data: container URLs, token credential of the identity.
    "SOMMELIER_STORE"                     = local.models_container_url
    "SOMMELIER_TRAINING_DATA"             = local.training_data_url
    "SOMMELIER_STORAGE_CONNECTION_STRING" = ""
    "SOMMELIER_STORAGE_CA_FILE"           = ""
    "SOMMELIER_IDENTITY_CLIENT_ID"        = azurerm_user_assigned_identity.app.client_id

    "SOMMELIER_RETRAIN_SCHEDULE"  = var.retrain_schedule
    "SOMMELIER_FEEDBACK_SCHEDULE" = var.feedback_schedule

    # The prediction log and feedback (README, Closing the loop).
    "SOMMELIER_PREDICTION_LOG_SAMPLE"         = tostring(var.prediction_log_sample)
    "SOMMELIER_PREDICTION_LOG_FLUSH_SECONDS"  = "5"
    "SOMMELIER_PREDICTION_LOG_QUEUE_ROWS"     = "65536"
    "SOMMELIER_FEEDBACK_HORIZON_DAYS"         = tostring(var.feedback_horizon_days)
    "SOMMELIER_PREDICTION_LOG_RETENTION_DAYS" = tostring(var.prediction_log_retention_days)
    "SOMMELIER_TRAIN_ON_FEEDBACK"             = tostring(var.train_on_feedback)

    "SOMMELIER_MODEL_REFRESH_SECONDS" = tostring(var.model_refresh_seconds)
    "SOMMELIER_PROMOTION_TOLERANCE"   = tostring(var.promotion_tolerance)
    "SOMMELIER_MAX_LABEL_SHIFT"       = tostring(var.max_label_shift)
    "SOMMELIER_MIN_COMPARABLE_ROWS"   = tostring(var.min_comparable_rows)
    "SOMMELIER_KEEP_VERSIONS"         = tostring(var.keep_versions)
    "SOMMELIER_MAX_BATCH_ROWS"        = tostring(var.max_batch_rows)
    "SOMMELIER_MAX_EXPLAIN_ROWS"      = tostring(var.max_explain_rows)
    "SOMMELIER_INTERVAL_COVERAGE"     = tostring(var.interval_coverage)

    # Serving limits: the defaults fit a 2,048 MB instance (README, HTTP API).
    "SOMMELIER_MAX_BUFFERED_BYTES"         = "134217728"
    "SOMMELIER_MAX_LARGE_REQUESTS"         = "4"
    "SOMMELIER_HEADER_TIMEOUT_SECONDS"     = "10"
    "SOMMELIER_REQUEST_TIMEOUT_SECONDS"    = "30"
    "SOMMELIER_BODY_START_TIMEOUT_SECONDS" = "5"
    "SOMMELIER_SHUTDOWN_SECONDS"           = "5"

    "SOMMELIER_PUSHGATEWAY_URL"          = local.pushgateway_url
    "SOMMELIER_PUSHGATEWAY_USERNAME"     = var.pushgateway_username
    "SOMMELIER_PUSHGATEWAY_PASSWORD"     = local.pushgateway_password_reference
    "SOMMELIER_PUSH_INTERVAL_SECONDS"    = tostring(var.push_interval_seconds)
    "SOMMELIER_PUSH_STALE_GROUP_SECONDS" = var.push_stale_group_seconds == null ? "" : tostring(var.push_stale_group_seconds)

    "SOMMELIER_LOG_FORMAT" = var.log_format
    "RUST_LOG"             = var.rust_log

    "MLFLOW_TRACKING_URI"         = var.mlflow_tracking_uri
    "MLFLOW_TRACKING_USERNAME"    = var.mlflow_tracking_username
    "MLFLOW_TRACKING_PASSWORD"    = local.mlflow_password_reference
    "MLFLOW_TRACKING_TOKEN"       = local.mlflow_token_reference
    "MLFLOW_EXPERIMENT_NAME"      = var.mlflow_experiment_name
    "SOMMELIER_MLFLOW_MODEL_NAME" = var.mlflow_model_name
  }
}
