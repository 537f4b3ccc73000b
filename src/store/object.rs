//! The object-storage side of [`super::Backend`]: a cube under `s3://bucket/prefix`,
//! `gs://bucket/prefix` or `az://container/prefix`, written through `object_store` (no `zarrs`
//! storage adapter: the store needs only get, whole put, list under a prefix and delete, and
//! chunks are encoded by `zarrs` in memory anyway). S3 settings come from [`super::aws`]
//! (environment and AWS profiles); GCS and Azure from their builders' `from_env`.
//!
//! **Blocking bridge.** The [`super::Cube`] API is synchronous: chunks are written from rayon
//! threads, the ledger and report from the executor's async task, the template from `build`'s
//! future. `Handle::block_on` would panic on a thread that is inside a runtime, so every call is
//! spawned on one process-wide multi-thread tokio runtime owned by this module (two threads named
//! `eocube-store-io`, created on first use and never dropped: dropping a runtime from async code
//! panics) and the caller waits on a plain channel. That is safe from any thread, including a
//! tokio worker (which it blocks for one request, as a local file write would), and never nests
//! runtimes. The runtime's threads only run these requests, so they cannot deadlock on a caller.
//!
//! **Atomicity.** A PUT on S3 replaces an object whole: readers see the old bytes or the new ones,
//! never a torn chunk. Nothing spans two objects (see `docs/cube.md`, "Object storage").
//!
//! **Errors.** Requests are retried by object_store (3 times, at most 30 s), then classified:
//! a missing bucket (or container), refused credentials and an unreachable endpoint get their own
//! [`StoreError`] with the fix (the cloud's own variables are added to the reason); credentials
//! never appear in a message.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use super::aws::S3Settings;
use super::location::OutLocation;
use super::{Cloud, StoreError};

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A cube's prefix in an object store.
pub struct ObjectBackend {
    /// `s3://bucket/prefix` (`gs://`, `az://`, ...), for messages.
    location: String,
    kind: Cloud,
    /// The bucket (S3, GCS) or container (Azure).
    bucket: String,
    store: Arc<dyn ObjectStore>,
    /// The cube's root inside the bucket, without a trailing `/`; empty for the bucket root.
    prefix: String,
}

impl ObjectBackend {
    /// Connect to the bucket (or container) of `loc` with the options of the environment.
    /// Nothing is sent yet; a bad AWS profile is refused here.
    pub(crate) fn new(loc: &OutLocation) -> Result<ObjectBackend> {
        let location = loc.to_string();
        // A store that cannot be configured lacks an account, a key or a readable key file: a
        // credentials problem with the cloud's fix, not a transient one.
        let configure = |kind: Cloud| {
            let location = location.clone();
            move |e: object_store::Error| StoreError::Denied {
                location,
                reason: one_line(&crate::error_chain(&e)),
                cloud: kind,
            }
        };
        let (kind, bucket, prefix, store): (Cloud, &String, &String, Arc<dyn ObjectStore>) = match loc {
            OutLocation::S3 { bucket, prefix } => {
                // The profile, the files and the fix are in the reason.
                let settings = S3Settings::from_env()
                    .map_err(|e| StoreError::Config { location: location.clone(), reason: e.to_string() })?;
                (Cloud::S3, bucket, prefix, Arc::new(s3_store(bucket, &settings).map_err(configure(Cloud::S3))?))
            }
            OutLocation::Gcs { bucket, prefix } => {
                (Cloud::Gcs, bucket, prefix, Arc::new(gcs_store(bucket).map_err(configure(Cloud::Gcs))?))
            }
            OutLocation::Azure { account, container, prefix } => (
                Cloud::Azure,
                container,
                prefix,
                Arc::new(azure_store(account.as_deref(), container).map_err(configure(Cloud::Azure))?),
            ),
            OutLocation::Local(_) | OutLocation::Icechunk(_) => {
                return Err(StoreError::Remote {
                    location,
                    op: "configure",
                    key: String::new(),
                    reason: "not a plain object store location (an eocube bug)".into(),
                });
            }
        };
        Ok(ObjectBackend { location, kind, bucket: bucket.clone(), store, prefix: prefix.clone() })
    }

    pub(crate) fn display_path(&self) -> PathBuf {
        PathBuf::from(&self.location)
    }

    fn path(&self, key: &str) -> Result<ObjPath> {
        let full = if self.prefix.is_empty() { key.to_string() } else { format!("{}/{key}", self.prefix) };
        let full = full.trim_end_matches('/');
        ObjPath::parse(full).map_err(|e| StoreError::Remote {
            location: self.location.clone(),
            op: "name",
            key: key.into(),
            reason: e.to_string(),
        })
    }

    /// One request that shows the bucket exists, the endpoint answers and the credentials may
    /// list the prefix: run before anything is read or written.
    pub(crate) fn check(&self) -> Result<()> {
        let store = self.store.clone();
        let root = if self.prefix.is_empty() { None } else { Some(self.path("")?) };
        block(async move { store.list_with_delimiter(root.as_ref()).await.map(|_| ()) })
            .map_err(|e| self.remote("list", "", e))?
            .map_err(|e| self.classify("list", "", e))
    }

    /// Whether any object exists under the cube's prefix.
    pub(crate) fn is_empty(&self) -> Result<bool> {
        let store = self.store.clone();
        let root = if self.prefix.is_empty() { None } else { Some(self.path("")?) };
        let first = block(async move { store.list(root.as_ref()).next().await.transpose() })
            .map_err(|e| self.remote("list", "", e))?
            .map_err(|e| self.classify("list", "", e))?;
        Ok(first.is_none())
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        let got = block(async move {
            match store.get(&path).await {
                Ok(r) => r.bytes().await.map(|b| Some(b.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        got.map_err(|e| self.remote("GET", key, e))?.map_err(|e| self.classify("GET", key, e))
    }

    /// Several objects at once (a few requests in flight), in the order of `keys`; a missing one
    /// is `None`.
    pub(crate) fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        let paths: Vec<ObjPath> = keys.iter().map(|k| self.path(k)).collect::<Result<_>>()?;
        let store = self.store.clone();
        let got = block(async move {
            futures::stream::iter(paths.into_iter().map(|p| {
                let store = store.clone();
                async move {
                    match store.get(&p).await {
                        Ok(r) => r.bytes().await.map(|b| Some(b.to_vec())),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                }
            }))
            .buffered(16)
            .try_collect::<Vec<_>>()
            .await
        });
        got.map_err(|e| self.remote("GET", "(several)", e))?.map_err(|e| self.classify("GET", "(several)", e))
    }

    /// One PUT: the object appears whole or not at all.
    pub(crate) fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        let payload = PutPayload::from(bytes.to_vec());
        block(async move { store.put(&path, payload).await.map(|_| ()) })
            .map_err(|e| self.remote("PUT", key, e))?
            .map_err(|e| self.classify("PUT", key, e))
    }

    pub(crate) fn delete(&self, key: &str) -> Result<()> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        let done = block(async move {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        });
        done.map_err(|e| self.remote("DELETE", key, e))?.map_err(|e| self.classify("DELETE", key, e))
    }

    /// Keys (relative to the cube's root) of every object under `prefix` (a key prefix ending in
    /// `/`, relative to the root).
    pub(crate) fn list_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let (store, path) = (self.store.clone(), self.path(prefix)?);
        let listed =
            block(async move { store.list(Some(&path)).map_ok(|m| m.location.to_string()).try_collect().await });
        let keys: Vec<String> =
            listed.map_err(|e| self.remote("list", prefix, e))?.map_err(|e| self.classify("list", prefix, e))?;
        let strip = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        Ok(keys.into_iter().filter_map(|k| k.strip_prefix(&strip).map(str::to_string)).collect())
    }

    fn remote(&self, op: &'static str, key: &str, reason: String) -> StoreError {
        StoreError::Remote { location: self.location.clone(), op, key: key.into(), reason }
    }

    /// Sort an object_store error into the refusals a user can act on.
    fn classify(&self, op: &'static str, key: &str, e: object_store::Error) -> StoreError {
        let reason = one_line(&crate::error_chain(&e));
        let location = self.location.clone();
        let has = |needles: &[&str]| needles.iter().any(|n| reason.contains(n));
        if has(&[
            "NoSuchBucket",
            "bucket does not exist",
            "specified bucket does not exist",
            "ContainerNotFound",
            "container does not exist",
        ]) {
            return StoreError::NoBucket { location, bucket: self.bucket.clone(), cloud: self.kind };
        }
        let denied =
            matches!(e, object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. })
                || has(&[
                    "InvalidAccessKeyId",
                    "SignatureDoesNotMatch",
                    "AccessDenied",
                    "Access Denied",
                    "403 Forbidden",
                    "401 Unauthorized",
                    "ExpiredToken",
                    "InvalidToken",
                    "credential",
                ]);
        if denied {
            return StoreError::Denied { location, reason, cloud: self.kind };
        }
        if has(&[
            "error sending request",
            "Connection refused",
            "connection refused",
            "dns error",
            "timed out",
            "tcp connect",
            "client error (Connect)",
        ]) {
            return StoreError::Unreachable { location, reason, cloud: self.kind };
        }
        StoreError::Remote { location, op, key: key.into(), reason }
    }
}

/// Client options shared by every cloud: connect fast, allow long chunk PUTs, plain HTTP only
/// where the settings say so.
fn client(allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(120))
        .with_allow_http(allow_http)
}

/// Retried by object_store 3 times within 30 s; the job-level retry handles anything longer.
fn retry() -> RetryConfig {
    RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(30), ..Default::default() }
}

/// The S3 store of `bucket` with `settings` ([`S3Settings::from_env`]: environment, profile, then
/// object_store's credential chain, which `from_env` keeps for web identity, ECS and EC2 roles).
fn s3_store(bucket: &str, settings: &S3Settings) -> object_store::Result<object_store::aws::AmazonS3> {
    let b = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_client_options(client(settings.allow_http))
        .with_retry(retry());
    settings.configure(b, "us-east-1").build()
}

/// The GCS store of `bucket`: credentials from `GOOGLE_SERVICE_ACCOUNT` /
/// `GOOGLE_SERVICE_ACCOUNT_PATH` / `GOOGLE_APPLICATION_CREDENTIALS` (a service-account or
/// authorized-user JSON; one with `"gcs_base_url"` and `"disable_oauth": true` points at an
/// emulator), else the metadata server. Plain HTTP only for an `http://` base URL.
fn gcs_store(bucket: &str) -> object_store::Result<object_store::gcp::GoogleCloudStorage> {
    object_store::gcp::GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .with_client_options(client(super::location::gcs_allow_http()))
        .with_retry(retry())
        .build()
}

/// The Azure store of `container`: `MicrosoftAzureBuilder::from_env` (account name and key, SAS,
/// service principal, managed identity, `AZURE_STORAGE_USE_EMULATOR`, `AZURE_STORAGE_ENDPOINT`);
/// `account` from an `abfs` URL wins over `AZURE_STORAGE_ACCOUNT_NAME`. Plain HTTP for the
/// emulator, `AZURE_ALLOW_HTTP` or an `http://` endpoint.
fn azure_store(account: Option<&str>, container: &str) -> object_store::Result<object_store::azure::MicrosoftAzure> {
    let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .with_client_options(client(super::location::azure_allow_http()))
        .with_retry(retry());
    if let Some(a) = account {
        b = b.with_account(a);
    }
    b.build()
}

/// Error bodies (S3 XML) are long and multi-line: the start is enough.
fn one_line(reason: &str) -> String {
    super::one_line(reason, 400)
}

/// Run `fut` on the storage runtime and wait for it from any thread (see the module docs).
pub(super) fn block<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Result<T, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    let rt = RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("eocube-store-io")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the storage I/O runtime: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| "the storage I/O task ended without an answer".to_string())
}
