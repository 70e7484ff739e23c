//! Where the prediction log, the labels and the join's results live: beside the registry but
//! apart from it. On Blob Storage a `predictions` container in the registry's account; on a
//! local store, `.predictions/` in the store directory (a name no version can take).
//!
//! Names, the same in both:
//! - `log/YYYY/MM/DD/HH/<writer>-<n>.jsonl` and `labels/YYYY/MM/DD/HH/<writer>-<n>.jsonl`:
//!   append-only, one writer each (a writer is one process of one instance), hour-partitioned
//!   by the time of the write, so no two writers ever interleave lines.
//! - `joined/labelled.csv` and `joined/report.json`: what the last join found, replaced only
//!   under the tag read before the join (compare-and-swap).
//!
//! On Blob Storage the logs are append blobs: each append is at most 1 MiB (the service takes
//! 4) and conditional on the blob's length (`x-ms-blob-condition-appendpos`), so a retried
//! append never writes a line twice; a writer starts a new blob well before the 50,000-block
//! limit.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use azure_core::http::{Etag, RequestContent, StatusCode};
use azure_core::Bytes;
use azure_storage_blob::models::{
    AppendBlobClientAppendBlockOptions, AppendBlobClientCreateOptions,
    BlobClientGetPropertiesResultHeaders, BlobContainerClientListBlobsOptions,
};
use futures::StreamExt;

use super::record::hour_partition;
use crate::config::{Settings, StoreLocation};
use crate::model::dataset::sha256_hex;
use crate::registry::blob::{store_error, BlobUrl, Container, WriteCondition};
use crate::registry::StoreError;

/// The container beside the registry's.
pub const CONTAINER: &str = crate::config::PREDICTION_LOG_CONTAINER;
/// The directory in a local store.
pub const LOCAL_DIR: &str = ".predictions";
/// Largest append. Blob Storage takes up to 4 MiB in one append; a quarter of that keeps the
/// lines in the processor's cache from formatting to writing (a logged row costs about a
/// quarter less than with 4 MiB appends) and each formatting step near a millisecond.
pub const MAX_APPEND_BYTES: usize = 1024 * 1024;
/// Appends to one blob before starting the next (the service's limit is 50,000).
pub const MAX_BLOCKS: u32 = 49_000;
/// Bytes in one log file or blob before starting the next: keeps each one a join can read
/// at once small.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The two append-only streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Log,
    Labels,
}

impl Stream {
    pub fn prefix(self) -> &'static str {
        match self {
            Stream::Log => "log/",
            Stream::Labels => "labels/",
        }
    }
}

/// The join's labelled rows.
pub const LABELLED_ROWS: &str = "joined/labelled.csv";
/// The join's report.
pub const REPORT: &str = "joined/report.json";

/// The store of the loop.
#[derive(Debug, Clone)]
pub enum LoopStore {
    Local(PathBuf),
    Blob(Container),
}

impl LoopStore {
    /// The loop's store beside the configured registry.
    pub fn open(settings: &Settings) -> Result<LoopStore, StoreError> {
        match &settings.store {
            StoreLocation::Directory(path) => Ok(LoopStore::Local(path.join(LOCAL_DIR))),
            StoreLocation::BlobContainer(url) => {
                let parsed = BlobUrl::parse(url).map_err(|e| StoreError::Other(e.to_string()))?;
                let mut container_url = parsed.container_url.clone();
                if let Ok(mut segments) = container_url.path_segments_mut() {
                    segments.pop().push(CONTAINER);
                }
                let beside = BlobUrl::parse(container_url.as_str())
                    .map_err(|e| StoreError::Other(e.to_string()))?;
                let container = Container::open(&beside, settings)
                    .map_err(|e| StoreError::Other(e.to_string()))?;
                Ok(LoopStore::Blob(container))
            }
        }
    }

    /// Where the store lives (never contains credentials).
    pub fn location(&self) -> String {
        match self {
            LoopStore::Local(root) => root.display().to_string(),
            LoopStore::Blob(container) => container.location().to_string(),
        }
    }

    /// The names in `stream` whose hour is `since_hour` (`YYYY/MM/DD/HH`) or later, sorted.
    pub async fn list(&self, stream: Stream, since_hour: &str) -> Result<Vec<String>, StoreError> {
        let mut names = self.names(stream).await?;
        names.retain(|name| hour_of(stream, name).is_some_and(|hour| hour >= since_hour));
        names.sort();
        Ok(names)
    }

    /// Removes the files of `stream` whose hour is before `before_hour` (`YYYY/MM/DD/HH`),
    /// the oldest first and at most `limit`, and on a local store the hour directories left
    /// empty; the number removed. A name without an hour partition is left alone.
    pub async fn remove_before(
        &self,
        stream: Stream,
        before_hour: &str,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let mut names = self.names(stream).await?;
        names.retain(|name| hour_of(stream, name).is_some_and(|hour| hour < before_hour));
        names.sort();
        names.truncate(limit);
        match self {
            LoopStore::Local(root) => {
                let root = root.clone();
                blocking(move || remove_local(&root, stream, &names)).await
            }
            LoopStore::Blob(container) => {
                let mut removed = 0;
                for name in names {
                    if container.delete(&name).await? {
                        removed += 1;
                    }
                }
                Ok(removed)
            }
        }
    }

    async fn names(&self, stream: Stream) -> Result<Vec<String>, StoreError> {
        match self {
            LoopStore::Local(root) => {
                let root = root.clone();
                blocking(move || list_local(&root, stream.prefix())).await
            }
            LoopStore::Blob(container) => list_blobs(container, stream.prefix()).await,
        }
    }

    /// A file's bytes.
    pub async fn read(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        match self {
            LoopStore::Local(root) => {
                let path = root.join(name);
                let name = name.to_string();
                blocking(move || {
                    std::fs::read(&path).map_err(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => StoreError::NotFound(name),
                        _ => StoreError::Other(format!("{}: {e}", path.display())),
                    })
                })
                .await
            }
            LoopStore::Blob(container) => Ok(container.read(name).await?.bytes),
        }
    }

    /// A result of the join and its tag, or `None` if there is none yet.
    pub async fn read_result(&self, name: &str) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        match self {
            LoopStore::Local(_) => match self.read(name).await {
                Ok(bytes) => {
                    let tag = sha256_hex(&bytes);
                    Ok(Some((bytes, tag)))
                }
                Err(StoreError::NotFound(_)) => Ok(None),
                Err(other) => Err(other),
            },
            LoopStore::Blob(container) => match container.read(name).await {
                Ok(blob) => Ok(Some((blob.bytes, blob.etag.unwrap_or_default()))),
                Err(StoreError::NotFound(_)) => Ok(None),
                Err(other) => Err(other),
            },
        }
    }

    /// Replaces a result of the join if it still has the tag `expected` (`None`: if there is
    /// none); `Conflict` otherwise.
    pub async fn write_result(
        &self,
        name: &str,
        bytes: Vec<u8>,
        expected: Option<&str>,
    ) -> Result<(), StoreError> {
        match self {
            LoopStore::Local(root) => {
                let root = root.clone();
                let name = name.to_string();
                let expected = expected.map(str::to_string);
                blocking(move || write_local_result(&root, &name, &bytes, expected.as_deref()))
                    .await
            }
            LoopStore::Blob(container) => {
                let condition = match expected {
                    Some(tag) => WriteCondition::IfMatch(tag.to_string()),
                    None => WriteCondition::CreateOnly,
                };
                let content_type = if name.ends_with(".csv") {
                    "text/csv"
                } else {
                    "application/json"
                };
                container
                    .write(name, bytes, condition, content_type)
                    .await
                    .map(|_| ())
            }
        }
    }

    /// An appender for one writer of `stream`.
    pub fn appender(&self, stream: Stream, writer: &str) -> Appender {
        Appender {
            store: self.clone(),
            stream,
            writer: writer.to_string(),
            current: None,
            sequence: 0,
            in_flight: None,
        }
    }
}

async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| StoreError::Other(format!("the file task failed: {e}")))?
}

/// The hour partition of a name of `stream`, `YYYY/MM/DD/HH`, if it has one.
fn hour_of(stream: Stream, name: &str) -> Option<&str> {
    let hour = name.strip_prefix(stream.prefix())?.get(..13)?;
    let shaped = hour.bytes().enumerate().all(|(at, byte)| match at {
        4 | 7 | 10 => byte == b'/',
        _ => byte.is_ascii_digit(),
    });
    shaped.then_some(hour)
}

/// Removes the named files of `stream` under `root`, then their hour directories as they
/// empty (up to the stream's own directory, which stays).
fn remove_local(root: &Path, stream: Stream, names: &[String]) -> Result<u64, StoreError> {
    let stream_dir = root.join(stream.prefix().trim_end_matches('/'));
    let mut removed = 0;
    for name in names {
        let path = root.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::Other(format!("{}: {e}", path.display()))),
        }
        // `remove_dir` refuses a directory that is not empty.
        let mut dir = path.parent();
        while let Some(parent) = dir.filter(|d| d.starts_with(&stream_dir) && *d != stream_dir) {
            if std::fs::remove_dir(parent).is_err() {
                break;
            }
            dir = parent.parent();
        }
    }
    Ok(removed)
}

fn list_local(root: &Path, prefix: &str) -> Result<Vec<String>, StoreError> {
    let mut names = Vec::new();
    let mut pending = vec![root.join(prefix.trim_end_matches('/'))];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::Other(format!("{}: {e}", dir.display()))),
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(root) {
                let name = relative.to_string_lossy().replace('\\', "/");
                if name.ends_with(".jsonl") {
                    names.push(name);
                }
            }
        }
    }
    Ok(names)
}

async fn list_blobs(container: &Container, prefix: &str) -> Result<Vec<String>, StoreError> {
    let options = BlobContainerClientListBlobsOptions {
        prefix: Some(prefix.to_string()),
        ..Default::default()
    };
    let mut pager = container
        .client()
        .list_blobs(Some(options))
        .map_err(|e| store_error(container.location(), e))?;
    let mut names = Vec::new();
    while let Some(item) = pager.next().await {
        let item = match item {
            Ok(item) => item,
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => return Ok(Vec::new()),
            Err(e) => return Err(store_error(container.location(), e)),
        };
        if let Some(name) = item.name {
            names.push(name);
        }
    }
    Ok(names)
}

fn write_local_result(
    root: &Path,
    name: &str,
    bytes: &[u8],
    expected: Option<&str>,
) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Other(format!("{name}: {e}"));
    let path = root.join(name);
    let dir = path.parent().unwrap_or(root).to_path_buf();
    std::fs::create_dir_all(&dir).map_err(io)?;
    let lock = std::fs::File::create(dir.join(".lock")).map_err(io)?;
    lock.lock().map_err(io)?;
    let current = match std::fs::read(&path) {
        Ok(bytes) => Some(sha256_hex(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    if current.as_deref() != expected {
        return Err(StoreError::Conflict);
    }
    let staging = dir.join(format!(".{}.{}", std::process::id(), fastrand_suffix()));
    std::fs::write(&staging, bytes).map_err(io)?;
    std::fs::rename(&staging, &path).map_err(io)?;
    Ok(())
}

fn fastrand_suffix() -> String {
    super::id::PredictionId::new().to_string()
}

/// The file or blob a writer appends to now.
#[derive(Debug)]
struct Current {
    name: String,
    hour: String,
    bytes: u64,
    blocks: u32,
    /// A local file, opened by the first append to it and kept open.
    file: Option<Arc<File>>,
}

/// A local write: the file it wrote to, or why it failed.
type LocalWrite = tokio::task::JoinHandle<Result<Arc<File>, LocalAppendError>>;

/// An append whose outcome the appender has not learnt: the caller stopped waiting for it (a
/// timeout), or the store's answer was lost. It is settled before the next append, so that
/// the next one neither goes beside it nor is taken for it (labels have lines of one length),
/// and a retry of the same lines finds them written rather than writing them twice.
#[derive(Debug)]
enum InFlight {
    /// An append to the current blob: the blob's length tells whether it is in.
    Blob(Bytes),
    /// A local write, which goes on in its thread when its caller stops waiting: it is waited
    /// for, so two writes never run at once on one file.
    Local(Bytes, LocalWrite),
}

/// Appends lines for one writer; starts a new file or blob on the hour, past
/// [`MAX_FILE_BYTES`] and before the block limit. Not shared: one per writer.
#[derive(Debug)]
pub struct Appender {
    store: LoopStore,
    stream: Stream,
    writer: String,
    current: Option<Current>,
    sequence: u32,
    in_flight: Option<InFlight>,
}

impl Appender {
    /// Appends `lines` (complete lines, at most [`MAX_APPEND_BYTES`]) at the time `now_ms`.
    /// On an error nothing of `lines` may be assumed written; a retry (the same lines again)
    /// never writes a line twice, and an append the caller stopped waiting for is settled
    /// before the next one. The lines are shared, not copied, with the file task or the
    /// request.
    pub async fn append(&mut self, lines: Bytes, now_ms: u64) -> Result<(), StoreError> {
        debug_assert!(lines.len() <= MAX_APPEND_BYTES);
        if let Some(in_flight) = self.in_flight.take() {
            if self.settle(in_flight).await?.as_ref() == Some(&lines) {
                return Ok(());
            }
        }
        self.roll_if_due(now_ms, lines.len()).await?;
        let Some(current) = self.current.as_mut() else {
            return Err(StoreError::Other("no log file".into()));
        };
        // What failed, and whether the file or blob can take the next append: a local write
        // cut back to where it started, or a blob append the store did not answer (settled
        // first). Otherwise the next append goes to a new file or blob, so whatever part of a
        // line a failure left stays a last line cut short (the join skips it): a local write
        // that could not be cut back, a blob that is gone or whose length is not what this
        // writer wrote.
        let failed = match &self.store {
            LoopStore::Local(root) => {
                let path = root.join(&current.name);
                let (file, data) = (current.file.clone(), lines.clone());
                let write = tokio::task::spawn_blocking(move || append_local(file, &path, &data));
                self.in_flight = Some(InFlight::Local(lines.clone(), write));
                let Some(InFlight::Local(_, write)) = self.in_flight.as_mut() else {
                    return Err(StoreError::Other("no local write".into()));
                };
                let written = write.await;
                self.in_flight = None;
                match joined(written) {
                    Ok(file) => {
                        current.file = Some(file);
                        None
                    }
                    Err(LocalAppendError { error, clean }) => Some((error, clean)),
                }
            }
            LoopStore::Blob(container) => {
                self.in_flight = Some(InFlight::Blob(lines.clone()));
                let appended =
                    append_block(container, &current.name, lines.clone(), current.bytes).await;
                let unanswered = matches!(appended, Err(StoreError::Unavailable(_)));
                if !unanswered {
                    self.in_flight = None;
                }
                appended.err().map(|error| (error, unanswered))
            }
        };
        if let Some((error, keep)) = failed {
            if !keep {
                self.current = None;
            }
            return Err(error);
        }
        current.bytes += lines.len() as u64;
        current.blocks += 1;
        Ok(())
    }

    /// Starts a new file or blob on the hour, past [`MAX_FILE_BYTES`] and before the block
    /// limit, or when there is none.
    async fn roll_if_due(&mut self, now_ms: u64, length: usize) -> Result<(), StoreError> {
        let hour = hour_partition(now_ms);
        let due = match &self.current {
            None => true,
            Some(current) => {
                current.hour != hour
                    || current.bytes + length as u64 > MAX_FILE_BYTES
                    || current.blocks >= MAX_BLOCKS
            }
        };
        if !due {
            return Ok(());
        }
        self.current = None;
        self.sequence += 1;
        let name = format!(
            "{}{hour}/{}-{}.jsonl",
            self.stream.prefix(),
            self.writer,
            self.sequence
        );
        let bytes = match &self.store {
            LoopStore::Local(_) => 0,
            LoopStore::Blob(container) => create_append_blob(container, &name).await?,
        };
        self.current = Some(Current {
            name,
            hour,
            bytes,
            blocks: 0,
            file: None,
        });
        Ok(())
    }

    /// Learns what came of an append: its lines when they are written (the position moves
    /// past them), `None` when they are not. A blob's length says which, this writer being
    /// the blob's only one; a length that is neither, or a blob that is gone, makes the next
    /// append start a new one. A local write is waited for. When the store cannot say, the
    /// append stays unsettled and the error is returned.
    async fn settle(&mut self, in_flight: InFlight) -> Result<Option<Bytes>, StoreError> {
        let Some(current) = self.current.as_mut() else {
            return Ok(None);
        };
        match in_flight {
            InFlight::Local(lines, write) => match joined(write.await) {
                Ok(file) => {
                    current.file = Some(file);
                    current.bytes += lines.len() as u64;
                    current.blocks += 1;
                    Ok(Some(lines))
                }
                Err(LocalAppendError { clean, .. }) => {
                    if !clean {
                        self.current = None;
                    }
                    Ok(None)
                }
            },
            InFlight::Blob(lines) => {
                let LoopStore::Blob(container) = &self.store else {
                    return Ok(None);
                };
                let length = match blob_length(container, &current.name).await {
                    Ok(length) => length,
                    Err(StoreError::NotFound(_)) => {
                        self.current = None;
                        return Ok(None);
                    }
                    Err(error) => {
                        self.in_flight = Some(InFlight::Blob(lines));
                        return Err(error);
                    }
                };
                if length == current.bytes + lines.len() as u64 {
                    current.bytes = length;
                    current.blocks += 1;
                    Ok(Some(lines))
                } else {
                    if length != current.bytes {
                        self.current = None;
                    }
                    Ok(None)
                }
            }
        }
    }
}

/// The outcome of a local write's task (a task that panicked wrote nothing known).
fn joined(
    written: Result<Result<Arc<File>, LocalAppendError>, tokio::task::JoinError>,
) -> Result<Arc<File>, LocalAppendError> {
    written.unwrap_or_else(|e| Err(StoreError::Other(format!("the file task failed: {e}")).into()))
}

/// Appends `data` to the local file at `path`, opening it (and its directory) unless `file`
/// is open already; returns the open file.
fn append_local(
    file: Option<Arc<File>>,
    path: &Path,
    data: &[u8],
) -> Result<Arc<File>, LocalAppendError> {
    use std::io::Write;
    let io = |e: std::io::Error| StoreError::Other(format!("{}: {e}", path.display()));
    let file = match file {
        Some(file) => file,
        None => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let opened = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io)?;
            Arc::new(opened)
        }
    };
    // A write that fails part way (a full disk) is cut back to where it started, so the
    // file keeps only whole lines and the next append can go on in it.
    let start = file.metadata().map_err(io)?.len();
    if let Err(error) = (&*file).write_all(data) {
        let clean = file.set_len(start).is_ok();
        return Err(LocalAppendError {
            error: io(error),
            clean,
        });
    }
    Ok(file)
}

/// A local append that failed; `clean` when the file was cut back to its length before it.
#[derive(Debug)]
struct LocalAppendError {
    error: StoreError,
    clean: bool,
}

impl From<StoreError> for LocalAppendError {
    fn from(error: StoreError) -> LocalAppendError {
        LocalAppendError {
            error,
            clean: false,
        }
    }
}

/// Creates the append blob `name` (and the container, the first time); returns its length
/// (0, or what a previous process of the same writer left, which cannot happen with writer
/// names unique per process, but costs nothing to handle).
async fn create_append_blob(container: &Container, name: &str) -> Result<u64, StoreError> {
    let blob = container.client().blob_client(name);
    let mut created_container = false;
    loop {
        let options = AppendBlobClientCreateOptions {
            blob_content_type: Some("application/x-ndjson".to_string()),
            if_none_match: Some(Etag::from("*")),
            ..Default::default()
        };
        let error = match blob.append_blob_client().create(Some(options)).await {
            Ok(_) => return Ok(0),
            Err(error) => error,
        };
        match error.http_status() {
            Some(StatusCode::Conflict) => return blob_length(container, name).await,
            Some(StatusCode::NotFound) if !created_container => {
                container.create_if_missing().await?;
                created_container = true;
            }
            _ => return Err(store_error(name, error)),
        }
    }
}

async fn blob_length(container: &Container, name: &str) -> Result<u64, StoreError> {
    let properties = container
        .client()
        .blob_client(name)
        .get_properties(None)
        .await
        .map_err(|e| store_error(name, e))?;
    Ok(properties.content_length().ok().flatten().unwrap_or(0))
}

/// Appends `lines` at `offset`. A 412 means the append position did not match: when the blob
/// holds exactly these lines at `offset`, an earlier try of this very append succeeded (the
/// SDK resends after a lost answer) and it counts as done; otherwise the blob is not what
/// this writer wrote, and the error makes the writer start a new one.
async fn append_block(
    container: &Container,
    name: &str,
    lines: Bytes,
    offset: u64,
) -> Result<(), StoreError> {
    let client = container.client().blob_client(name).append_blob_client();
    let options = AppendBlobClientAppendBlockOptions {
        append_position: i64::try_from(offset).ok(),
        ..Default::default()
    };
    let length = lines.len() as u64;
    let body: RequestContent<Bytes, azure_core::http::NoFormat> = lines.clone().into();
    match client.append_block(body, length, Some(options)).await {
        Ok(_) => Ok(()),
        Err(error) if error.http_status() == Some(StatusCode::PreconditionFailed) => {
            let blob_bytes = blob_length(container, name).await?;
            if blob_bytes == offset + length
                && container.read_range(name, offset..offset + length).await? == lines
            {
                Ok(())
            } else {
                Err(StoreError::Other(format!(
                    "{name}: the append position moved ({blob_bytes} bytes, expected {offset})"
                )))
            }
        }
        Err(error) => Err(store_error(name, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_with_an_hour_partition_have_an_hour() {
        assert_eq!(
            hour_of(Stream::Log, "log/2026/12/05/21/vm-1-1.jsonl"),
            Some("2026/12/05/21")
        );
        assert_eq!(
            hour_of(Stream::Labels, "labels/2020/01/01/00/a.jsonl"),
            Some("2020/01/01/00")
        );
        for name in [
            "log/notes.jsonl",
            "log/2026-12-05-21/a.jsonl",
            "log/abcd/ef/gh/ij/a.jsonl",
            "labels/2026/12/05/21/a.jsonl",
            "joined/report.json",
        ] {
            assert_eq!(hour_of(Stream::Log, name), None, "{name}");
        }
    }

    #[test]
    fn expired_local_files_go_with_their_emptied_hours_and_the_rest_stays() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        let names = [
            "log/2020/01/01/00/a-1.jsonl",
            "log/2020/01/01/00/a-2.jsonl",
            "log/2020/01/02/00/b-1.jsonl",
            "log/2026/12/05/21/c-1.jsonl",
        ];
        for name in names {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
            std::fs::write(&path, b"{}\n").expect("file");
        }
        let removed = remove_local(
            root,
            Stream::Log,
            &names[..3].iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .expect("removed");
        assert_eq!(removed, 3);
        assert!(!root.join("log/2020").exists());
        assert!(root.join(names[3]).is_file());
        assert!(root.join("log").is_dir());
    }

    #[tokio::test]
    async fn a_removal_takes_the_oldest_files_first_up_to_its_limit() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = LoopStore::Local(dir.path().to_path_buf());
        let names = [
            "labels/2020/01/03/00/c.jsonl",
            "labels/2020/01/01/00/a.jsonl",
            "labels/2020/01/02/00/b.jsonl",
            "labels/2026/12/05/21/d.jsonl",
        ];
        for name in names {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
            std::fs::write(&path, b"").expect("file");
        }
        let cut = "2026/01/01/00";
        let first = store.remove_before(Stream::Labels, cut, 2).await;
        assert_eq!(first.expect("removed"), 2);
        let left = store.list(Stream::Labels, "0000").await.expect("list");
        assert_eq!(left, [names[0], names[3]]);
        let second = store.remove_before(Stream::Labels, cut, 2).await;
        assert_eq!(second.expect("removed"), 1);
        let left = store.list(Stream::Labels, "0000").await.expect("list");
        assert_eq!(left, [names[3]]);
    }
}
