# The monitoring VM: Prometheus, Pushgateway and Grafana, installed and configured by Ansible
# (cloud-init only installs Python). Ubuntu 24.04 LTS, SSH key only, static public IP with a
# DNS label; the subnet's NSG decides who may connect.
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
  #checkov:skip=CKV_AZURE_119:The VM is reached directly (Grafana for admins, the Pushgateway for the function app) through a public IP; the subnet NSG restricts every port to known sources.
  name                = local.names.network_interface
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location

  ip_configuration {
    name                          = "primary"
    subnet_id                     = azurerm_subnet.monitoring.id
    private_ip_address_allocation = "Dynamic"
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

  custom_data = base64encode(file("${path.module}/templates/cloud-init.yaml"))

  boot_diagnostics {}

  tags = local.tags

  # The NSG must be on the subnet before the VM gets a public address.
  depends_on = [azurerm_subnet_network_security_group_association.monitoring]
}
