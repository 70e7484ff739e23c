//! Shared-key authentication for Blob Storage: the account key from a connection string, and
//! a pipeline policy that signs each request with it (the SDK has no shared-key support).
//!
//! Meant for the local emulator and development accounts. Production uses a token credential
//! (see `auth.rs`). The key is never logged, formatted or put into an error message.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Request};
use azure_core::time::{to_rfc7231, OffsetDateTime};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// The emulator's account, documented publicly by the emulator and the same on every machine.
pub const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Why a connection string was refused. The messages never repeat the string or the key.
#[derive(Debug, Error, PartialEq)]
pub enum ConnectionStringError {
    #[error(
        "the storage connection string has no AccountName (and is not UseDevelopmentStorage=true)"
    )]
    MissingAccountName,
    #[error("the storage connection string has no AccountKey; only shared-key connection strings are supported")]
    MissingAccountKey,
    #[error("the AccountKey in the storage connection string is not valid base64")]
    KeyNotBase64,
    #[error("the storage connection string has a part without `=` (expected Key=Value;Key=Value)")]
    Malformed,
}

/// An account name and its key. `Debug` shows the account only.
#[derive(Clone)]
pub struct AccountKey {
    account: String,
    key: Arc<[u8]>,
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountKey")
            .field("account", &self.account)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl AccountKey {
    /// Parses `UseDevelopmentStorage=true` or a connection string with `AccountName` and
    /// `AccountKey` (other parts such as `DefaultEndpointsProtocol` or `BlobEndpoint` are ignored:
    /// the endpoint comes from the store URL).
    pub fn from_connection_string(text: &str) -> Result<AccountKey, ConnectionStringError> {
        let mut account = None;
        let mut key = None;
        let mut development = false;
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or(ConnectionStringError::Malformed)?;
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "accountname" => account = Some(value.to_string()),
                "accountkey" => key = Some(value.to_string()),
                "usedevelopmentstorage" => development = value.eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        if development && account.is_none() && key.is_none() {
            account = Some(EMULATOR_ACCOUNT.to_string());
            key = Some(EMULATOR_KEY.to_string());
        }
        let account = account
            .filter(|a| !a.is_empty())
            .ok_or(ConnectionStringError::MissingAccountName)?;
        let key = key
            .filter(|k| !k.is_empty())
            .ok_or(ConnectionStringError::MissingAccountKey)?;
        let key = BASE64
            .decode(key.as_bytes())
            .map_err(|_| ConnectionStringError::KeyNotBase64)?;
        Ok(AccountKey {
            account,
            key: key.into(),
        })
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    fn sign(&self, string_to_sign: &str) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        mac.update(string_to_sign.as_bytes());
        BASE64.encode(mac.finalize().into_bytes())
    }

    /// The `Authorization` header value for a request whose headers are final.
    fn authorization(&self, request: &Request) -> String {
        let signature = self.sign(&string_to_sign(request, &self.account));
        format!("SharedKey {}:{signature}", self.account)
    }
}

/// Signs every try of a request (the date and the signature must be fresh on each retry).
#[derive(Debug)]
pub struct SharedKeyPolicy {
    key: AccountKey,
}

impl SharedKeyPolicy {
    pub fn new(key: AccountKey) -> Self {
        Self { key }
    }
}

#[async_trait]
impl Policy for SharedKeyPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        request.insert_header("x-ms-date", to_rfc7231(&OffsetDateTime::now_utc()));
        let authorization = self.key.authorization(request);
        request.insert_header("authorization", authorization);
        match next.split_first() {
            Some((policy, rest)) => policy.send(ctx, request, rest).await,
            None => Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Other,
                "the shared-key policy must not be the last policy of the pipeline",
            )),
        }
    }
}

fn header<'a>(request: &'a Request, name: &'static str) -> &'a str {
    request
        .headers()
        .get_optional_str(&azure_core::http::headers::HeaderName::from_static(name))
        .unwrap_or("")
}

/// The Blob service's string-to-sign (shared key, version 2015-02-21 and later).
pub(crate) fn string_to_sign(request: &Request, account: &str) -> String {
    let content_length = match header(request, "content-length") {
        "" => request
            .body()
            .len()
            .map(|n| n.to_string())
            .unwrap_or_default(),
        value => value.to_string(),
    };
    let content_length = if content_length == "0" {
        String::new()
    } else {
        content_length
    };
    let mut text = String::with_capacity(256);
    for part in [
        request.method().as_str(),
        header(request, "content-encoding"),
        header(request, "content-language"),
        content_length.as_str(),
        header(request, "content-md5"),
        header(request, "content-type"),
        "", // Date: x-ms-date is used instead.
        header(request, "if-modified-since"),
        header(request, "if-match"),
        header(request, "if-none-match"),
        header(request, "if-unmodified-since"),
        header(request, "range"),
    ] {
        text.push_str(part);
        text.push('\n');
    }
    let mut ms_headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_ascii_lowercase(), value.as_str()))
        .filter(|(name, _)| name.starts_with("x-ms-"))
        .map(|(name, value)| (name, value.trim().to_string()))
        .collect();
    ms_headers.sort();
    for (name, value) in ms_headers {
        text.push_str(&name);
        text.push(':');
        text.push_str(&value);
        text.push('\n');
    }
    text.push_str(&canonicalized_resource(request.url(), account));
    text
}

fn canonicalized_resource(url: &url::Url, account: &str) -> String {
    let mut resource = format!("/{account}{}", url.path());
    let mut params: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in url.query_pairs() {
        let name = name.to_ascii_lowercase();
        match params.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value.into_owned()),
            None => params.push((name, vec![value.into_owned()])),
        }
    }
    params.sort();
    for (name, mut values) in params {
        values.sort();
        resource.push('\n');
        resource.push_str(&name);
        resource.push(':');
        resource.push_str(&values.join(","));
    }
    resource
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::http::Method;

    #[test]
    fn development_storage_is_the_emulator_account() {
        let key = AccountKey::from_connection_string("UseDevelopmentStorage=true").unwrap();
        assert_eq!(key.account(), EMULATOR_ACCOUNT);
        assert_eq!(key.key.len(), 64);
    }

    #[test]
    fn full_connection_strings_are_parsed_and_never_echoed() {
        let text = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0LWtleQ==;EndpointSuffix=core.windows.net";
        let key = AccountKey::from_connection_string(text).unwrap();
        assert_eq!(key.account(), "acct");
        assert!(!format!("{key:?}").contains("c2VjcmV0"));

        let bad = "AccountName=acct;AccountKey=not*base64!";
        let error = AccountKey::from_connection_string(bad).unwrap_err();
        assert_eq!(error, ConnectionStringError::KeyNotBase64);
        assert!(!error.to_string().contains("not*base64"));
        assert_eq!(
            AccountKey::from_connection_string("AccountName=acct").unwrap_err(),
            ConnectionStringError::MissingAccountKey
        );
        assert_eq!(
            AccountKey::from_connection_string("garbage").unwrap_err(),
            ConnectionStringError::Malformed
        );
    }

    #[test]
    fn string_to_sign_follows_the_documented_layout() {
        let url = url::Url::parse(
            "http://127.0.0.1:10000/devstoreaccount1/models?restype=container&comp=list&prefix=a%20b",
        )
        .unwrap();
        let mut request = Request::new(url, Method::Get);
        request.insert_header("x-ms-version", "2026-04-06");
        request.insert_header("x-ms-date", "Mon, 01 Jun 2026 10:00:00 GMT");
        request.insert_header("if-none-match", "\"0x1\"");
        request.insert_header("user-agent", "ignored");
        let text = string_to_sign(&request, "devstoreaccount1");
        assert_eq!(
            text,
            "GET\n\n\n\n\n\n\n\n\n\"0x1\"\n\n\n\
             x-ms-date:Mon, 01 Jun 2026 10:00:00 GMT\nx-ms-version:2026-04-06\n\
             /devstoreaccount1/devstoreaccount1/models\ncomp:list\nprefix:a b\nrestype:container"
        );
    }
}
