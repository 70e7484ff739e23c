# Every resource name in one place, derived from prefix + environment (+ a stable hash for
# the names that must be globally unique). Azure naming rules enforced here:
# - storage account: 3-24 characters, lowercase letters and digits only
# - key vault: 3-24 characters, letters, digits and hyphens, starts with a letter, ends with a
#   letter or digit, no consecutive hyphens
# - function app: at most 32 characters to avoid host id collisions (the limit is 60)
# - public IP DNS label: 3-63 characters, lowercase letters, digits and hyphens, starts with a letter
locals {
  suffix = substr(sha256(var.unique_seed), 0, 6)
  base   = "${var.prefix}-${var.environment}"

  names = {
    resource_group          = "rg-${local.base}"
    storage_account         = "st${var.prefix}${var.environment}${local.suffix}"
    key_vault               = "kv-${var.prefix}${var.environment}-${local.suffix}"
    service_plan            = "asp-${local.base}"
    function_app            = "func-${local.base}-${local.suffix}"
    user_assigned_identity  = "id-${local.base}-func"
    log_analytics_workspace = "log-${local.base}"
    application_insights    = "appi-${local.base}"
    eventgrid_system_topic  = "evgt-${local.base}-storage"
    eventgrid_subscription  = "evgs-${local.base}-training-data"
    virtual_network         = "vnet-${local.base}"
    subnet_functions        = "snet-${local.base}-functions"
    subnet_monitoring       = "snet-${local.base}-monitoring"
    network_security_group  = "nsg-${local.base}-monitoring"
    public_ip               = "pip-${local.base}-monitoring"
    network_interface       = "nic-${local.base}-monitoring"
    virtual_machine         = "vm-${local.base}-monitoring"
    computer_name           = "${var.prefix}-${var.environment}-mon"
    os_disk                 = "osdisk-${local.base}-monitoring"
    dns_label               = "${local.base}-mon-${local.suffix}"
  }
}
