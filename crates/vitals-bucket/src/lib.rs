//! The lake's remote tier on object storage: S3 and S3-compatible servers, Azure Blob
//! Storage, Google Cloud Storage, or a directory (`file://`), through the `object_store`
//! crate, behind the storage crate's blocking [`Remote`] trait.
//!
//! The object store is async; the store's threads are not. [`Bucket`] owns a small tokio
//! runtime and runs each call on it, waiting on a plain channel, so it may be called from
//! any thread, a worker of another runtime included.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path as FsPath;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::buffered::BufWriter;
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, ObjectStoreScheme, RetryConfig};
use tokio::io::AsyncWriteExt;
use url::Url;
use vitals_storage::remote::{Remote, RemoteError, RemoteObject};

/// Server-side encryption of uploaded objects (S3 only: Azure Blob and Cloud Storage
/// always encrypt at rest; their customer-managed keys are set on the account or bucket).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Sse {
    /// The bucket's default.
    #[default]
    None,
    /// SSE-S3 (`AES256`).
    S3,
    /// SSE-KMS with this key (id, ARN or alias).
    Kms { key_id: String },
}

/// Where the remote lake is and how to reach it. Credentials come from the environment
/// (`AWS_*`, `AZURE_STORAGE_*`, `GOOGLE_*`, as each cloud's tools read them) or `options`.
#[derive(Debug, Clone, Default)]
pub struct BucketConfig {
    /// `s3://bucket/prefix`, `az://container/prefix`, `gs://bucket/prefix` or
    /// `file:///absolute/path`.
    pub url: String,
    /// An S3-compatible server or an Azure account URL (empty: the cloud's own).
    pub endpoint: String,
    pub region: String,
    /// Allow `http://` endpoints (a server on the same machine or network).
    pub allow_http: bool,
    pub sse: Sse,
    /// Passed to the backend as they are: object_store's configuration keys
    /// (`aws_access_key_id`, `azure_storage_account_key`, `google_service_account`...).
    pub options: BTreeMap<String, String>,
    /// One request's limit; failed requests are retried up to 3 times within a minute.
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("lake.url {url:?}: {reason}")]
    Config { url: String, reason: String },
    #[error("starting the object-store runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// A remote lake on object storage.
#[derive(Debug)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    location: String,
    /// Taken out on drop and shut down in the background (dropping a runtime inside
    /// another one's async context would panic).
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Bucket {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Objects up to this size are uploaded with one request, larger ones in parts.
const PART_BYTES: usize = 16 << 20;

impl Bucket {
    pub fn open(cfg: &BucketConfig) -> Result<Bucket, BucketError> {
        let bad = |reason: String| BucketError::Config { url: cfg.url.clone(), reason };
        let url = Url::parse(&cfg.url).map_err(|e| bad(e.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("credentials do not belong in the URL; use the environment or lake.options".into()));
        }
        let (scheme, path) = ObjectStoreScheme::parse(&url).map_err(|e| bad(e.to_string()))?;
        let timeout = if cfg.timeout.is_zero() { Duration::from_secs(30) } else { cfg.timeout };
        let client = ClientOptions::new()
            .with_timeout(timeout)
            .with_connect_timeout(Duration::from_secs(5))
            .with_allow_http(cfg.allow_http);
        let retry =
            RetryConfig { backoff: BackoffConfig::default(), max_retries: 3, retry_timeout: Duration::from_secs(60) };
        if cfg.sse != Sse::None && scheme != ObjectStoreScheme::AmazonS3 {
            return Err(bad("lake.sse applies to s3:// only (Azure and Cloud Storage always encrypt at rest)".into()));
        }
        let unknown = |k: &str, e: object_store::Error| bad(format!("lake.options.{k}: {e}"));
        let (store, prefix): (Arc<dyn ObjectStore>, Path) = match scheme {
            ObjectStoreScheme::AmazonS3 => {
                let mut b = AmazonS3Builder::from_env().with_url(cfg.url.as_str()).with_client_options(client);
                b = b.with_retry(retry);
                if !cfg.endpoint.is_empty() {
                    b = b.with_endpoint(&cfg.endpoint);
                }
                if !cfg.region.is_empty() {
                    b = b.with_region(&cfg.region);
                }
                b = match &cfg.sse {
                    Sse::None => b,
                    Sse::S3 => {
                        let key = AmazonS3ConfigKey::from_str("aws_server_side_encryption")
                            .map_err(|e| bad(e.to_string()))?;
                        b.with_config(key, "AES256")
                    }
                    Sse::Kms { key_id } => b.with_sse_kms_encryption(key_id),
                };
                for (k, v) in &cfg.options {
                    b = b.with_config(AmazonS3ConfigKey::from_str(k).map_err(|e| unknown(k, e))?, v);
                }
                (Arc::new(b.build().map_err(|e| bad(e.to_string()))?), parse_prefix(&path).map_err(bad)?)
            }
            ObjectStoreScheme::MicrosoftAzure => {
                let mut b = MicrosoftAzureBuilder::from_env().with_url(cfg.url.as_str()).with_client_options(client);
                b = b.with_retry(retry);
                if !cfg.endpoint.is_empty() {
                    b = b.with_endpoint(cfg.endpoint.clone());
                }
                for (k, v) in &cfg.options {
                    b = b.with_config(AzureConfigKey::from_str(k).map_err(|e| unknown(k, e))?, v);
                }
                (Arc::new(b.build().map_err(|e| bad(e.to_string()))?), parse_prefix(&path).map_err(bad)?)
            }
            ObjectStoreScheme::GoogleCloudStorage => {
                let mut b =
                    GoogleCloudStorageBuilder::from_env().with_url(cfg.url.as_str()).with_client_options(client);
                b = b.with_retry(retry);
                for (k, v) in &cfg.options {
                    b = b.with_config(GoogleConfigKey::from_str(k).map_err(|e| unknown(k, e))?, v);
                }
                (Arc::new(b.build().map_err(|e| bad(e.to_string()))?), parse_prefix(&path).map_err(bad)?)
            }
            ObjectStoreScheme::Local => {
                let dir = url.to_file_path().map_err(|()| bad("not an absolute file path".into()))?;
                std::fs::create_dir_all(&dir).map_err(|e| bad(format!("{}: {e}", dir.display())))?;
                let fs = LocalFileSystem::new_with_prefix(&dir).map_err(|e| bad(e.to_string()))?;
                (Arc::new(fs.with_automatic_cleanup(true)), Path::default())
            }
            other => return Err(bad(format!("{other:?} is not a lake (use s3://, az://, gs:// or file://)"))),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vitals-bucket")
            .enable_all()
            .build()
            .map_err(BucketError::Runtime)?;
        let mut location = url.clone();
        location.set_query(None);
        Ok(Bucket { store, prefix, location: location.to_string(), rt: Some(rt) })
    }

    /// Runs a future on the bucket's runtime and waits for it.
    fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        key: &str,
        fut: impl Future<Output = Result<T, object_store::Error>> + Send + 'static,
    ) -> Result<T, RemoteError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let Some(rt) = &self.rt else { return Err(self.error(op, key, "shut down".into(), false)) };
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        match rx.recv() {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let not_found = matches!(e, object_store::Error::NotFound { .. });
                Err(self.error(op, key, e.to_string(), not_found))
            }
            Err(_) => Err(self.error(op, key, "the object-store runtime stopped".into(), false)),
        }
    }

    fn error(&self, op: &'static str, key: &str, reason: String, not_found: bool) -> RemoteError {
        RemoteError { op, key: key.to_owned(), location: self.location.clone(), reason, not_found }
    }

    fn path(&self, op: &'static str, key: &str) -> Result<Path, RemoteError> {
        let full = if self.prefix.as_ref().is_empty() { key.to_owned() } else { format!("{}/{key}", self.prefix) };
        Path::parse(&full).map_err(|e| self.error(op, key, e.to_string(), false))
    }

    /// Checks that the bucket answers (and the credentials are accepted) by listing it.
    pub fn check(&self) -> Result<(), RemoteError> {
        let store = Arc::clone(&self.store);
        let prefix = self.prefix.clone();
        self.run("list", "", async move {
            let mut s = store.list(Some(&prefix));
            match s.next().await {
                Some(Err(e)) => Err(e),
                _ => Ok(()),
            }
        })
    }
}

fn parse_prefix(path: &Path) -> Result<Path, String> {
    Path::parse(path.as_ref().trim_matches('/')).map_err(|e| e.to_string())
}

fn io_error(store: &'static str, e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic { store, source: Box::new(e) }
}

impl Remote for Bucket {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn put(&self, key: &str, file: &FsPath) -> Result<(), RemoteError> {
        let path = self.path("put", key)?;
        let mut f = std::fs::File::open(file).map_err(|e| {
            self.error("put", key, format!("{}: {e}", file.display()), e.kind() == std::io::ErrorKind::NotFound)
        })?;
        let store = Arc::clone(&self.store);
        self.run("put", key, async move {
            let mut w = BufWriter::with_capacity(store, path, PART_BYTES);
            let mut chunk = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut chunk).map_err(|e| io_error("file", e))?;
                if n == 0 {
                    break;
                }
                if let Err(e) = w.write_all(&chunk[..n]).await {
                    let _ = w.abort().await;
                    return Err(io_error("upload", e));
                }
            }
            w.shutdown().await.map_err(|e| io_error("upload", e))
        })
    }

    fn get(&self, key: &str, dest: &FsPath) -> Result<(), RemoteError> {
        let path = self.path("get", key)?;
        let mut f = std::fs::File::create(dest)
            .map_err(|e| self.error("get", key, format!("{}: {e}", dest.display()), false))?;
        let store = Arc::clone(&self.store);
        self.run("get", key, async move {
            let mut stream = store.get(&path).await?.into_stream();
            while let Some(bytes) = stream.next().await {
                f.write_all(&bytes?).map_err(|e| io_error("file", e))?;
            }
            Ok(())
        })
    }

    fn delete(&self, key: &str) -> Result<(), RemoteError> {
        let path = self.path("delete", key)?;
        let store = Arc::clone(&self.store);
        match self.run("delete", key, async move { store.delete(&path).await }) {
            Err(e) if e.not_found => Ok(()),
            other => other,
        }
    }

    fn list(&self) -> Result<Vec<RemoteObject>, RemoteError> {
        let store = Arc::clone(&self.store);
        let prefix = self.prefix.clone();
        let strip = if prefix.as_ref().is_empty() { String::new() } else { format!("{prefix}/") };
        self.run("list", "", async move {
            let mut out = Vec::new();
            let mut s = store.list(Some(&prefix));
            while let Some(meta) = s.next().await {
                let meta = meta?;
                let full = meta.location.as_ref();
                let key = full.strip_prefix(strip.as_str()).unwrap_or(full).to_owned();
                out.push(RemoteObject { key, bytes: meta.size, modified_ms: meta.last_modified.timestamp_millis() });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(url: &str) -> Result<Bucket, BucketError> {
        Bucket::open(&BucketConfig { url: url.into(), ..BucketConfig::default() })
    }

    #[test]
    fn a_directory_bucket_puts_gets_lists_and_deletes() {
        let dir = tempfile::tempdir().expect("tmp");
        let url = Url::from_directory_path(dir.path().join("lake")).expect("url");
        let b = open(url.as_str()).expect("open");
        let src = dir.path().join("src.parquet");
        std::fs::write(&src, b"segment bytes").expect("write");
        let key = "metric=heart_rate/year=2025/month=11/day=21/patient=p-1/part-00000000000000000001.parquet";
        b.put(key, &src).expect("put");
        let listed = b.list().expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, key);
        assert_eq!(listed[0].bytes, 13);
        let dest = dir.path().join("back");
        b.get(key, &dest).expect("get");
        assert_eq!(std::fs::read(&dest).expect("read"), b"segment bytes");
        b.delete(key).expect("delete");
        b.delete(key).expect("deleting again succeeds");
        assert!(b.list().expect("list").is_empty());
        let err = b.get(key, &dest).expect_err("gone");
        assert!(err.not_found, "{err}");
        let err = b.put("x/part-2.parquet", &dir.path().join("missing")).expect_err("no file");
        assert!(err.not_found, "{err}");
    }

    #[test]
    fn a_bad_lake_url_is_refused_with_a_reason() {
        for (url, why) in [
            ("not a url", "relative URL"),
            ("https://example.com/x", "not a lake"),
            ("s3://user:secret@bucket/x", "credentials"),
        ] {
            let err = open(url).expect_err(url).to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
        let err =
            Bucket::open(&BucketConfig { url: "az://container/x".into(), sse: Sse::S3, ..BucketConfig::default() })
                .expect_err("sse on azure");
        assert!(err.to_string().contains("s3:// only"), "{err}");
        let err = Bucket::open(&BucketConfig {
            url: "s3://bucket/x".into(),
            options: [("aws_no_such_key".to_owned(), "1".to_owned())].into(),
            ..BucketConfig::default()
        })
        .expect_err("unknown option");
        assert!(err.to_string().contains("lake.options.aws_no_such_key"), "{err}");
    }
}
