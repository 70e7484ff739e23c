//! The model store in a Blob Storage container (Azure, or the local emulator), through the
//! official SDK (`azure_storage_blob`).
//!
//! Keys as in every store: `<version>/model.bin`, `<version>/card.json`, `champion`.
//! - A version is written model first, card last, and `list_versions` lists only versions whose
//!   card exists: a writer that dies half-way leaves nothing visible.
//! - The champion pointer moves by compare-and-swap on its ETag (`If-Match`, or
//!   `If-None-Match: *` to create it), and only to a version whose card exists.
//! - Claims (`.claims/<key>.json`) are created with `If-None-Match: *` and replaced or
//!   deleted with `If-Match`, so exactly one instance holds a claim at a time.
//! - Reading the pointer with a known ETag is a conditional GET: an unchanged pointer costs one
//!   small request answered `304 Not Modified`.
//!
//! [`Container`] is the small blob API the store is built on; it also serves the training-data
//! container (newest upload, rejection reports). Authentication and HTTP settings: `auth.rs`.
//! Errors: unreachable store, timeouts, throttling and 5xx are [`StoreError::Unavailable`]
//! (transient); 404 is `NotFound`; no error message contains a key or a token.

mod auth;
mod shared_key;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use azure_core::error::ErrorKind;
use azure_core::http::{Etag, RequestContent, StatusCode, Url};
use azure_core::time::OffsetDateTime;
use azure_storage_blob::models::{
    BlobClientDeleteOptions, BlobClientDownloadOptions, BlobClientUploadOptions,
};
use azure_storage_blob::{BlobClient, BlobContainerClient, BlobContainerClientOptions};
use futures::StreamExt;
use thiserror::Error;

use super::check_version_name;
use super::faults;
use super::{Champion, ChampionPointer, ETag, ModelStore, PointerRead, StoreError};
use crate::config::Settings;

pub use auth::{choose_credential, CredentialChoice};
pub use shared_key::{AccountKey, ConnectionStringError, EMULATOR_ACCOUNT};

const MODEL_FILE: &str = "model.bin";
const CARD_FILE: &str = "card.json";
const POINTER_BLOB: &str = crate::registry::store::POINTER_NAME;
/// Claims are `.claims/<key>.json`: no version id starts with a dot, so no clash.
const CLAIM_PREFIX: &str = ".claims/";
const CLAIM_SUFFIX: &str = ".json";

fn claim_blob(key: &str) -> Result<String, StoreError> {
    check_version_name(key)?;
    Ok(format!("{CLAIM_PREFIX}{key}{CLAIM_SUFFIX}"))
}

/// Why a blob store could not be set up (before any request is sent).
#[derive(Debug, Error)]
pub enum BlobStoreError {
    #[error("`{url}` is not a blob container URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error(transparent)]
    ConnectionString(#[from] ConnectionStringError),
    #[error(
        "the storage connection string is for account `{key_account}` but the URL names account `{url_account}`"
    )]
    AccountMismatch {
        key_account: String,
        url_account: String,
    },
    #[error("cannot set up the storage credential: {0}")]
    Identity(String),
    #[error("CA file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    #[error("cannot create the blob client for {url}: {message}")]
    Client { url: String, message: String },
}

/// A container URL taken apart: `https://<account>.blob.core.windows.net/<container>` or the
/// emulator's path-style `http://127.0.0.1:<port>/<account>/<container>`, optionally followed
/// by a blob name.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobUrl {
    /// The container URL, without a trailing slash.
    pub container_url: Url,
    pub account: String,
    pub container: String,
    /// The blob named after the container, if any.
    pub blob: Option<String>,
}

impl BlobUrl {
    pub fn parse(text: &str) -> Result<BlobUrl, BlobStoreError> {
        let trimmed = text.trim().trim_end_matches('/');
        // Never echo a query string: it could be a SAS token.
        let shown = trimmed.split('?').next().unwrap_or_default().to_string();
        let invalid = |reason: &str| BlobStoreError::InvalidUrl {
            url: shown.clone(),
            reason: reason.to_string(),
        };
        let url = Url::parse(trimmed).map_err(|e| invalid(&e.to_string()))?;
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err(invalid(
                "the scheme must be https (or http for a local emulator)",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "a query string is not supported (no SAS tokens: use a connection string or an identity)",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("credentials in the URL are not supported"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| invalid("no host"))?
            .to_string();
        let path_style = matches!(
            url.host(),
            Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_))
        ) || host == "localhost";
        let segments: Vec<String> = url
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        let (account, rest) = if path_style {
            match segments.split_first() {
                Some((account, rest)) => (account.clone(), rest.to_vec()),
                None => return Err(invalid("the path must be /<account>/<container>")),
            }
        } else {
            let account = host.split('.').next().unwrap_or_default().to_string();
            (account, segments)
        };
        let Some((container, blob)) = rest.split_first() else {
            return Err(invalid("no container name in the path"));
        };
        let valid_container = (3..=63).contains(&container.len())
            && container
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !container.starts_with('-')
            && !container.ends_with('-');
        if !valid_container {
            return Err(invalid(
                "container names are 3 to 63 lowercase letters, digits and hyphens",
            ));
        }
        let mut container_url = url.clone();
        {
            let mut path = container_url
                .path_segments_mut()
                .map_err(|_| invalid("not a base URL"))?;
            path.clear();
            if path_style {
                path.push(&account);
            }
            path.push(container);
        }
        let blob = (!blob.is_empty()).then(|| {
            blob.iter()
                .map(|s| percent_decode(s))
                .collect::<Vec<_>>()
                .join("/")
        });
        Ok(BlobUrl {
            container_url,
            account,
            container: container.clone(),
            blob,
        })
    }

    /// Whether the account name is part of the URL (emulator path style or `*.blob.core.*`),
    /// so that it can be checked against a connection string.
    fn names_account(&self) -> bool {
        let host = self.container_url.host_str().unwrap_or_default();
        host.contains(".blob.core.")
            || self
                .container_url
                .path_segments()
                .is_some_and(|s| s.count() == 2)
    }
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(value) = segment
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                out.push(value);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The HTTP client and credential of one opened store or container. Each open makes its own:
/// a pooled HTTP client belongs to the async runtime that used it first, so it is not shared
/// process-wide.
struct Connection {
    http: reqwest::Client,
    auth: auth::Auth,
}

fn connection(settings: &Settings) -> Result<Connection, BlobStoreError> {
    let http = auth::http_client(settings.storage_ca_file.as_deref())?;
    let auth = auth::auth(settings, &http)?;
    Ok(Connection { http, auth })
}

/// A blob's content and ETag.
#[derive(Debug, Clone)]
pub struct BlobData {
    pub bytes: Vec<u8>,
    pub etag: Option<String>,
}

/// A listed blob.
#[derive(Debug, Clone)]
pub struct BlobEntry {
    pub name: String,
    pub etag: Option<String>,
    pub last_modified: Option<OffsetDateTime>,
    pub size: Option<u64>,
}

/// The precondition of a write.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteCondition {
    Overwrite,
    /// `If-None-Match: *`: fails with `Conflict` if the blob exists.
    CreateOnly,
    /// `If-Match`: fails with `Conflict` unless the blob still has this ETag.
    IfMatch(String),
}

/// One blob container: reads, conditional writes, listing.
#[derive(Clone)]
pub struct Container {
    client: Arc<BlobContainerClient>,
    location: String,
}

impl fmt::Debug for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Container")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Container {
    /// A client for the container of `url`, authenticated as the settings say. Sends nothing.
    pub fn open(url: &BlobUrl, settings: &Settings) -> Result<Container, BlobStoreError> {
        let connection = connection(settings)?;
        let (credential, policies) = match &connection.auth {
            auth::Auth::SharedKey(key) => {
                if url.names_account() && key.account() != url.account {
                    return Err(BlobStoreError::AccountMismatch {
                        key_account: key.account().to_string(),
                        url_account: url.account.clone(),
                    });
                }
                (None, vec![auth::shared_key_policy(key)])
            }
            auth::Auth::Token(credential) => (Some(credential.clone()), Vec::new()),
        };
        let options = BlobContainerClientOptions {
            client_options: auth::client_options(&connection.http, policies),
            ..Default::default()
        };
        let location = url.container_url.to_string();
        let client = BlobContainerClient::new(url.container_url.clone(), credential, Some(options))
            .map_err(|e| BlobStoreError::Client {
                url: location.clone(),
                message: describe(&e),
            })?;
        Ok(Container {
            client: Arc::new(client),
            location,
        })
    }

    /// The container URL (never contains credentials).
    pub fn location(&self) -> &str {
        &self.location
    }

    fn blob(&self, name: &str) -> BlobClient {
        self.client.blob_client(name)
    }

    /// The SDK's client of this container, for the prediction log's append blobs.
    pub(crate) fn client(&self) -> &BlobContainerClient {
        &self.client
    }

    /// Creates the container if it does not exist.
    pub async fn create_if_missing(&self) -> Result<(), StoreError> {
        match self.client.create(None).await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::Conflict) => Ok(()),
            Err(e) => Err(store_error(&self.location, e)),
        }
    }

    pub async fn read(&self, name: &str) -> Result<BlobData, StoreError> {
        self.read_if_changed(name, None)
            .await?
            .ok_or_else(|| StoreError::Other(format!("{name}: unexpected 304 Not Modified")))
    }

    /// Reads the bytes `range` of a blob (fewer when the blob ends before its end).
    pub async fn read_range(
        &self,
        name: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>, StoreError> {
        let options = BlobClientDownloadOptions {
            range: Some(range.into()),
            ..Default::default()
        };
        let result = self
            .blob(name)
            .download(Some(options))
            .await
            .map_err(|e| store_error(name, e))?;
        let bytes = result
            .body
            .collect()
            .await
            .map_err(|e| store_error(name, e))?;
        Ok(Vec::from(bytes))
    }

    /// Reads a blob unless it still has the ETag `known` (then `None`).
    pub async fn read_if_changed(
        &self,
        name: &str,
        known: Option<&str>,
    ) -> Result<Option<BlobData>, StoreError> {
        let options = BlobClientDownloadOptions {
            if_none_match: known.map(Etag::from),
            ..Default::default()
        };
        let result = match self.blob(name).download(Some(options)).await {
            Ok(result) => result,
            Err(e) if e.http_status() == Some(StatusCode::NotModified) => return Ok(None),
            Err(e) => return Err(store_error(name, e)),
        };
        let etag = result.properties.etag.as_ref().map(|e| e.to_string());
        if known.is_some() && etag.as_deref() == known {
            return Ok(None);
        }
        let bytes = result
            .body
            .collect()
            .await
            .map_err(|e| store_error(name, e))?;
        Ok(Some(BlobData {
            bytes: Vec::from(bytes),
            etag,
        }))
    }

    /// Writes a blob under a precondition; returns its new ETag. Creates a missing container.
    pub async fn write(
        &self,
        name: &str,
        bytes: Vec<u8>,
        condition: WriteCondition,
        content_type: &str,
    ) -> Result<String, StoreError> {
        let content = azure_core::Bytes::from(bytes);
        let mut created_container = false;
        loop {
            let mut options = BlobClientUploadOptions {
                blob_content_type: Some(content_type.to_string()),
                ..Default::default()
            };
            match &condition {
                WriteCondition::Overwrite => {}
                WriteCondition::CreateOnly => options.if_none_match = Some(Etag::from("*")),
                WriteCondition::IfMatch(tag) => options.if_match = Some(Etag::from(tag.as_str())),
            }
            let body: RequestContent<azure_core::Bytes, azure_core::http::NoFormat> =
                content.clone().into();
            let error = match self.blob(name).upload(body, Some(options)).await {
                Ok(result) => {
                    return result.etag.map(|e| e.to_string()).ok_or_else(|| {
                        StoreError::Other(format!("{name}: the write returned no ETag"))
                    })
                }
                Err(error) => error,
            };
            let status = error.http_status().map(u16::from);
            let container_missing = error_code(&error) == Some("ContainerNotFound");
            match (status, &condition) {
                (Some(412), _) | (Some(409), WriteCondition::CreateOnly) => {
                    return Err(StoreError::Conflict)
                }
                // The pointer being replaced is gone: it changed since it was read.
                (Some(404), WriteCondition::IfMatch(_)) => return Err(StoreError::Conflict),
                (Some(404), _) if container_missing && !created_container => {
                    self.create_if_missing().await?;
                    created_container = true;
                }
                _ => return Err(store_error(name, error)),
            }
        }
    }

    pub async fn exists(&self, name: &str) -> Result<bool, StoreError> {
        match self.blob(name).get_properties(None).await {
            Ok(_) => Ok(true),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(false),
            Err(e) => Err(store_error(name, e)),
        }
    }

    /// Deletes a blob; `false` if there was none.
    pub async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        match self.blob(name).delete(None).await {
            Ok(_) => Ok(true),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(false),
            Err(e) => Err(store_error(name, e)),
        }
    }

    /// Deletes a blob only if it still has the ETag `expected`; `false` if it changed or is
    /// gone.
    pub async fn delete_if_match(&self, name: &str, expected: &str) -> Result<bool, StoreError> {
        let options = BlobClientDeleteOptions {
            if_match: Some(Etag::from(expected)),
            ..Default::default()
        };
        match self.blob(name).delete(Some(options)).await {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.http_status(),
                    Some(StatusCode::NotFound) | Some(StatusCode::PreconditionFailed)
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(store_error(name, e)),
        }
    }

    /// Every blob in the container (none if the container does not exist).
    pub async fn list(&self) -> Result<Vec<BlobEntry>, StoreError> {
        let mut pager = self
            .client
            .list_blobs(None)
            .map_err(|e| store_error(&self.location, e))?;
        let mut entries = Vec::new();
        while let Some(item) = pager.next().await {
            let item = match item {
                Ok(item) => item,
                Err(e) if e.http_status() == Some(StatusCode::NotFound) => return Ok(Vec::new()),
                Err(e) => return Err(store_error(&self.location, e)),
            };
            let Some(name) = item.name else { continue };
            let properties = item.properties;
            entries.push(BlobEntry {
                name,
                etag: properties
                    .as_ref()
                    .and_then(|p| p.etag.as_ref())
                    .map(|e| e.to_string()),
                last_modified: properties.as_ref().and_then(|p| p.last_modified),
                size: properties.as_ref().and_then(|p| p.content_length),
            });
        }
        Ok(entries)
    }
}

/// The registry in a blob container.
#[derive(Debug, Clone)]
pub struct BlobStore {
    container: Container,
}

impl BlobStore {
    /// Opens the store at a container URL with the settings' credentials. Sends nothing; the
    /// container is created by the first write if missing.
    pub fn open(settings: &Settings, container_url: &str) -> Result<BlobStore, BlobStoreError> {
        let url = BlobUrl::parse(container_url)?;
        if url.blob.is_some() {
            return Err(BlobStoreError::InvalidUrl {
                url: url.container_url.to_string(),
                reason: "the model store is a container, not a blob".into(),
            });
        }
        Ok(BlobStore {
            container: Container::open(&url, settings)?,
        })
    }

    pub fn container(&self) -> &Container {
        &self.container
    }
}

impl ModelStore for BlobStore {
    fn location(&self) -> String {
        self.container.location().to_string()
    }

    async fn put_version(
        &self,
        version: &str,
        model: Vec<u8>,
        card_json: Vec<u8>,
    ) -> Result<(), StoreError> {
        check_version_name(version)?;
        let card = format!("{version}/{CARD_FILE}");
        if self.container.exists(&card).await? {
            return Err(StoreError::AlreadyExists(version.to_string()));
        }
        // Model first, card last: the version becomes visible only when complete.
        let model_key = format!("{version}/{MODEL_FILE}");
        self.container
            .write(
                &model_key,
                model,
                WriteCondition::Overwrite,
                "application/octet-stream",
            )
            .await?;
        faults::reached(faults::AFTER_MODEL);
        match self
            .container
            .write(
                &card,
                card_json,
                WriteCondition::CreateOnly,
                "application/json",
            )
            .await
        {
            Ok(_) => {
                faults::reached(faults::AFTER_CARD);
                Ok(())
            }
            Err(StoreError::Conflict) => Err(StoreError::AlreadyExists(version.to_string())),
            Err(other) => Err(other),
        }
    }

    async fn get_model(&self, version: &str) -> Result<Vec<u8>, StoreError> {
        check_version_name(version)?;
        Ok(self
            .container
            .read(&format!("{version}/{MODEL_FILE}"))
            .await?
            .bytes)
    }

    async fn get_card(&self, version: &str) -> Result<Vec<u8>, StoreError> {
        check_version_name(version)?;
        Ok(self
            .container
            .read(&format!("{version}/{CARD_FILE}"))
            .await?
            .bytes)
    }

    async fn list_versions(&self) -> Result<Vec<String>, StoreError> {
        let suffix = format!("/{CARD_FILE}");
        let mut versions: Vec<String> = self
            .container
            .list()
            .await?
            .into_iter()
            .filter_map(|entry| entry.name.strip_suffix(&suffix).map(str::to_string))
            .filter(|version| check_version_name(version).is_ok())
            .collect();
        versions.sort();
        versions.dedup();
        Ok(versions)
    }

    async fn delete_version(&self, version: &str) -> Result<(), StoreError> {
        check_version_name(version)?;
        // Card first: the version disappears from listings before its model goes.
        let had_card = self
            .container
            .delete(&format!("{version}/{CARD_FILE}"))
            .await?;
        let had_model = self
            .container
            .delete(&format!("{version}/{MODEL_FILE}"))
            .await?;
        if had_card || had_model {
            Ok(())
        } else {
            Err(StoreError::NotFound(version.to_string()))
        }
    }

    async fn delete_card(&self, version: &str) -> Result<(), StoreError> {
        check_version_name(version)?;
        let card = format!("{version}/{CARD_FILE}");
        if self.container.delete(&card).await? {
            Ok(())
        } else {
            Err(StoreError::NotFound(card))
        }
    }

    async fn restore_card(&self, version: &str, card_json: Vec<u8>) -> Result<(), StoreError> {
        check_version_name(version)?;
        match self
            .container
            .write(
                &format!("{version}/{CARD_FILE}"),
                card_json,
                WriteCondition::CreateOnly,
                "application/json",
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict) => Err(StoreError::AlreadyExists(version.to_string())),
            Err(other) => Err(other),
        }
    }

    async fn sweep_incomplete(&self, older_than: Duration) -> Result<Vec<String>, StoreError> {
        let entries = self.container.list().await?;
        let with_card: HashSet<&str> = entries
            .iter()
            .filter_map(|e| e.name.strip_suffix(&format!("/{CARD_FILE}")))
            .collect();
        let cutoff = OffsetDateTime::now_utc() - older_than;
        let mut swept = Vec::new();
        for entry in &entries {
            let Some(version) = entry.name.strip_suffix(&format!("/{MODEL_FILE}")) else {
                continue;
            };
            let old_enough = entry.last_modified.is_some_and(|t| t <= cutoff);
            if with_card.contains(version) || !old_enough {
                continue;
            }
            if self.container.delete(&entry.name).await? {
                swept.push(entry.name.clone());
            }
        }
        Ok(swept)
    }

    async fn read_champion(&self, known: Option<&ETag>) -> Result<PointerRead, StoreError> {
        let read = self
            .container
            .read_if_changed(POINTER_BLOB, known.map(|e| e.0.as_str()))
            .await;
        let blob = match read {
            Ok(Some(blob)) => blob,
            Ok(None) => return Ok(PointerRead::Unchanged),
            Err(StoreError::NotFound(_)) => return Ok(PointerRead::Absent),
            Err(other) => return Err(other),
        };
        let champion: Champion = serde_json::from_slice(&blob.bytes)
            .map_err(|e| StoreError::Other(format!("champion pointer is unreadable: {e}")))?;
        let etag = blob
            .etag
            .ok_or_else(|| StoreError::Other("champion pointer has no ETag".into()))?;
        Ok(PointerRead::Current(ChampionPointer {
            champion,
            etag: ETag(etag),
        }))
    }

    async fn write_champion(
        &self,
        champion: &Champion,
        expected: Option<&ETag>,
    ) -> Result<ETag, StoreError> {
        check_version_name(&champion.version)?;
        // The pointer may only name a complete version.
        if !self
            .container
            .exists(&format!("{}/{CARD_FILE}", champion.version))
            .await?
        {
            return Err(StoreError::NotFound(champion.version.clone()));
        }
        let bytes =
            serde_json::to_vec_pretty(champion).map_err(|e| StoreError::Other(e.to_string()))?;
        let condition = match expected {
            Some(tag) => WriteCondition::IfMatch(tag.0.clone()),
            None => WriteCondition::CreateOnly,
        };
        faults::reached(faults::POINTER_WRITE);
        let etag = self
            .container
            .write(POINTER_BLOB, bytes, condition, "application/json")
            .await?;
        Ok(ETag(etag))
    }

    async fn model_lengths(&self) -> Result<HashMap<String, u64>, StoreError> {
        let suffix = format!("/{MODEL_FILE}");
        Ok(self
            .container
            .list()
            .await?
            .into_iter()
            .filter_map(|entry| {
                let version = entry.name.strip_suffix(&suffix)?.to_string();
                Some((version, entry.size?))
            })
            .collect())
    }

    async fn create_claim(&self, key: &str, bytes: Vec<u8>) -> Result<ETag, StoreError> {
        let name = claim_blob(key)?;
        let etag = self
            .container
            .write(&name, bytes, WriteCondition::CreateOnly, "application/json")
            .await?;
        Ok(ETag(etag))
    }

    async fn read_claim(&self, key: &str) -> Result<Option<(Vec<u8>, ETag)>, StoreError> {
        let name = claim_blob(key)?;
        match self.container.read(&name).await {
            Ok(blob) => {
                let etag = blob
                    .etag
                    .ok_or_else(|| StoreError::Other(format!("{name} has no ETag")))?;
                Ok(Some((blob.bytes, ETag(etag))))
            }
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    async fn replace_claim(
        &self,
        key: &str,
        bytes: Vec<u8>,
        expected: &ETag,
    ) -> Result<ETag, StoreError> {
        let name = claim_blob(key)?;
        let condition = WriteCondition::IfMatch(expected.0.clone());
        let etag = self
            .container
            .write(&name, bytes, condition, "application/json")
            .await?;
        Ok(ETag(etag))
    }

    async fn delete_claim(&self, key: &str, expected: &ETag) -> Result<bool, StoreError> {
        let name = claim_blob(key)?;
        self.container.delete_if_match(&name, &expected.0).await
    }

    async fn list_claims(&self) -> Result<Vec<String>, StoreError> {
        let mut keys: Vec<String> = self
            .container
            .list()
            .await?
            .into_iter()
            .filter_map(|entry| {
                entry
                    .name
                    .strip_prefix(CLAIM_PREFIX)?
                    .strip_suffix(CLAIM_SUFFIX)
                    .map(str::to_string)
            })
            .filter(|key| check_version_name(key).is_ok())
            .collect();
        keys.sort();
        Ok(keys)
    }
}

fn error_code(error: &azure_core::Error) -> Option<&str> {
    match error.kind() {
        ErrorKind::HttpResponse { error_code, .. } => error_code.as_deref(),
        _ => None,
    }
}

/// An SDK error as one line: status and service error code, or the error and its causes.
/// Response bodies are left out.
pub(crate) fn describe(error: &azure_core::Error) -> String {
    let mut text = match error.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => {
            let code = u16::from(*status);
            match error_code {
                Some(service_code) => format!("HTTP {code} ({service_code})"),
                None => format!("HTTP {code}"),
            }
        }
        _ => error.to_string(),
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Classifies an SDK error for the blob or container `what`.
pub(crate) fn store_error(what: &str, error: azure_core::Error) -> StoreError {
    let detail = describe(&error);
    match error.kind() {
        ErrorKind::HttpResponse { status, .. } => match u16::from(*status) {
            404 => StoreError::NotFound(what.to_string()),
            401 | 403 => StoreError::Unauthorized(format!(
                "access to {what} was refused ({detail}): check the storage credentials \
                 (the connection string's key, or the identity's role on the container)"
            )),
            408 | 429 | 500..=599 => StoreError::Unavailable(format!("{what}: {detail}")),
            _ => StoreError::Other(format!("{what}: {detail}")),
        },
        ErrorKind::Connection | ErrorKind::Io => {
            StoreError::Unavailable(format!("{what}: {detail}"))
        }
        ErrorKind::Credential => {
            StoreError::Unavailable(format!("no storage token for {what}: {detail}"))
        }
        _ => StoreError::Other(format!("{what}: {detail}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_urls_are_taken_apart() {
        let azure = BlobUrl::parse("https://acct.blob.core.windows.net/models/").unwrap();
        assert_eq!(azure.account, "acct");
        assert_eq!(azure.container, "models");
        assert_eq!(azure.blob, None);
        assert_eq!(
            azure.container_url.as_str(),
            "https://acct.blob.core.windows.net/models"
        );

        let emulator =
            BlobUrl::parse("http://127.0.0.1:10000/devstoreaccount1/training-data/a%20b.csv")
                .unwrap();
        assert_eq!(emulator.account, "devstoreaccount1");
        assert_eq!(emulator.container, "training-data");
        assert_eq!(emulator.blob.as_deref(), Some("a b.csv"));
        assert_eq!(
            emulator.container_url.as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/training-data"
        );
    }

    #[test]
    fn bad_container_urls_are_refused_without_echoing_secrets() {
        let sas =
            BlobUrl::parse("https://acct.blob.core.windows.net/models?sig=SECRET").unwrap_err();
        assert!(!sas.to_string().contains("SECRET"), "{sas}");
        assert!(BlobUrl::parse("https://acct.blob.core.windows.net/").is_err());
        assert!(BlobUrl::parse("http://127.0.0.1:10000/devstoreaccount1").is_err());
        assert!(BlobUrl::parse("https://acct.blob.core.windows.net/Bad_Name").is_err());
        assert!(BlobUrl::parse("ftp://acct.blob.core.windows.net/models").is_err());
    }
}
