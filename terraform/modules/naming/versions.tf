terraform {
  # Provider-free on purpose: `terraform test` runs this module offline.
  required_version = ">= 1.9.0"
}
