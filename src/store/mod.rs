//! The cube on disk (DESIGN §8): a Zarr v3 (default) or v2 group holding one uint16 data variable,
//! its coordinates and a `spatial_ref` grid mapping, plus eocube's bookkeeping under `_eocube/`.
//!
//! Owns: the layout of the Zarr store (metadata documents, chunk keys, consolidated metadata), the
//! encoding and atomic placement of chunks, and the `_eocube/` files (plan, ledger, run report).
//! Must not touch: how chunks are computed (warp, mask, reduce), the CubeSpec itself (it arrives
//! as opaque JSON in [`CubeLayout::attrs`]) or the scheduling of jobs.
//!
//! ```text
//! Cube::create ─▶ template (group + arrays metadata, coordinates, _eocube/plan.json)
//!   write_chunk(t, iy, ix) ─▶ encode with zarrs (in memory) ─▶ put_atomic(chunk key)
//!   mark_done / append_report ─▶ _eocube/ledger/…, _eocube/report.jsonl
//! Cube::finish ─▶ consolidated metadata (v3: root zarr.json; v2: .zmetadata), written last
//! ```
//!
//! Where the cube lives is an [`OutLocation`] (`--out`: a local path, `file://`,
//! `s3://bucket/prefix`, or an Icechunk repository, parsed by [`location`]; Icechunk builds run
//! on a build branch and publish with one branch update, see [`icechunk`]). Chunks and coordinate values are encoded by
//! `zarrs` into an in-memory store and, like every metadata document, placed whole by
//! [`Backend`]: on local disk a temporary file renamed over the key, on object storage one PUT
//! ([`object`]). The run report is one appended line per job on disk and one object per job on
//! object storage (which cannot append); [`Cube::report`] reads both forms. The choices and their
//! reasons are in `docs/cube.md`.

pub(crate) mod aws;
pub mod icechunk;
mod ledger;
pub mod location;
pub mod meta;
mod object;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zarrs::array::Array;
use zarrs::filesystem::FilesystemStore;
use zarrs::metadata::ArrayMetadata;
use zarrs::metadata::v2::ArrayMetadataV2;
use zarrs::metadata::v3::ArrayMetadataV3;
use zarrs::storage::store::MemoryStore;
use zarrs::storage::{ReadableWritableListableStorage, StoreKey};

use crate::grid::{Affine, Crs, GeoBox, Shape};

use icechunk::IcechunkBackend;
pub use icechunk::IcechunkOptions;
pub use ledger::JobId;
pub use location::{LocationError, OutLocation};
use object::ObjectBackend;

/// The Zarr format of the cube; v3 unless the user asks for v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZarrFormat {
    V2,
    #[default]
    V3,
}

/// What the store needs to know of the cube: the part of the CubeSpec/Plan that fixes its layout.
#[derive(Debug, Clone, PartialEq)]
pub struct CubeLayout {
    pub geobox: GeoBox,
    pub chunk_size: usize,
    /// Bin labels as days since 1970-01-01 ([`crate::time::days_since_epoch`]).
    pub times: Vec<i64>,
    pub bands: Vec<String>,
    /// Name of the data variable (default `rgb_median`).
    pub variable: String,
    pub zarr_format: ZarrFormat,
    /// The CubeSpec as JSON, stored as the group attribute `spec` so the cube describes itself.
    pub attrs: Value,
}

/// Default name of the data variable.
pub const DEFAULT_VARIABLE: &str = "rgb_median";
/// Directory of eocube's own files inside the store; no Zarr node lives there.
pub const BOOKKEEPING_DIR: &str = "_eocube";
/// The run report on local disk: one JSON line per job.
const REPORT_LINES: &str = "_eocube/report.jsonl";
/// The run report on object storage: one object per job, names in time order.
const REPORT_PARTS: &str = "_eocube/report/";

/// The serialized form of a [`CubeLayout`]: group attribute `eocube_layout` and `_eocube/plan.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LayoutRecord {
    epsg: u32,
    affine: Affine,
    shape: Shape,
    chunk_size: usize,
    times: Vec<i64>,
    bands: Vec<String>,
    variable: String,
    zarr_format: ZarrFormat,
}

impl LayoutRecord {
    fn of(layout: &CubeLayout) -> LayoutRecord {
        LayoutRecord {
            epsg: layout.geobox.crs.epsg(),
            affine: layout.geobox.affine,
            shape: layout.geobox.shape,
            chunk_size: layout.chunk_size,
            times: layout.times.clone(),
            bands: layout.bands.clone(),
            variable: layout.variable.clone(),
            zarr_format: layout.zarr_format,
        }
    }
}

/// What can go wrong reading or writing a cube. Each message names the path and what to do.
/// The cloud of an object-store location: the settings a refusal tells to check differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    S3,
    Gcs,
    Azure,
}

impl Cloud {
    /// The credential settings to check when a request is refused.
    pub fn credentials_fix(self) -> &'static str {
        match self {
            Cloud::S3 => {
                "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE and its files, or an instance role"
            }
            Cloud::Gcs => {
                "GOOGLE_SERVICE_ACCOUNT / GOOGLE_APPLICATION_CREDENTIALS (a service account key file) or the application default credentials"
            }
            Cloud::Azure => {
                "AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_KEY or a service principal (AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_TENANT_ID)"
            }
        }
    }

    /// The endpoint settings to check when the store does not answer or lacks the bucket.
    pub fn endpoint_fix(self) -> &'static str {
        match self {
            Cloud::S3 => "AWS_ENDPOINT_URL / AWS_REGION (and AWS_ALLOW_HTTP for http endpoints)",
            Cloud::Gcs => "the gcs_base_url of the service account file (emulators)",
            Cloud::Azure => "AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ENDPOINT / AZURE_STORAGE_USE_EMULATOR",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error at {path}: {source}; check that the path is on a writable local disk with free space")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "Zarr error at {path} ({node}): {reason}; this is an eocube bug if the cube was made by eocube, please report it"
    )]
    Zarr { path: PathBuf, node: String, reason: String },
    #[error(
        "{path} already exists and is not empty; to resume a build open it with the same spec, otherwise remove it or choose another output path"
    )]
    AlreadyExists { path: PathBuf },
    #[error("no cube at {path}; check the path, or build the cube first (`eocube build --out PATH ...`)")]
    NotFound { path: PathBuf },
    #[error("{path} is not an eocube cube: {reason}; give the path of a cube made by eocube, or a new path")]
    NotACube { path: PathBuf, reason: String },
    #[error(
        "the cube at {path} has a different {field} (on disk: {found}, requested: {requested}); use the spec it was built with, or a new output path"
    )]
    LayoutMismatch { path: PathBuf, field: &'static str, found: String, requested: String },
    #[error("invalid cube layout for {path}: {reason}")]
    InvalidLayout { path: PathBuf, reason: String },
    #[error("chunk (t {t}, y {iy}, x {ix}) of {path}: {reason}")]
    BadChunk { path: PathBuf, t: usize, iy: usize, ix: usize, reason: String },
    #[error(transparent)]
    Location(#[from] LocationError),
    #[error(
        "{location}: the bucket {bucket:?} does not exist (or these credentials cannot see it); create it first, or check the bucket name and {}",
        cloud.endpoint_fix()
    )]
    NoBucket { location: String, bucket: String, cloud: Cloud },
    #[error(
        "{location}: access denied ({reason}); check the credentials ({}) and that they may list, read, write and delete under the prefix",
        cloud.credentials_fix()
    )]
    Denied { location: String, reason: String, cloud: Cloud },
    #[error("{location}: the object store does not answer ({reason}); check {} and the network", cloud.endpoint_fix())]
    Unreachable { location: String, reason: String, cloud: Cloud },
    /// The cloud settings themselves cannot be used (an AWS profile that is missing, indirect or
    /// incomplete): the reason names the profile, the files and the fix.
    #[error("{location}: {reason}")]
    Config { location: String, reason: String },
    #[error("{location}: {op} {key} failed: {reason}; run the same command again to retry (done jobs are kept)")]
    Remote { location: String, op: &'static str, key: String, reason: String },
    #[error("{location}: Icechunk {op}: {reason}")]
    Icechunk { location: String, op: &'static str, reason: String },
    #[error(
        "{location}: the branch {branch:?} changed while the cube was being built ({reason}); it was left as it is and the finished build stays on {build_branch}: run `eocube abort` and build again on the new version"
    )]
    BranchMoved { location: String, branch: String, build_branch: String, reason: String },
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where the cube's bytes go: whole-object reads and writes, deletes, listings under a prefix,
/// and appends where the medium has them.
#[derive(Clone)]
pub enum Backend {
    /// A directory on local disk, read and listed through a zarrs storage trait object.
    Local { root: PathBuf, storage: ReadableWritableListableStorage },
    /// A prefix in an object store (`s3://bucket/prefix`); `root` is its URL, as a path, for
    /// messages.
    Object { root: PathBuf, store: Arc<ObjectBackend> },
    /// An Icechunk repository: a session on a build branch, or a read-only view of a branch
    /// (`src/store/icechunk.rs`); `root` is its URL, as a path, for messages.
    Icechunk { root: PathBuf, store: Arc<IcechunkBackend> },
}

impl Backend {
    fn local(root: &Path) -> Result<Backend> {
        let store = FilesystemStore::new(root)
            .map_err(|e| StoreError::Io { path: root.to_path_buf(), source: std::io::Error::other(e.to_string()) })?;
        Ok(Backend::Local { root: root.to_path_buf(), storage: Arc::new(store) })
    }

    fn root(&self) -> &Path {
        match self {
            Backend::Local { root, .. } | Backend::Object { root, .. } | Backend::Icechunk { root, .. } => root,
        }
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Backend::Local { storage, root } => {
                let k = store_key(root, key)?;
                storage.get(&k).map(|b| b.map(|b| b.to_vec())).map_err(|e| self.zarr_err(key, e))
            }
            Backend::Object { store, .. } => store.get(key),
            Backend::Icechunk { store, .. } => store.get(key),
        }
    }

    /// Several keys, in order (concurrent requests on object storage).
    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        match self {
            Backend::Local { .. } | Backend::Icechunk { .. } => keys.iter().map(|k| self.get(k)).collect(),
            Backend::Object { store, .. } => store.get_many(keys),
        }
    }

    /// Write `key` whole or not at all: readers see the old value or the new one, never a torn
    /// file. zarrs' `FilesystemStore::set` truncates and rewrites in place, so a reader racing a
    /// writer could see half a chunk; write a temporary file under `_eocube/tmp/` and rename it
    /// over the key (atomic within one file system).
    fn put_atomic(&self, key: &str, bytes: &[u8]) -> Result<()> {
        match self {
            // One PUT replaces an object whole.
            Backend::Object { store, .. } => store.put(key, bytes),
            // A session write; committed with the build (src/store/icechunk.rs).
            Backend::Icechunk { store, .. } => store.put(key, bytes),
            Backend::Local { root, .. } => {
                static COUNTER: AtomicU64 = AtomicU64::new(0);
                let dest = root.join(key);
                let tmp_dir = root.join(BOOKKEEPING_DIR).join("tmp");
                let tmp = tmp_dir.join(format!(
                    "{}-{}-{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    key.replace('/', "_")
                ));
                let io = |path: &Path| {
                    let path = path.to_path_buf();
                    move |source| StoreError::Io { path, source }
                };
                std::fs::create_dir_all(&tmp_dir).map_err(io(&tmp_dir))?;
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent))?;
                }
                std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
                std::fs::rename(&tmp, &dest).map_err(io(&dest))
            }
        }
    }

    fn erase(&self, key: &str) -> Result<()> {
        match self {
            Backend::Local { storage, root } => {
                let k = store_key(root, key)?;
                storage.erase(&k).map_err(|e| self.zarr_err(key, e))
            }
            Backend::Object { store, .. } => store.delete(key),
            Backend::Icechunk { store, .. } => store.delete(key),
        }
    }

    /// Append one report record. On local disk: one line of `_eocube/report.jsonl`, with one
    /// `O_APPEND` write of one small buffer, which lands whole even with several workers
    /// appending at once. Object storage cannot append: one object per record under
    /// `_eocube/report/`, named so that names sort in time order.
    fn append_report(&self, line: &str) -> Result<()> {
        use std::io::Write;
        match self {
            Backend::Icechunk { store, .. } => store.append_report(line),
            Backend::Object { store, .. } => {
                static COUNTER: AtomicU64 = AtomicU64::new(0);
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                let key = format!(
                    "{REPORT_PARTS}{nanos:020}-{:07}-{:08}.json",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                );
                store.put(&key, line.trim_end_matches('\n').as_bytes())
            }
            Backend::Local { root, .. } => {
                let key = REPORT_LINES;
                let path = root.join(key);
                let io = |source| StoreError::Io { path: path.clone(), source };
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
                let mut buf = line.trim_end_matches('\n').to_string();
                buf.push('\n');
                f.write_all(buf.as_bytes()).map_err(io)
            }
        }
    }

    fn list_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let storage = match self {
            Backend::Local { storage, .. } => storage,
            Backend::Object { store, .. } => return store.list_prefix(prefix),
            Backend::Icechunk { store, .. } => return store.list_prefix(prefix),
        };
        let p = zarrs::storage::StorePrefix::new(prefix).map_err(|e| StoreError::Zarr {
            path: self.root().to_path_buf(),
            node: prefix.into(),
            reason: e.to_string(),
        })?;
        match storage.list_prefix(&p) {
            Ok(keys) => Ok(keys.iter().map(|k| k.as_str().to_string()).collect()),
            // A prefix that was never written is an empty listing, not an error.
            Err(_) if !self.root().join(prefix).exists() => Ok(Vec::new()),
            Err(e) => Err(self.zarr_err(prefix, e)),
        }
    }

    fn zarr_err(&self, node: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Zarr { path: self.root().to_path_buf(), node: node.into(), reason: e.to_string() }
    }
}

fn store_key(root: &Path, key: &str) -> Result<StoreKey> {
    StoreKey::new(key).map_err(|e| StoreError::Zarr {
        path: root.to_path_buf(),
        node: key.into(),
        reason: e.to_string(),
    })
}

/// An eocube cube: its layout and where it lives.
pub struct Cube {
    location: OutLocation,
    backend: Backend,
    layout: CubeLayout,
    /// The data variable bound to an in-memory store: zarrs encodes a chunk there, and the bytes
    /// are then placed atomically in the real store (see [`Backend::put_atomic`]).
    encoder: Array<MemoryStore>,
    memory: Arc<MemoryStore>,
}

impl Cube {
    /// Create the cube at `out` (a local path or a URL, see [`OutLocation::parse`]) and write its
    /// template: group metadata, every array's metadata and the coordinate values, and
    /// `_eocube/plan.json`. No data chunk is written. Refuses an existing non-empty location.
    pub fn create(out: impl AsRef<OsStr>, layout: &CubeLayout) -> Result<Cube> {
        Cube::create_at(&OutLocation::parse(out)?, layout)
    }

    /// [`Cube::create`] at a parsed location. On object storage the bucket, endpoint and
    /// credentials are checked (one listing) before anything is written.
    pub fn create_at(loc: &OutLocation, layout: &CubeLayout) -> Result<Cube> {
        let path = loc.as_path_buf();
        validate(&path, layout)?;
        let backend = match loc {
            OutLocation::Local(path) => {
                if path.is_file() {
                    return Err(StoreError::AlreadyExists { path: path.to_path_buf() });
                }
                if path.is_dir() {
                    let mut entries = std::fs::read_dir(path)
                        .map_err(|source| StoreError::Io { path: path.to_path_buf(), source })?;
                    if entries.next().is_some() {
                        return Err(StoreError::AlreadyExists { path: path.to_path_buf() });
                    }
                }
                std::fs::create_dir_all(path).map_err(|source| StoreError::Io { path: path.to_path_buf(), source })?;
                Backend::local(path)?
            }
            OutLocation::S3 { .. } | OutLocation::Gcs { .. } | OutLocation::Azure { .. } => {
                let store = ObjectBackend::new(loc)?;
                store.check()?;
                if !store.is_empty()? {
                    return Err(StoreError::AlreadyExists { path });
                }
                Backend::Object { root: store.display_path(), store: Arc::new(store) }
            }
            // A build branch with the template committed (src/store/icechunk.rs).
            OutLocation::Icechunk(_) => {
                return Cube::create_or_open_icechunk(loc, layout, &IcechunkOptions::default()).map(|(c, _)| c);
            }
        };

        write_template(&backend, &path, layout)?;
        Cube::with_backend(loc.clone(), backend, layout.clone())
    }

    /// Open an existing cube at `out` (a local path or a URL) and read its layout back from the
    /// group attributes.
    pub fn open(out: impl AsRef<OsStr>) -> Result<Cube> {
        Cube::open_at(&OutLocation::parse(out)?)
    }

    /// [`Cube::open`] at a parsed location. Only reads.
    pub fn open_at(loc: &OutLocation) -> Result<Cube> {
        let path = loc.as_path_buf();
        let backend = match loc {
            OutLocation::Local(path) => {
                if !path.exists() {
                    return Err(StoreError::NotFound { path: path.to_path_buf() });
                }
                if !path.is_dir() {
                    return Err(StoreError::NotACube {
                        path: path.to_path_buf(),
                        reason: "it is a file, not a directory".into(),
                    });
                }
                Backend::local(path)?
            }
            OutLocation::S3 { .. } | OutLocation::Gcs { .. } | OutLocation::Azure { .. } => {
                let store = ObjectBackend::new(loc)?;
                store.check()?;
                if store.is_empty()? {
                    return Err(StoreError::NotFound { path });
                }
                Backend::Object { root: store.display_path(), store: Arc::new(store) }
            }
            // `main`, or its unfinished build branch (src/store/icechunk.rs).
            OutLocation::Icechunk(repo) => icechunk::open_view(loc, repo, "main", true)?,
        };
        Cube::open_with_backend(loc, backend)
    }

    /// [`Cube::open_at`] on `branch` of an Icechunk repository: with `unfinished`, its unfinished
    /// build if there is one, else the finished cube on the branch. Elsewhere the same as
    /// [`Cube::open_at`].
    pub fn open_branch(loc: &OutLocation, branch: &str, unfinished: bool) -> Result<Cube> {
        match loc {
            OutLocation::Icechunk(repo) => {
                Cube::open_with_backend(loc, icechunk::open_view(loc, repo, branch, unfinished)?)
            }
            _ => Cube::open_at(loc),
        }
    }

    /// Read the layout back from the group attributes of the cube in `backend`.
    fn open_with_backend(loc: &OutLocation, backend: Backend) -> Result<Cube> {
        let path = loc.as_path_buf();
        let not_cube = |reason: &str| StoreError::NotACube { path: path.clone(), reason: reason.into() };
        let (attrs, format) = if let Some(bytes) = backend.get("zarr.json")? {
            let doc: Value = serde_json::from_slice(&bytes).map_err(|_| not_cube("zarr.json is not JSON"))?;
            if doc.get("node_type").and_then(Value::as_str) != Some("group") {
                return Err(not_cube("zarr.json is not a Zarr group"));
            }
            (doc.get("attributes").cloned().unwrap_or(Value::Null), ZarrFormat::V3)
        } else if backend.get(".zgroup")?.is_some() {
            let bytes = backend.get(".zattrs")?.unwrap_or_else(|| b"{}".to_vec());
            (serde_json::from_slice(&bytes).map_err(|_| not_cube(".zattrs is not JSON"))?, ZarrFormat::V2)
        } else {
            return Err(not_cube("no Zarr group metadata (zarr.json or .zgroup)"));
        };
        let record: LayoutRecord = attrs
            .get("eocube_layout")
            .cloned()
            .ok_or_else(|| not_cube("the Zarr group has no `eocube_layout` attribute"))
            .and_then(|v| serde_json::from_value(v).map_err(|e| not_cube(&format!("bad `eocube_layout`: {e}"))))?;
        if record.zarr_format != format {
            return Err(not_cube("`eocube_layout` names another Zarr format than the metadata on disk"));
        }
        let crs = Crs::from_epsg(record.epsg).map_err(|e| not_cube(&e.to_string()))?;
        let layout = CubeLayout {
            geobox: GeoBox::new(crs, record.affine, record.shape),
            chunk_size: record.chunk_size,
            times: record.times,
            bands: record.bands,
            variable: record.variable,
            zarr_format: record.zarr_format,
            attrs: attrs.get("spec").cloned().unwrap_or(Value::Null),
        };
        Cube::with_backend(loc.clone(), backend, layout)
    }

    /// Open the cube at `out` and check that it has exactly `layout` (grid, chunking, times,
    /// bands, variable, format and spec): the precondition for resuming a build into it.
    pub fn open_matching(out: impl AsRef<OsStr>, layout: &CubeLayout) -> Result<Cube> {
        Cube::open_matching_at(&OutLocation::parse(out)?, layout)
    }

    /// Create the cube at `loc` if nothing is there, or reopen it when it holds this very cube
    /// (resume; the flag is `true`). Anything else is refused without writing.
    pub fn create_or_open_matching(loc: &OutLocation, layout: &CubeLayout) -> Result<(Cube, bool)> {
        let non_empty = match loc {
            OutLocation::Icechunk(_) => return Cube::create_or_open_icechunk(loc, layout, &IcechunkOptions::default()),
            OutLocation::Local(out) => out.is_file() || std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()),
            OutLocation::S3 { .. } | OutLocation::Gcs { .. } | OutLocation::Azure { .. } => {
                let store = ObjectBackend::new(loc)?;
                store.check()?;
                !store.is_empty()?
            }
        };
        if non_empty {
            Ok((Cube::open_matching_at(loc, layout)?, true))
        } else {
            Ok((Cube::create_at(loc, layout)?, false))
        }
    }

    /// [`Cube::open_matching`] at a parsed location. Only reads.
    pub fn open_matching_at(loc: &OutLocation, layout: &CubeLayout) -> Result<Cube> {
        Cube::check_matching(Cube::open_at(loc)?, layout)
    }

    /// `cube` if it has exactly `layout`, else [`StoreError::LayoutMismatch`].
    fn check_matching(cube: Cube, layout: &CubeLayout) -> Result<Cube> {
        let path = cube.path().to_path_buf();
        let path = path.as_path();
        let (a, b) = (LayoutRecord::of(&cube.layout), LayoutRecord::of(layout));
        let mismatch = |field: &'static str, found: String, requested: String| {
            Err(StoreError::LayoutMismatch { path: path.to_path_buf(), field, found, requested })
        };
        if a.epsg != b.epsg {
            return mismatch("CRS", format!("EPSG:{}", a.epsg), format!("EPSG:{}", b.epsg));
        }
        if a.affine != b.affine || a.shape != b.shape {
            return mismatch("grid", format!("{:?} {:?}", a.affine, a.shape), format!("{:?} {:?}", b.affine, b.shape));
        }
        if a.chunk_size != b.chunk_size {
            return mismatch("chunk size", a.chunk_size.to_string(), b.chunk_size.to_string());
        }
        if a.times != b.times {
            return mismatch("time bins", format!("{:?}", a.times), format!("{:?}", b.times));
        }
        if a.bands != b.bands {
            return mismatch("bands", a.bands.join(","), b.bands.join(","));
        }
        if a.variable != b.variable {
            return mismatch("variable name", a.variable, b.variable);
        }
        if a.zarr_format != b.zarr_format {
            return mismatch("Zarr format", format!("{:?}", a.zarr_format), format!("{:?}", b.zarr_format));
        }
        if cube.layout.attrs != layout.attrs {
            return mismatch("spec", cube.layout.attrs.to_string(), layout.attrs.to_string());
        }
        Ok(cube)
    }

    fn with_backend(location: OutLocation, backend: Backend, layout: CubeLayout) -> Result<Cube> {
        let root = backend.root().to_path_buf();
        let data_doc = meta::array_docs(&layout)
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::InvalidLayout { path: root.clone(), reason: "no data variable".into() })?;
        let memory = Arc::new(MemoryStore::new());
        let encoder = Array::new_with_metadata(
            memory.clone(),
            &format!("/{}", layout.variable),
            parse_metadata(&root, &data_doc)?,
        )
        .map_err(|e| backend.zarr_err(&layout.variable, e))?;
        Ok(Cube { location, backend, layout, encoder, memory })
    }

    pub fn layout(&self) -> &CubeLayout {
        &self.layout
    }

    /// The local directory, or the URL (`s3://bucket/prefix`) as an opaque path.
    pub fn path(&self) -> &Path {
        self.backend.root()
    }

    /// Where the cube lives.
    pub fn location(&self) -> &OutLocation {
        &self.location
    }

    /// The expected shape `(rows, cols)` of chunk `(iy, ix)`: clipped at the grid edge.
    pub fn chunk_shape(&self, iy: usize, ix: usize) -> Option<(usize, usize)> {
        let cs = self.layout.chunk_size;
        let Shape { ny, nx } = self.layout.geobox.shape;
        (iy * cs < ny && ix * cs < nx).then(|| (cs.min(ny - iy * cs), cs.min(nx - ix * cs)))
    }

    /// The store key of a data chunk (relative to the cube's root).
    pub fn chunk_key(&self, t: usize, iy: usize, ix: usize) -> String {
        self.encoder.chunk_key(&[t as u64, iy as u64, ix as u64, 0]).as_str().to_string()
    }

    /// Write chunk `(t, iy, ix)` whole: `data` in (row, col, band) order with `shape = (rows,
    /// cols)` equal to [`Cube::chunk_shape`] (clipped at the grid edge; it is still stored at
    /// offset `index * chunk_size`, as a full Zarr chunk padded with the fill value). A chunk
    /// all fill is not stored (and a previous one erased): it reads as fill either way. The bytes
    /// depend only on the input, so rewriting a chunk gives identical files. In an Icechunk
    /// repository the chunk goes into the job's own fork and is visible once
    /// [`Cube::mark_done`] records the job (`src/store/icechunk.rs`).
    pub fn write_chunk(&self, t: usize, iy: usize, ix: usize, data: &[u16], shape: (usize, usize)) -> Result<()> {
        let bad = |reason: String| StoreError::BadChunk { path: self.path().to_path_buf(), t, iy, ix, reason };
        if t >= self.layout.times.len() {
            return Err(bad(format!("time index out of range (the cube has {} time bins)", self.layout.times.len())));
        }
        let (rows, cols) =
            self.chunk_shape(iy, ix).ok_or_else(|| bad("chunk index outside the chunk grid".to_string()))?;
        if shape != (rows, cols) {
            return Err(bad(format!("shape {shape:?} given, this chunk is {rows} x {cols} pixels")));
        }
        let nb = self.layout.bands.len();
        if data.len() != rows * cols * nb {
            return Err(bad(format!("{} values given, expected {rows} x {cols} x {nb} bands", data.len())));
        }
        let cs = self.layout.chunk_size;
        let full: Vec<u16> = if (rows, cols) == (cs, cs) {
            data.to_vec()
        } else {
            let mut full = vec![0u16; cs * cs * nb];
            for r in 0..rows {
                full[r * cs * nb..(r * cs + cols) * nb].copy_from_slice(&data[r * cols * nb..(r + 1) * cols * nb]);
            }
            full
        };
        let indices = [t as u64, iy as u64, ix as u64, 0];
        let key = self.encoder.chunk_key(&indices);
        self.encoder.store_chunk(&indices, full).map_err(|e| bad(format!("encoding failed: {e}")))?;
        let encoded = zarrs::storage::ReadableStorageTraits::get(&*self.memory, &key)
            .map_err(|e| bad(format!("encoding failed: {e}")))?;
        // Free the staging copy at once: the memory store is only a codec pipeline.
        zarrs::storage::WritableStorageTraits::erase(&*self.memory, &key)
            .map_err(|e| bad(format!("encoding failed: {e}")))?;
        if let Backend::Icechunk { store, .. } = &self.backend {
            // Into the job's own fork, merged when the job is marked done.
            return store.write_job_chunk((t, iy, ix), key.as_str(), encoded.as_deref());
        }
        match encoded {
            Some(bytes) => self.backend.put_atomic(key.as_str(), &bytes),
            None => self.backend.erase(key.as_str()),
        }
    }

    /// Write the consolidated metadata, last: v3 into the root `zarr.json`
    /// (`consolidated_metadata`, as zarr-python 3 writes it), v2 as `.zmetadata`. It is built
    /// from the metadata files on disk, so it says exactly what they say.
    pub fn finish(&self) -> Result<()> {
        if let Backend::Icechunk { store, .. } = &self.backend {
            // Icechunk has no consolidated metadata: the final commit and branch update instead.
            return store.publish(&self.layout);
        }
        let names: Vec<String> = meta::array_docs(&self.layout).into_iter().map(|d| d.name).collect();
        let read = |key: &str| -> Result<Value> {
            let bytes = self.backend.get(key)?.ok_or_else(|| StoreError::NotACube {
                path: self.path().to_path_buf(),
                reason: format!("{key} is missing"),
            })?;
            serde_json::from_slice(&bytes).map_err(|e| self.backend.zarr_err(key, e))
        };
        match self.layout.zarr_format {
            ZarrFormat::V3 => {
                let mut group = read("zarr.json")?;
                let mut members = Map::new();
                for name in names {
                    members.insert(name.clone(), read(&format!("{name}/zarr.json"))?);
                }
                if let Value::Object(g) = &mut group {
                    g.insert(
                        "consolidated_metadata".into(),
                        json!({"kind": "inline", "must_understand": false, "metadata": members}),
                    );
                }
                self.backend.put_atomic("zarr.json", &to_pretty(&group))
            }
            ZarrFormat::V2 => {
                let mut m = Map::new();
                m.insert(".zgroup".into(), read(".zgroup")?);
                m.insert(".zattrs".into(), read(".zattrs")?);
                for name in names {
                    m.insert(format!("{name}/.zarray"), read(&format!("{name}/.zarray"))?);
                    m.insert(format!("{name}/.zattrs"), read(&format!("{name}/.zattrs"))?);
                }
                let doc = json!({"metadata": m, "zarr_consolidated_format": 1});
                self.backend.put_atomic(".zmetadata", &to_pretty(&doc))
            }
        }
    }

    /// Whether [`Cube::finish`] has run: the consolidated metadata is there.
    pub fn is_consolidated(&self) -> bool {
        if let Backend::Icechunk { store, .. } = &self.backend {
            return store.is_complete();
        }
        match self.layout.zarr_format {
            ZarrFormat::V3 => self
                .backend
                .get("zarr.json")
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|v| v.get("consolidated_metadata").is_some()),
            ZarrFormat::V2 => self.backend.get(".zmetadata").ok().flatten().is_some(),
        }
    }

    /// Grows the time axis to `layout.times` (the old times must be its beginning; everything
    /// else but the spec attributes must be equal), rewriting the metadata and the `time`
    /// coordinate. Data chunks stay where they are. The consolidated metadata is removed, so a
    /// reader sees the live arrays until [`Cube::finish`] writes it again.
    pub fn extend_times(&self, layout: &CubeLayout) -> Result<Cube> {
        self.check_extends(layout)?;
        match layout.zarr_format {
            // write_template rewrites the root zarr.json without `consolidated_metadata`
            ZarrFormat::V3 => {}
            ZarrFormat::V2 => self.backend.erase(".zmetadata")?,
        }
        write_template(&self.backend, self.path(), layout)?;
        Cube::with_backend(self.location.clone(), self.backend.clone(), layout.clone())
    }

    /// That `layout` is this cube with more time bins at the end (and another spec): the
    /// precondition of [`Cube::extend_times`]. Only reads.
    pub(crate) fn check_extends(&self, layout: &CubeLayout) -> Result<()> {
        let path = self.path().to_path_buf();
        let (a, b) = (LayoutRecord::of(&self.layout), LayoutRecord::of(layout));
        let mismatch = |field: &'static str, found: String, requested: String| {
            Err(StoreError::LayoutMismatch { path: path.clone(), field, found, requested })
        };
        if (a.epsg, a.affine, a.shape, a.chunk_size) != (b.epsg, b.affine, b.shape, b.chunk_size)
            || a.bands != b.bands
            || a.variable != b.variable
            || a.zarr_format != b.zarr_format
        {
            return mismatch("grid, bands, variable or format", format!("{a:?}"), format!("{b:?}"));
        }
        if b.times.len() < a.times.len() || b.times[..a.times.len()] != a.times[..] {
            return mismatch("time bins", format!("{:?}", a.times), format!("{:?}", b.times));
        }
        validate(&path, layout)
    }

    /// Forget that `job` is done, so the next run computes it again (its chunk stays until then).
    pub fn unmark_done(&self, job: JobId) -> Result<()> {
        self.backend.erase(&ledger::key(job))
    }

    /// Record job `job` as done with `record` (counts, timings) in `_eocube/ledger/`.
    pub fn mark_done(&self, job: JobId, record: &Value) -> Result<()> {
        self.backend.put_atomic(&ledger::key(job), &to_pretty(record))
    }

    /// The jobs recorded as done: resuming skips them.
    pub fn done_jobs(&self) -> Result<HashSet<JobId>> {
        let keys = self.backend.list_prefix(&format!("{BOOKKEEPING_DIR}/ledger/"))?;
        Ok(keys.iter().filter_map(|k| ledger::parse_key(k)).collect())
    }

    /// The ledger record of a job, if it is done.
    pub fn ledger_record(&self, job: JobId) -> Result<Option<Value>> {
        let key = ledger::key(job);
        match self.backend.get(&key)? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| self.backend.zarr_err(&key, e)),
            None => Ok(None),
        }
    }

    /// Every record of the run report, oldest first: the lines of `_eocube/report.jsonl` (local
    /// disk), then the objects under `_eocube/report/` (object storage; names sort in time
    /// order). A line or object that is not JSON (cut short by a killed process) is skipped.
    pub fn report(&self) -> Result<Vec<Value>> {
        if let Backend::Icechunk { store, .. } = &self.backend {
            return store.report();
        }
        let mut records: Vec<Value> = Vec::new();
        if let Some(bytes) = self.backend.get(REPORT_LINES)? {
            records.extend(String::from_utf8_lossy(&bytes).lines().filter_map(|l| serde_json::from_str(l).ok()));
        }
        let mut parts = self.backend.list_prefix(REPORT_PARTS)?;
        parts.sort();
        for bytes in self.backend.get_many(&parts)?.into_iter().flatten() {
            if let Ok(v) = serde_json::from_slice(&bytes) {
                records.push(v);
            }
        }
        Ok(records)
    }

    /// Append one record to the run report (a line of `_eocube/report.jsonl` on local disk, one
    /// object under `_eocube/report/` on object storage).
    pub fn append_report(&self, record: &Value) -> Result<()> {
        self.backend.append_report(&record.to_string())
    }
}

/// A remote error's text on one line (whitespace runs collapsed), cut after `max` bytes.
fn one_line(s: &str, max: usize) -> String {
    let mut s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > max {
        let cut = (0..=max).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn validate(path: &Path, layout: &CubeLayout) -> Result<()> {
    let bad = |reason: &str| Err(StoreError::InvalidLayout { path: path.to_path_buf(), reason: reason.into() });
    if layout.chunk_size == 0 {
        return bad("chunk size is 0");
    }
    if layout.times.is_empty() {
        return bad("no time bins");
    }
    if layout.bands.is_empty() {
        return bad("no bands");
    }
    let reserved = ["time", "band", "spatial_ref", "latitude", "longitude", "x", "y", BOOKKEEPING_DIR];
    if layout.variable.is_empty() || layout.variable.contains('/') || reserved.contains(&layout.variable.as_str()) {
        return bad("the variable name must be non-empty, without '/', and not a coordinate name");
    }
    if layout.geobox.shape.ny == 0 || layout.geobox.shape.nx == 0 {
        return bad("empty grid");
    }
    Ok(())
}

/// Writes (or rewrites) everything of a cube but its data chunks: `_eocube/plan.json` first (a
/// half-written template is still recognisable), the group metadata, every array's metadata and
/// the coordinate values. Data chunks keep their keys across rewrites: their chunk shape never
/// changes.
fn write_template(backend: &Backend, path: &Path, layout: &CubeLayout) -> Result<()> {
    // Plan first: a half-written template is still recognisable and refused by `create`.
    let record = LayoutRecord::of(layout);
    let plan = json!({"layout": record, "spec": layout.attrs});
    backend.put_atomic(&format!("{BOOKKEEPING_DIR}/plan.json"), &to_pretty(&plan))?;

    let attrs = group_attrs(layout, &record);
    match layout.zarr_format {
        ZarrFormat::V3 => {
            let doc = json!({"zarr_format": 3, "node_type": "group", "attributes": attrs});
            backend.put_atomic("zarr.json", &to_pretty(&doc))?;
        }
        ZarrFormat::V2 => {
            backend.put_atomic(".zgroup", &to_pretty(&json!({"zarr_format": 2})))?;
            backend.put_atomic(".zattrs", &to_pretty(&attrs))?;
        }
    }
    // Coordinate values are encoded by zarrs into memory, then placed like chunks.
    let staging = Arc::new(MemoryStore::new());
    for doc in meta::array_docs(layout) {
        // zarrs parses and validates each document, then the document itself is written: zarrs
        // 0.23 serializes a codec without configuration in the short form (`"vlen-utf8"`),
        // which zarr-python 3.1 rejects, so its own metadata writer is not used.
        let array = Array::new_with_metadata(staging.clone(), &format!("/{}", doc.name), parse_metadata(path, &doc)?)
            .map_err(|e| backend.zarr_err(&doc.name, e))?;
        match layout.zarr_format {
            ZarrFormat::V3 => backend.put_atomic(&format!("{}/zarr.json", doc.name), &to_pretty(&doc.metadata))?,
            ZarrFormat::V2 => {
                backend.put_atomic(&format!("{}/.zarray", doc.name), &to_pretty(&doc.metadata))?;
                backend.put_atomic(&format!("{}/.zattrs", doc.name), &to_pretty(&doc.attrs))?;
            }
        }
        write_coordinate(&array, &doc.name, layout).map_err(|e| backend.zarr_err(&doc.name, e))?;
    }
    let keys = zarrs::storage::ListableStorageTraits::list(&*staging).map_err(|e| backend.zarr_err("/", e))?;
    for key in keys {
        let bytes = zarrs::storage::ReadableStorageTraits::get(&*staging, &key)
            .map_err(|e| backend.zarr_err(key.as_str(), e))?
            .ok_or_else(|| backend.zarr_err(key.as_str(), "staged coordinate chunk vanished"))?;
        backend.put_atomic(key.as_str(), &bytes)?;
    }
    Ok(())
}

fn group_attrs(layout: &CubeLayout, record: &LayoutRecord) -> Value {
    json!({
        "title": format!("eocube {}", layout.variable),
        "Conventions": "CF-1.8",
        "eocube_version": env!("CARGO_PKG_VERSION"),
        "created": now_rfc3339(),
        "spec": layout.attrs,
        "eocube_layout": record,
    })
}

/// Now, RFC 3339 UTC to the second (chrono is built without its `clock` feature).
fn now_rfc3339() -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn to_pretty(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

/// Parse one of our metadata documents with zarrs (which validates it).
fn parse_metadata(path: &Path, doc: &meta::ArrayDoc) -> Result<ArrayMetadata> {
    let err = |e: serde_json::Error| StoreError::Zarr {
        path: path.to_path_buf(),
        node: doc.name.clone(),
        reason: e.to_string(),
    };
    if doc.metadata.get("zarr_format").and_then(Value::as_u64) == Some(2) {
        let mut m: ArrayMetadataV2 = serde_json::from_value(doc.metadata.clone()).map_err(err)?;
        if let Value::Object(attrs) = &doc.attrs {
            m.attributes = attrs.clone();
        }
        Ok(ArrayMetadata::V2(m))
    } else {
        Ok(ArrayMetadata::V3(serde_json::from_value::<ArrayMetadataV3>(doc.metadata.clone()).map_err(err)?))
    }
}

/// Write the values of a coordinate array (one chunk each); the data variable gets none.
fn write_coordinate(
    array: &Array<MemoryStore>,
    name: &str,
    layout: &CubeLayout,
) -> std::result::Result<(), zarrs::array::ArrayError> {
    let (yname, xname) = meta::spatial_dims(&layout.geobox.crs);
    if name == "time" {
        array.store_chunk(&[0], layout.times.clone())
    } else if name == yname {
        array.store_chunk(&[0], layout.geobox.y_coords())
    } else if name == xname {
        array.store_chunk(&[0], layout.geobox.x_coords())
    } else if name == "band" {
        let bands: Vec<&str> = layout.bands.iter().map(String::as_str).collect();
        array.store_chunk(&[0], bands)
    } else if name == "spatial_ref" {
        // Its value is meaningless (the attributes carry the CRS); rioxarray writes 0.
        array.store_chunk(&[], vec![0i32])
    } else {
        Ok(())
    }
}
