//! A prefix of an object store as whole-object get, put, delete and list, async: what the
//! plain-Zarr store ([`super::zarr`]) and the run files of every back end are written through.
//! Local disk is object_store's `LocalFileSystem` (a put writes a temporary file and renames it
//! over the key), `s3://`, `gs://` and `az://` their object_store clients (no `zarrs` storage
//! adapter: chunks are encoded by `zarrs` in memory anyway). S3 settings come from
//! [`crate::cloud`] (environment and AWS profiles), like every client eocube makes.
//!
//! **Atomicity.** A PUT replaces an object whole, and so does the local rename: readers see the
//! old bytes or the new ones, never a torn chunk. Nothing spans two objects (see `docs/cube.md`,
//! "Object storage").
//!
//! **Errors.** Requests are retried by object_store ([`crate::cloud`]'s defaults), then classified:
//! a missing bucket (or container), refused credentials and an unreachable endpoint get their own
//! [`StoreError`] with the fix (the cloud's own variables are added to the reason); credentials
//! never appear in a message.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::location::OutLocation;
use super::{BOOKKEEPING_DIR, Cloud, StoreError};
use crate::cloud::aws::S3Settings;
use crate::cloud::{self, ClientConfig, Unkeyed};

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// eocube's own files beside a cube's Zarr nodes (the `_eocube/` folder: plan, runs, results),
/// keyed relative to that folder. Every back end keeps them as plain objects, Icechunk included:
/// a run's files must be readable by its workers before anything is committed.
#[derive(Clone)]
pub struct Files {
    objects: ObjectBackend,
}

impl Files {
    pub(crate) fn new(objects: ObjectBackend) -> Files {
        Files { objects }
    }

    fn key(key: &str) -> String {
        format!("{BOOKKEEPING_DIR}/{key}")
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.objects.put(&Files::key(key), bytes).await
    }

    pub async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.objects.get(&Files::key(key)).await
    }

    /// Keys (relative to `_eocube/`) of the files under `prefix` (relative to `_eocube/`).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let base = format!("{BOOKKEEPING_DIR}/");
        let keys = self.objects.list_prefix(&Files::key(prefix)).await?;
        Ok(keys.into_iter().filter_map(|k| k.strip_prefix(&base).map(str::to_string)).collect())
    }
}

/// A cube's prefix in an object store.
#[derive(Clone)]
pub struct ObjectBackend {
    /// `s3://bucket/prefix` (`gs://`, `az://`, ...), for messages.
    location: String,
    /// `None`: local disk.
    kind: Option<Cloud>,
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
        let cfg = ClientConfig::current();
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
                (
                    Cloud::S3,
                    bucket,
                    prefix,
                    Arc::new(
                        cloud::s3(bucket, &settings, &cfg, Unkeyed::Chain, "us-east-1")
                            .map_err(configure(Cloud::S3))?,
                    ),
                )
            }
            OutLocation::Gcs { bucket, prefix } => {
                (Cloud::Gcs, bucket, prefix, Arc::new(cloud::gcs(bucket, &cfg).map_err(configure(Cloud::Gcs))?))
            }
            OutLocation::Azure { account, container, prefix } => (
                Cloud::Azure,
                container,
                prefix,
                Arc::new(cloud::azure(account.as_deref(), container, &cfg).map_err(configure(Cloud::Azure))?),
            ),
            OutLocation::Local(root) => return ObjectBackend::local(root, location),
            OutLocation::Icechunk(_) => {
                return Err(StoreError::Unsupported {
                    location,
                    what: "not a plain object store location (an eocube bug)".into(),
                });
            }
        };
        Ok(ObjectBackend { location, kind: Some(kind), bucket: bucket.clone(), store, prefix: prefix.clone() })
    }

    /// The directory `root` on local disk (created if missing), shown as `location`.
    pub(crate) fn local(root: &std::path::Path, location: String) -> Result<ObjectBackend> {
        let io = |source| StoreError::Io { path: root.to_path_buf(), source };
        std::fs::create_dir_all(root).map_err(io)?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(root)
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        Ok(ObjectBackend { location, kind: None, bucket: String::new(), store: Arc::new(fs), prefix: String::new() })
    }

    fn path(&self, key: &str) -> Result<ObjPath> {
        let full = if self.prefix.is_empty() { key.to_string() } else { format!("{}/{key}", self.prefix) };
        let full = full.trim_end_matches('/');
        ObjPath::parse(full).map_err(|e| StoreError::Remote {
            location: self.location.clone(),
            op: "name",
            key: key.into(),
            reason: e.to_string(),
            transient: false,
        })
    }

    /// One request that shows the bucket exists, the endpoint answers and the credentials may
    /// list the prefix: run before anything is read or written.
    pub(crate) async fn check(&self) -> Result<()> {
        let root = if self.prefix.is_empty() { None } else { Some(self.path("")?) };
        self.store.list_with_delimiter(root.as_ref()).await.map(|_| ()).map_err(|e| self.classify("list", "", e))
    }

    /// Whether any object exists under the cube's prefix.
    pub(crate) async fn is_empty(&self) -> Result<bool> {
        let root = if self.prefix.is_empty() { None } else { Some(self.path("")?) };
        let first =
            self.store.list(root.as_ref()).next().await.transpose().map_err(|e| self.classify("list", "", e))?;
        Ok(first.is_none())
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let path = self.path(key)?;
        let got = match self.store.get(&path).await {
            Ok(r) => r.bytes().await.map(Some),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        };
        got.map_err(|e| self.classify("GET", key, e))
    }

    /// Several objects at once (a few requests in flight), in the order of `keys`; a missing one
    /// is `None`.
    pub(crate) async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let keys: Vec<String> = keys.to_vec();
        futures::stream::iter(keys.into_iter().map(|k| async move { self.get(&k).await }))
            .buffered(16)
            .try_collect()
            .await
    }

    /// One PUT: the object appears whole or not at all.
    pub(crate) async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let path = self.path(key)?;
        self.store.put(&path, PutPayload::from(bytes)).await.map(|_| ()).map_err(|e| self.classify("PUT", key, e))
    }

    /// Several objects at once (a few requests in flight).
    pub(crate) async fn put_many(&self, objects: Vec<(String, Bytes)>) -> Result<()> {
        futures::stream::iter(objects.into_iter().map(|(k, b)| async move { self.put(&k, b).await }))
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.classify("DELETE", key, e)),
        }
    }

    /// Keys (relative to the cube's root) of every object under `prefix` (a key prefix ending in
    /// `/`, relative to the root).
    pub(crate) async fn list_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let path = self.path(prefix)?;
        let listed = self.store.list(Some(&path)).map_ok(|m| m.location.to_string()).try_collect().await;
        let keys: Vec<String> = match listed {
            Ok(k) => k,
            // A local directory that was never written is an empty listing, not an error.
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(self.classify("list", prefix, e)),
        };
        let strip = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        Ok(keys.into_iter().filter_map(|k| k.strip_prefix(&strip).map(str::to_string)).collect())
    }

    /// Sort an object_store error into the refusals a user can act on.
    fn classify(&self, op: &'static str, key: &str, e: object_store::Error) -> StoreError {
        let reason = one_line(&crate::error_chain(&e));
        let location = self.location.clone();
        let Some(kind) = self.kind else {
            // Local disk: object_store wraps the I/O error; a full disk or a permission is not
            // fixed by retrying.
            return StoreError::Io { path: PathBuf::from(&self.location), source: std::io::Error::other(reason) };
        };
        let has = |needles: &[&str]| needles.iter().any(|n| reason.contains(n));
        if has(&[
            "NoSuchBucket",
            "bucket does not exist",
            "specified bucket does not exist",
            "ContainerNotFound",
            "container does not exist",
        ]) {
            return StoreError::NoBucket { location, bucket: self.bucket.clone(), cloud: kind };
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
            return StoreError::Denied { location, reason, cloud: kind };
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
            return StoreError::Unreachable { location, reason, cloud: kind };
        }
        // Everything but the refusals above and object_store's own permanent kinds may pass.
        let transient = !matches!(
            e,
            object_store::Error::NotFound { .. }
                | object_store::Error::InvalidPath { .. }
                | object_store::Error::NotSupported { .. }
                | object_store::Error::NotImplemented { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. }
                | object_store::Error::UnknownConfigurationKey { .. }
        );
        StoreError::Remote { location, op, key: key.into(), reason, transient }
    }
}

/// Error bodies (S3 XML) are long and multi-line: the start is enough.
fn one_line(reason: &str) -> String {
    super::one_line(reason, 400)
}
