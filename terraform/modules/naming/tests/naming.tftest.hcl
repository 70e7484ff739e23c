# Offline tests of the naming rules: `terraform init -backend=false && terraform test`.

variables {
  prefix      = "somm"
  environment = "dev"
  unique_seed = "00000000-0000-0000-0000-000000000000"
}

run "names_follow_azure_rules" {
  command = plan

  assert {
    condition     = can(regex("^[a-z0-9]{3,24}$", output.names.storage_account))
    error_message = "storage account name must be 3-24 lowercase letters and digits: ${output.names.storage_account}"
  }

  assert {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$", output.names.key_vault)) && !strcontains(output.names.key_vault, "--")
    error_message = "key vault name must be 3-24 characters, start with a letter, end with a letter or digit, no '--': ${output.names.key_vault}"
  }

  assert {
    condition     = length(output.names.function_app) <= 32 && can(regex("^[a-z0-9][a-z0-9-]*[a-z0-9]$", output.names.function_app))
    error_message = "function app name must be at most 32 characters of lowercase letters, digits and hyphens: ${output.names.function_app}"
  }

  assert {
    condition     = can(regex("^[a-z][a-z0-9-]{1,61}[a-z0-9]$", output.names.dns_label))
    error_message = "DNS label must be 3-63 lowercase letters, digits and hyphens, starting with a letter: ${output.names.dns_label}"
  }

  assert {
    condition     = length(output.names.computer_name) <= 64 && length(output.names.virtual_machine) <= 64
    error_message = "Linux VM and computer names must be at most 64 characters."
  }

  assert {
    condition     = length(output.names.resource_group) <= 90 && length(output.names.virtual_network) <= 64 && length(output.names.network_security_group) <= 80
    error_message = "network and resource group names exceed Azure limits."
  }

  assert {
    condition     = output.names.storage_account == "stsommdev${output.suffix}" && output.names.resource_group == "rg-somm-dev"
    error_message = "names must be derived from prefix and environment."
  }
}

run "longest_inputs_still_fit" {
  command = plan

  variables {
    prefix      = "abcdefgh"
    environment = "stagin"
  }

  assert {
    condition     = length(output.names.storage_account) <= 24 && length(output.names.key_vault) <= 24
    error_message = "the longest prefix and environment must still give valid storage account and key vault names."
  }

  assert {
    condition     = length(output.names.function_app) <= 32
    error_message = "the longest prefix and environment must still give a function app name of at most 32 characters."
  }
}

run "suffix_is_stable_and_seeded" {
  command = plan

  assert {
    condition     = output.suffix == substr(sha256("00000000-0000-0000-0000-000000000000"), 0, 6) && can(regex("^[0-9a-f]{6}$", output.suffix))
    error_message = "the suffix must be the first 6 hex characters of the seed's sha256."
  }
}

run "rejects_uppercase_prefix" {
  command = plan

  variables {
    prefix = "Somm"
  }

  expect_failures = [var.prefix]
}

run "rejects_long_prefix" {
  command = plan

  variables {
    prefix = "sommelier"
  }

  expect_failures = [var.prefix]
}

run "rejects_prefix_starting_with_digit" {
  command = plan

  variables {
    prefix = "1somm"
  }

  expect_failures = [var.prefix]
}

run "rejects_bad_environment" {
  command = plan

  variables {
    environment = "prod-eu"
  }

  expect_failures = [var.environment]
}

run "rejects_empty_seed" {
  command = plan

  variables {
    unique_seed = ""
  }

  expect_failures = [var.unique_seed]
}
