# One VNet, two subnets, so that monitoring traffic never crosses the internet:
# - `functions`: the Flex Consumption app's regional VNet integration (delegated to
#   Microsoft.App/environments, as Flex Consumption requires). The app's outbound traffic,
#   including its metric pushes, leaves from here.
# - `monitoring`: the monitoring VM, with an NSG on the subnet.
# Inbound to the monitoring subnet: SSH and Grafana's HTTPS (Caddy, 443) from admin_cidrs only;
# the Pushgateway (9091) on the VM's private address from the integration subnet only; port 80
# from the internet only when a public Grafana certificate is wanted (ACME HTTP-01). Grafana's
# own port 3000 and Prometheus (9090) are denied explicitly: both listen on localhost.
resource "azurerm_virtual_network" "main" {
  name                = local.names.virtual_network
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  address_space       = [var.vnet_address_space]
  tags                = local.tags
}

# The VNet held only the monitoring subnet before the app joined it.
moved {
  from = azurerm_virtual_network.monitoring
  to   = azurerm_virtual_network.main
}

resource "azurerm_subnet" "functions" {
  #checkov:skip=CKV2_AZURE_31:The integration subnet holds no NICs of ours: it is delegated to the Flex Consumption platform, and the traffic it sends is filtered where it arrives (the monitoring subnet's NSG).
  name                 = local.names.subnet_functions
  resource_group_name  = azurerm_resource_group.main.name
  virtual_network_name = azurerm_virtual_network.main.name
  address_prefixes     = [local.functions_subnet_prefix]
  # Storage and Key Vault traffic of the app stays on the Azure backbone.
  service_endpoints = ["Microsoft.Storage", "Microsoft.KeyVault"]
  # The app still reaches Application Insights and an optional MLflow server on the internet.
  default_outbound_access_enabled = true

  delegation {
    name = "flex-consumption"
    service_delegation {
      name    = "Microsoft.App/environments"
      actions = ["Microsoft.Network/virtualNetworks/subnets/join/action"]
    }
  }
}

resource "azurerm_subnet" "monitoring" {
  name                            = local.names.subnet_monitoring
  resource_group_name             = azurerm_resource_group.main.name
  virtual_network_name            = azurerm_virtual_network.main.name
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
  destination_address_prefix  = local.monitoring_private_ip
}

resource "azurerm_network_security_rule" "grafana_https_from_admins" {
  name                        = "allow-grafana-https-from-admins"
  resource_group_name         = azurerm_resource_group.main.name
  network_security_group_name = azurerm_network_security_group.monitoring.name
  priority                    = 110
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = "443"
  source_address_prefixes     = var.admin_cidrs
  destination_address_prefix  = local.monitoring_private_ip
}

resource "azurerm_network_security_rule" "pushgateway_from_functions_subnet" {
  name                        = "allow-pushgateway-from-functions-subnet"
  resource_group_name         = azurerm_resource_group.main.name
  network_security_group_name = azurerm_network_security_group.monitoring.name
  priority                    = 120
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = "9091"
  source_address_prefixes     = [local.functions_subnet_prefix]
  destination_address_prefix  = local.monitoring_private_ip
}

# Only with grafana_acme_email: the ACME HTTP-01 challenge comes from anywhere on the internet.
# Caddy answers nothing else on port 80 but a redirect to HTTPS (443, admin_cidrs only).
resource "azurerm_network_security_rule" "acme_http_challenge" {
  #checkov:skip=CKV_AZURE_160:Port 80 is open to the internet only when a publicly trusted certificate is requested (grafana_acme_email), for the ACME HTTP-01 challenge; Caddy redirects every other request to HTTPS, which only admin_cidrs reach.
  count                       = var.grafana_acme_email == "" ? 0 : 1
  name                        = "allow-acme-http-challenge"
  resource_group_name         = azurerm_resource_group.main.name
  network_security_group_name = azurerm_network_security_group.monitoring.name
  priority                    = 130
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = "80"
  source_address_prefix       = "Internet"
  destination_address_prefix  = local.monitoring_private_ip
}

# Grafana (3000) and Prometheus (9090) listen on the VM's loopback only: say so in the NSG too.
resource "azurerm_network_security_rule" "deny_grafana_and_prometheus" {
  name                        = "deny-grafana-and-prometheus"
  resource_group_name         = azurerm_resource_group.main.name
  network_security_group_name = azurerm_network_security_group.monitoring.name
  priority                    = 200
  direction                   = "Inbound"
  access                      = "Deny"
  protocol                    = "*"
  source_port_range           = "*"
  destination_port_ranges     = ["3000", "9090"]
  source_address_prefix       = "*"
  destination_address_prefix  = "*"
}
