# Blob trigger on Flex Consumption: Event Grid delivers BlobCreated events for training-data/
# to the Functions host's blobs extension webhook, which runs retrain-on-upload.
#
# Two phases: the topic exists from the first apply; the subscription needs the app's
# blobs_extension system key, which exists only after the package is deployed and the host has
# started (enable_blob_trigger_subscription = true on the second apply).
resource "azurerm_eventgrid_system_topic" "storage" {
  name                = local.names.eventgrid_system_topic
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  source_resource_id  = azurerm_storage_account.main.id
  topic_type          = "Microsoft.Storage.StorageAccounts"
  tags                = local.tags
}

data "azurerm_function_app_host_keys" "main" {
  count = var.enable_blob_trigger_subscription ? 1 : 0

  name                = azurerm_function_app_flex_consumption.main.name
  resource_group_name = azurerm_resource_group.main.name
}

resource "azurerm_eventgrid_system_topic_event_subscription" "training_data_uploaded" {
  count = var.enable_blob_trigger_subscription ? 1 : 0

  name                = local.names.eventgrid_subscription
  system_topic        = azurerm_eventgrid_system_topic.storage.name
  resource_group_name = azurerm_resource_group.main.name

  event_delivery_schema = "EventGridSchema"
  included_event_types  = ["Microsoft.Storage.BlobCreated"]

  subject_filter {
    subject_begins_with = "/blobServices/default/containers/${local.training_data_container}/"
  }

  webhook_endpoint {
    url = "https://${azurerm_function_app_flex_consumption.main.default_hostname}/runtime/webhooks/blobs?functionName=Host.Functions.retrain-on-upload&code=${data.azurerm_function_app_host_keys.main[0].blobs_extension_key}"
  }

  retry_policy {
    max_delivery_attempts = 30
    event_time_to_live    = 1440
  }

  # The provider-injected AzureWebJobsStorage setting is gone (and the app answers again)
  # before Event Grid validates the webhook.
  depends_on = [terraform_data.remove_injected_storage_setting]

  lifecycle {
    # Before the host has started with retrain-on-upload, the key is empty and the URL would
    # end in `code=`: Event Grid's validation would fail with a less helpful error.
    precondition {
      condition     = data.azurerm_function_app_host_keys.main[0].blobs_extension_key != ""
      error_message = "The function app has no blobs_extension key yet: deploy the package and wait for /api/health before applying with enable_blob_trigger_subscription = true."
    }
  }
}
