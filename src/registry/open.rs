//! Opens the model store the settings name.

use thiserror::Error;

use super::blob::BlobStore;
use super::{LocalStore, Registry, Store};
use crate::config::{Settings, StoreLocation};

#[derive(Debug, Error)]
pub enum OpenStoreError {
    #[error("cannot open the model store: {0}")]
    Invalid(String),
}

/// The registry over the store named by the settings.
pub async fn open_registry(settings: &Settings) -> Result<Registry, OpenStoreError> {
    let store = match &settings.store {
        StoreLocation::Directory(path) => Store::Local(LocalStore::new(path.clone())),
        StoreLocation::BlobContainer(url) => Store::Blob(
            BlobStore::open(settings, url).map_err(|e| OpenStoreError::Invalid(e.to_string()))?,
        ),
    };
    Ok(Registry::new(store))
}
