//! How the blob store authenticates and talks HTTP.
//!
//! Credentials, in order:
//! 1. `SOMMELIER_STORAGE_CONNECTION_STRING` set: shared key (the emulator, development accounts).
//! 2. `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` set (Azure Functions, App Service): managed
//!    identity, user-assigned when `SOMMELIER_IDENTITY_CLIENT_ID` is set.
//! 3. `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_TENANT_ID` and `AZURE_CLIENT_ID` set (CI with
//!    workload identity federation): workload identity.
//! 4. Otherwise the developer's `az login` / `azd auth login`.
//!
//! The VM metadata endpoint is never used: `IDENTITY_ENDPOINT` without `IDENTITY_HEADER` is an
//! error instead of a silent fall-back to it.
//!
//! Every request has short timeouts and few retries, so an unreachable store fails fast and the
//! caller (serving, the host's retry) decides what to do. `SOMMELIER_STORAGE_CA_FILE` adds
//! trusted CA certificates (PEM) for an endpoint with a private CA, such as a local emulator
//! over HTTPS; the system roots stay trusted.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::policies::Policy;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use azure_identity::{
    ClientAssertionCredentialOptions, DeveloperToolsCredential, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};

use super::shared_key::{AccountKey, SharedKeyPolicy};
use super::BlobStoreError;
use crate::config::Settings;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest pause between two reads of a response (not the whole transfer: big blobs stream).
const READ_TIMEOUT: Duration = Duration::from_secs(20);
const MAX_RETRIES: u32 = 3;

/// The credential the settings and environment select (no secrets in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialChoice {
    SharedKey,
    ManagedIdentity { client_id: Option<String> },
    WorkloadIdentity,
    DeveloperTools,
}

/// Picks the credential; `env` reads an environment variable (empty counts as unset).
pub fn choose_credential(settings: &Settings) -> Result<CredentialChoice, BlobStoreError> {
    let identity = &settings.azure_identity;
    if settings.storage_connection_string.is_some() {
        return Ok(CredentialChoice::SharedKey);
    }
    if identity.managed_identity_endpoint {
        if !identity.managed_identity_header {
            return Err(BlobStoreError::Identity(
                "IDENTITY_ENDPOINT is set but IDENTITY_HEADER is not; refusing to fall back to \
                 the VM metadata endpoint"
                    .into(),
            ));
        }
        return Ok(CredentialChoice::ManagedIdentity {
            client_id: settings.identity_client_id.clone(),
        });
    }
    if identity.workload_identity {
        return Ok(CredentialChoice::WorkloadIdentity);
    }
    Ok(CredentialChoice::DeveloperTools)
}

/// How requests are authorised.
pub(crate) enum Auth {
    SharedKey(AccountKey),
    Token(Arc<dyn TokenCredential>),
}

/// The HTTP client of every storage and identity request.
pub(crate) fn http_client(ca_file: Option<&Path>) -> Result<reqwest::Client, BlobStoreError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        // Partitioned downloads need the bytes as stored.
        .no_gzip()
        .no_deflate()
        .no_brotli()
        .no_zstd();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| BlobStoreError::CaFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| BlobStoreError::CaFile {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(BlobStoreError::CaFile {
                path: path.display().to_string(),
                message: "no PEM certificate in it".into(),
            });
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| BlobStoreError::HttpClient(e.to_string()))
}

/// Client options: our transport, few quick retries, and the given per-try policies.
pub(crate) fn client_options(
    client: &reqwest::Client,
    per_try_policies: Vec<Arc<dyn Policy>>,
) -> ClientOptions {
    ClientOptions {
        transport: Some(Transport::new(Arc::new(client.clone()))),
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(200),
            max_retries: MAX_RETRIES,
            max_total_elapsed: azure_core::time::Duration::seconds(10),
            max_delay: azure_core::time::Duration::seconds(2),
        }),
        per_try_policies,
        ..Default::default()
    }
}

/// Builds the credential the settings select.
pub(crate) fn auth(settings: &Settings, client: &reqwest::Client) -> Result<Auth, BlobStoreError> {
    let choice = choose_credential(settings)?;
    let options = || client_options(client, Vec::new());
    let credential: Arc<dyn TokenCredential> = match choice {
        CredentialChoice::SharedKey => {
            let text = settings.storage_connection_string.as_deref().unwrap_or("");
            return Ok(Auth::SharedKey(AccountKey::from_connection_string(text)?));
        }
        CredentialChoice::ManagedIdentity { client_id } => {
            tracing::info!(
                user_assigned = client_id.is_some(),
                "blob store uses managed identity"
            );
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.map(UserAssignedId::ClientId),
                client_options: options(),
            }))
            .map_err(|e| BlobStoreError::Identity(super::describe(&e)))?
        }
        CredentialChoice::WorkloadIdentity => {
            tracing::info!("blob store uses workload identity");
            WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions {
                    client_options: options(),
                },
                ..Default::default()
            }))
            .map_err(|e| BlobStoreError::Identity(super::describe(&e)))?
        }
        CredentialChoice::DeveloperTools => {
            tracing::info!("blob store uses the developer's Azure CLI login");
            DeveloperToolsCredential::new(None)
                .map_err(|e| BlobStoreError::Identity(super::describe(&e)))?
        }
    };
    Ok(Auth::Token(credential))
}

/// The signing policy for shared-key auth.
pub(crate) fn shared_key_policy(key: &AccountKey) -> Arc<dyn Policy> {
    Arc::new(SharedKeyPolicy::new(key.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(connection_string: Option<&str>, client_id: Option<&str>) -> Settings {
        let mut s = Settings::from_env(Some("http://127.0.0.1:1/devstoreaccount1/models"))
            .expect("default settings");
        s.storage_connection_string = connection_string.map(str::to_string);
        s.identity_client_id = client_id.map(str::to_string);
        s
    }

    fn choose(s: &Settings, vars: &[(&str, &str)]) -> Result<CredentialChoice, BlobStoreError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut s = s.clone();
        s.azure_identity = Settings::from_lookup(None, |name| map.get(name).cloned())
            .expect("settings")
            .azure_identity;
        choose_credential(&s)
    }

    #[test]
    fn the_credential_follows_the_environment() {
        let shared = settings(Some("UseDevelopmentStorage=true"), None);
        assert_eq!(
            choose(
                &shared,
                &[("IDENTITY_ENDPOINT", "http://x"), ("IDENTITY_HEADER", "h")]
            )
            .unwrap(),
            CredentialChoice::SharedKey
        );
        let token = settings(None, Some("client-1"));
        assert_eq!(
            choose(
                &token,
                &[("IDENTITY_ENDPOINT", "http://x"), ("IDENTITY_HEADER", "h")]
            )
            .unwrap(),
            CredentialChoice::ManagedIdentity {
                client_id: Some("client-1".into())
            }
        );
        assert!(matches!(
            choose(&token, &[("IDENTITY_ENDPOINT", "http://x")]),
            Err(BlobStoreError::Identity(_))
        ));
        assert_eq!(
            choose(
                &token,
                &[
                    ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
                    ("AZURE_TENANT_ID", "t"),
                    ("AZURE_CLIENT_ID", "c")
                ]
            )
            .unwrap(),
            CredentialChoice::WorkloadIdentity
        );
        assert_eq!(
            choose(&token, &[("AZURE_FEDERATED_TOKEN_FILE", "/t")]).unwrap(),
            CredentialChoice::DeveloperTools
        );
    }
}
