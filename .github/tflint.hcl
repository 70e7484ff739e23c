# tflint configuration for terraform/ (used by the "terraform" job of
# .github/workflows/ci.yml: `tflint --config .github/tflint.hcl`).

config {
  call_module_type = "local"
}

plugin "terraform" {
  enabled = true
  preset  = "recommended"
}

plugin "azurerm" {
  enabled = true
  version = "0.33.0"
  source  = "github.com/terraform-linters/tflint-ruleset-azurerm"
}
