# The monitoring VM: Prometheus, Pushgateway, Grafana and Caddy, installed and configured by
# Ansible. Ubuntu 24.04 LTS, SSH key only, a fixed private address (the Pushgateway listens
# there only), a static public IP with a DNS label (SSH and Grafana's HTTPS for admin_cidrs);
# the subnet's NSG decides who may connect.

# The VM's SSH host key, generated here and installed by cloud-init, so that Ansible checks
# the host against a key it got from a trusted source (output monitoring_ssh_known_hosts)
# instead of trusting whatever answers on first use. The private half lives in the Terraform
# state (like the generated passwords: keep the state private) and in the VM's custom data.
resource "tls_private_key" "monitoring_host" {
  algorithm = "ED25519"
}
resource "azurerm_public_ip" "monitoring" {
  name                = local.names.public_ip
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  allocation_method   = "Static"
  sku                 = "Standard"
  domain_name_label   = local.names.dns_label
  tags                = local.tags
}

resource "azurerm_network_interface" "monitoring" {
  #checkov:skip=CKV_AZURE_119:Admins reach SSH and Grafana's HTTPS through the public IP, restricted to admin_cidrs by the subnet NSG; the Pushgateway is reached over the VNet only.
  name                = local.names.network_interface
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location

  ip_configuration {
    name                          = "primary"
    subnet_id                     = azurerm_subnet.monitoring.id
    private_ip_address_allocation = "Static"
    private_ip_address            = local.monitoring_private_ip
    public_ip_address_id          = azurerm_public_ip.monitoring.id
  }

  tags = local.tags
}

resource "azurerm_linux_virtual_machine" "monitoring" {
  #checkov:skip=CKV_AZURE_151:Encryption at host needs the EncryptionAtHost feature registered on the subscription; the OS disk is still encrypted at rest with platform-managed keys.
  name                  = local.names.virtual_machine
  computer_name         = local.names.computer_name
  resource_group_name   = azurerm_resource_group.main.name
  location              = azurerm_resource_group.main.location
  size                  = var.vm_size
  network_interface_ids = [azurerm_network_interface.monitoring.id]

  admin_username                  = var.vm_admin_username
  disable_password_authentication = true

  admin_ssh_key {
    username   = var.vm_admin_username
    public_key = var.vm_admin_ssh_public_key
  }

  source_image_reference {
    publisher = "Canonical"
    offer     = "ubuntu-24_04-lts"
    sku       = "server"
    version   = "latest"
  }

  os_disk {
    name                 = local.names.os_disk
    caching              = "ReadWrite"
    storage_account_type = "StandardSSD_LRS"
    disk_size_gb         = var.vm_os_disk_size_gb
  }

  # Trusted launch (the Ubuntu 24.04 "server" image is generation 2).
  secure_boot_enabled = true
  vtpm_enabled        = true

  provision_vm_agent         = true
  allow_extension_operations = false

  custom_data = base64encode(templatefile("${path.module}/templates/cloud-init.yaml", {
    host_key_private = tls_private_key.monitoring_host.private_key_openssh
    host_key_public  = tls_private_key.monitoring_host.public_key_openssh
  }))

  boot_diagnostics {}

  tags = local.tags

  # The NSG must be on the subnet before the VM gets a public address.
  depends_on = [azurerm_subnet_network_security_group_association.monitoring]
}
