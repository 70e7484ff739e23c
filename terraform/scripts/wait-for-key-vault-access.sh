#!/usr/bin/env bash
# Waits until the principal running Terraform can list the vault's secrets. Key Vault's data
# plane honours a new role assignment minutes after Azure Resource Manager reports it created,
# and the provider does not retry a 403: without this wait the first apply's secrets fail
# with ForbiddenByRbac. Run by terraform_data.deployer_key_vault_access (key_vault.tf) after
# the deployer's Key Vault Secrets Officer assignment; safe to run by hand at any time.
#
# Environment:
#   KEY_VAULT        the vault's name (required)
#   ACCESS_ATTEMPTS  optional: how many times to try, RETRY_SECONDS apart (40)
#   RETRY_SECONDS    optional: the pause between attempts (15)
#
# Needs the Azure CLI (`az`, logged in).
set -euo pipefail
: "${KEY_VAULT:?KEY_VAULT is required}"
attempts="${ACCESS_ATTEMPTS:-40}"
pause="${RETRY_SECONDS:-15}"

log() { printf 'wait-for-key-vault-access: %s\n' "$*" >&2; }

command -v az >/dev/null || { log "the Azure CLI (az) is not installed: install it and run 'az login'"; exit 1; }

for attempt in $(seq 1 "$attempts"); do
  if az keyvault secret list --vault-name "$KEY_VAULT" --maxresults 1 --output none 2>"${TMPDIR:-/tmp}/key-vault-access.err"; then
    log "the secrets of $KEY_VAULT can be written"
    exit 0
  fi
  log "no access to the secrets of $KEY_VAULT yet (attempt $attempt of $attempts): $(head -c 300 "${TMPDIR:-/tmp}/key-vault-access.err" | tr '\n' ' ')"
  [ "$attempt" -eq "$attempts" ] || sleep "$pause"
done
log "the secrets of $KEY_VAULT are still refused: check the Key Vault Secrets Officer assignment of the principal running Terraform"
exit 1
