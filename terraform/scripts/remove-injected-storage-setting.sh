#!/usr/bin/env bash
# Deletes the `AzureWebJobsStorage` app setting that the azurerm provider writes (with an empty
# account key) on every create and in-place update of a Flex Consumption app; the Functions host
# would prefer it over the identity-based `AzureWebJobsStorage__*` settings and fail, because
# the storage account refuses shared keys. Run by terraform_data.remove_injected_storage_setting
# at the end of every apply (function_app.tf); safe to run by hand at any time.
#
# Environment:
#   RESOURCE_GROUP, FUNCTION_APP  the app (required)
#   HEALTH_URL                    optional: after a deletion (which restarts the app), wait
#                                 until this URL answers 200 (phase 2: Event Grid validates the
#                                 blob webhook right after this step)
#   HEALTH_ATTEMPTS               optional: how many times to try HEALTH_URL, 15 s apart (40)
#
# Needs the Azure CLI (`az`, logged in) and curl.
set -euo pipefail
: "${RESOURCE_GROUP:?RESOURCE_GROUP is required}"
: "${FUNCTION_APP:?FUNCTION_APP is required}"
attempts="${HEALTH_ATTEMPTS:-40}"

log() { printf 'remove-injected-storage-setting: %s\n' "$*" >&2; }

command -v az >/dev/null || { log "the Azure CLI (az) is not installed: install it and run 'az login'"; exit 1; }

present="$(az functionapp config appsettings list -g "$RESOURCE_GROUP" -n "$FUNCTION_APP" \
  --query "[?name=='AzureWebJobsStorage'].name" -o tsv)"
if [ -z "$present" ]; then
  log "AzureWebJobsStorage is absent on $FUNCTION_APP"
  exit 0
fi
az functionapp config appsettings delete -g "$RESOURCE_GROUP" -n "$FUNCTION_APP" \
  --setting-names AzureWebJobsStorage --output none
log "deleted AzureWebJobsStorage on $FUNCTION_APP"

[ -n "${HEALTH_URL:-}" ] || exit 0
for attempt in $(seq 1 "$attempts"); do
  if curl -fsS --max-time 20 -o /dev/null "$HEALTH_URL"; then
    log "$HEALTH_URL answers again"
    exit 0
  fi
  log "waiting for $HEALTH_URL (attempt $attempt of $attempts)"
  [ "$attempt" -eq "$attempts" ] || sleep 15
done
log "$HEALTH_URL did not answer 200 after the restart"
exit 1
