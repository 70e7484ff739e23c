variable "prefix" {
  type        = string
  description = "Short project prefix used in every resource name: 2-8 characters, lowercase letters and digits, starting with a letter."

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,7}$", var.prefix))
    error_message = "prefix must be 2-8 characters of lowercase letters and digits, starting with a letter (it becomes part of the storage account name)."
  }
}

variable "environment" {
  type        = string
  description = "Environment name (for example dev, test, prod): 2-6 characters, lowercase letters and digits, starting with a letter."

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,5}$", var.environment))
    error_message = "environment must be 2-6 characters of lowercase letters and digits, starting with a letter."
  }
}

variable "unique_seed" {
  type        = string
  description = "Any stable string (for example the subscription id). Its hash gives the 6-character suffix that makes globally unique names (storage account, key vault, function app, DNS label) unique."

  validation {
    condition     = length(var.unique_seed) > 0
    error_message = "unique_seed must not be empty."
  }
}
