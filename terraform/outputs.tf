output "resource_group_name" {
  description = "Resource group holding every resource of this environment."
  value       = azurerm_resource_group.main.name
}

output "function_app_name" {
  description = "Name of the Flex Consumption function app (target of the package deployment)."
  value       = azurerm_function_app_flex_consumption.main.name
}

output "function_app_url" {
  description = "Base URL of the function app (https://<default hostname>); the API lives under /api."
  value       = "https://${azurerm_function_app_flex_consumption.main.default_hostname}"
}

output "storage_account_name" {
  description = "Storage account with the training data, the model registry, host storage and the deployment package (Entra ID access only)."
  value       = azurerm_storage_account.main.name
}

output "training_data_container" {
  description = "Blob container for training CSVs; a new blob triggers retrain-on-upload once phase 2 is applied."
  value       = azurerm_storage_container.training_data.name
}

output "models_container" {
  description = "Blob container of the versioned model registry (SOMMELIER_STORE)."
  value       = azurerm_storage_container.models.name
}

output "package_container" {
  description = "Blob container the Flex Consumption app runs its deployment package from."
  value       = azurerm_storage_container.app_package.name
}

output "key_vault_name" {
  description = "Key Vault holding the generated secrets (RBAC mode)."
  value       = azurerm_key_vault.main.name
}

output "application_insights_name" {
  description = "Application Insights component receiving the function app's telemetry."
  value       = azurerm_application_insights.main.name
}

output "blob_trigger_subscription_enabled" {
  description = "Whether phase 2 (the Event Grid subscription to retrain-on-upload) is applied."
  value       = var.enable_blob_trigger_subscription
}

output "monitoring_vm_public_ip" {
  description = "Static public IP address of the monitoring VM."
  value       = azurerm_public_ip.monitoring.ip_address
}

output "monitoring_vm_fqdn" {
  description = "DNS name of the monitoring VM (<label>.<region>.cloudapp.azure.com)."
  value       = azurerm_public_ip.monitoring.fqdn
}

output "monitoring_vm_admin_username" {
  description = "SSH user of the monitoring VM (Ansible's ansible_user)."
  value       = azurerm_linux_virtual_machine.monitoring.admin_username
}

output "grafana_url" {
  description = "Grafana on the monitoring VM (reachable from admin_cidrs only)."
  value       = local.grafana_url
}

output "pushgateway_url" {
  description = "Pushgateway base URL the function app pushes to (SOMMELIER_PUSHGATEWAY_URL)."
  value       = local.pushgateway_url
}

output "pushgateway_allowed_sources" {
  description = "Source addresses the NSG lets reach the Pushgateway (the function app's possible outbound addresses plus pushgateway_extra_source_cidrs)."
  value       = local.pushgateway_sources
}

output "pushgateway_basic_auth_username" {
  description = "Basic-auth user of the Pushgateway (Ansible variable of the same name)."
  value       = var.pushgateway_username
}

output "pushgateway_basic_auth_password" {
  description = "Generated basic-auth password of the Pushgateway (also in Key Vault; the app reads it through a Key Vault reference)."
  value       = random_password.pushgateway.result
  sensitive   = true
}

output "grafana_admin_password" {
  description = "Generated Grafana admin password (also in Key Vault)."
  value       = random_password.grafana_admin.result
  sensitive   = true
}

output "ansible_inventory_yaml" {
  description = "Ansible inventory for the monitoring VM: group `monitoring` with ansible_host/ansible_user and the roles' variables. Render with: terraform output -raw ansible_inventory_yaml > inventory.yml"
  sensitive   = true
  value = yamlencode({
    all = {
      children = {
        monitoring = {
          hosts = {
            (azurerm_linux_virtual_machine.monitoring.name) = {
              ansible_host = azurerm_public_ip.monitoring.ip_address
              ansible_user = azurerm_linux_virtual_machine.monitoring.admin_username
            }
          }
          vars = {
            pushgateway_basic_auth_username = var.pushgateway_username
            pushgateway_basic_auth_password = random_password.pushgateway.result
            grafana_admin_password          = random_password.grafana_admin.result
            prometheus_retention_time       = var.prometheus_retention_time
          }
        }
      }
    }
  })
}

output "monitoring_nsg_name" {
  description = "Name of the network security group on the monitoring subnet (the deploy workflow opens SSH to its runner there for the duration of the Ansible run)."
  value       = azurerm_network_security_group.monitoring.name
}
