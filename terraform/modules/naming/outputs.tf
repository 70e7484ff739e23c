output "names" {
  description = "Map of resource kind to resource name (keys: resource_group, storage_account, key_vault, service_plan, function_app, user_assigned_identity, log_analytics_workspace, application_insights, eventgrid_system_topic, eventgrid_subscription, virtual_network, subnet_monitoring, network_security_group, public_ip, network_interface, virtual_machine, computer_name, os_disk, dns_label)."
  value       = local.names
}

output "suffix" {
  description = "The 6-character hexadecimal suffix derived from unique_seed."
  value       = local.suffix
}
