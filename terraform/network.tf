# The monitoring VM's network: its own VNet and subnet, an NSG on the subnet.
# Inbound: SSH and Grafana from admin_cidrs only, the Pushgateway from the function app's
# outbound addresses only, Prometheus (9090) from nowhere. Everything else hits the default deny.
resource "azurerm_virtual_network" "monitoring" {
  name                = local.names.virtual_network
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  address_space       = [var.vnet_address_space]
  tags                = local.tags
}

resource "azurerm_subnet" "monitoring" {
  name                            = local.names.subnet_monitoring
  resource_group_name             = azurerm_resource_group.main.name
  virtual_network_name            = azurerm_virtual_network.monitoring.name
  address_prefixes                = [local.monitoring_subnet_prefix]
  default_outbound_access_enabled = false
}

resource "azurerm_network_security_group" "monitoring" {
  name                = local.names.network_security_group
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  tags                = local.tags
}

resource "azurerm_subnet_network_security_group_association" "monitoring" {
  subnet_id                 = azurerm_subnet.monitoring.id
  network_security_group_id = azurerm_network_security_group.monitoring.id
}

resource "azurerm_network_security_rule" "ssh_from_admins" {
  name                        = "allow-ssh-from-admins"
  resource_group_name         = azurerm_resource_group.main.name
  network_security_group_name = azurerm_network_security_group.monitoring.name
  priority                    = 100
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = "22"
  source_address_prefixes     = var.admin_cidrs
  destination_address_prefix  = local.monitoring_subnet_prefix
}

resource "azurerm_network_security_rule" "grafana_from_admins" {
  name                        = "allow-grafana-from-admins"
  resource_group_name         = azurerm_resource_group.main.name
  network_security_group_name = azurerm_network_security_group.monitoring.name
  priority                    = 110
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = "3000"
  source_address_prefixes     = var.admin_cidrs
  destination_address_prefix  = local.monitoring_subnet_prefix
}

resource "azurerm_network_security_rule" "pushgateway_from_function_app" {
  name                        = "allow-pushgateway-from-function-app"
  resource_group_name         = azurerm_resource_group.main.name
  network_security_group_name = azurerm_network_security_group.monitoring.name
  priority                    = 120
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = "9091"
  source_address_prefixes     = local.pushgateway_sources
  destination_address_prefix  = local.monitoring_subnet_prefix
}

# Prometheus is scraped and queried on the VM itself (Grafana uses localhost): say so explicitly.
resource "azurerm_network_security_rule" "deny_prometheus" {
  name                        = "deny-prometheus"
  resource_group_name         = azurerm_resource_group.main.name
  network_security_group_name = azurerm_network_security_group.monitoring.name
  priority                    = 200
  direction                   = "Inbound"
  access                      = "Deny"
  protocol                    = "*"
  source_port_range           = "*"
  destination_port_range      = "9090"
  source_address_prefix       = "*"
  destination_address_prefix  = "*"
}
