//! The cube on disk (DESIGN §8): a Zarr v3 (default) or v2 group holding one uint16 data variable,
//! its coordinates and a `spatial_ref` grid mapping, plus eocube's bookkeeping under `_eocube/`.
//!
//! Owns: the layout of the Zarr store (metadata documents, chunk keys, consolidated metadata), the
//! encoding of chunks, the [`CubeStore`] seam and its back ends, and the `_eocube/` files (plan,
//! ledger, run report, runs). Must not touch: how chunks are computed (warp, mask, reduce), the
//! CubeSpec itself (it arrives as opaque JSON in [`CubeLayout::attrs`]) or the scheduling of jobs.
//!
//! ```text
//!            Cube (layout + zarrs encoder, CPU only)
//!              │  encode_chunk(t, iy, ix) ─▶ (key, bytes)         on the CPU pool
//!              ▼
//!   dyn CubeStore (async, one module per back end)
//!     ├─ zarr::ZarrStore      plain Zarr through object_store: local disk, s3://, gs://, az://
//!     └─ icechunk::IcechunkStore   a build branch of an Icechunk repository
//!
//!   write_template ─▶ write_chunk ─▶ Receipt ─▶ record([Finished]) ─▶ checkpoint ─▶ publish
//! ```
//!
//! A job's chunk is written by whoever runs the job (a local task, a Slurm array task, a Lambda)
//! and answered with a [`Receipt`]: nothing for plain Zarr, where the chunk object is the whole
//! change, and the serialized change set of a forked session for Icechunk. The coordinator hands
//! receipts and report lines back in batches through [`CubeStore::record`]: plain Zarr writes one
//! ledger object per done job and one report object per batch; Icechunk merges the change sets
//! and commits every few jobs, with the ledger in the commit properties. Nothing is intercepted by
//! key: every operation says what it means. The choices and their reasons are in `docs/cube.md`.

pub mod codec;
pub mod icechunk;
mod ledger;
pub mod location;
pub mod meta;
mod object;
#[cfg(test)]
mod tests;
pub mod view;
pub mod zarr;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zarrs::array::Array;
use zarrs::metadata::ArrayMetadata;
use zarrs::metadata::v2::ArrayMetadataV2;
use zarrs::metadata::v3::ArrayMetadataV3;
use zarrs::storage::store::MemoryStore;

use crate::grid::{Affine, Crs, GeoBox, Shape};
pub use crate::plan::Job;
use crate::reduce::{Encoding, Reducer};

pub use icechunk::IcechunkOptions;
pub use location::{IcechunkRepo, LocationError, OutLocation};
pub use object::Files;

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
    /// What the data variable holds (its reducer, a `quantile` dim) and whether `valid_count`
    /// is stored beside it.
    pub values: DataValues,
}

/// What the values of the data variable are: made by which reducer, stored how, with which
/// extra dim and variable (docs/cube.md, "Reducers").
#[derive(Debug, Clone, PartialEq)]
pub struct DataValues {
    /// The reducer's text form, the data variable's `eocube:reducer` attribute.
    pub reducer: String,
    /// How the uint16 values are scaled (the CF attributes follow from it).
    pub encoding: Encoding,
    /// The `quantile` coordinate: a last dim of the data variable when not empty.
    pub quantiles: Vec<f64>,
    /// `valid_count (time, y, x)` is stored beside the data variable.
    pub valid_count: bool,
    /// The CF `scale_factor` and `add_offset` of reflectance DNs: the sensor's
    /// ([`crate::sensor::Harmonization::scale`]).
    pub scale_factor: f64,
    pub add_offset: f64,
    /// What the bands are when not surface reflectance (`aerosol optical thickness`), for the
    /// data variable's `long_name`.
    pub quantity: Option<String>,
    /// The variables of the spectral indices (`ndvi_max`, ...: `time, y, x[, quantile]`, one
    /// each, stored as [`crate::index`] says), in the order of the spec's `index`.
    pub indices: Vec<String>,
}

impl Default for DataValues {
    /// The median-only cube of every eocube before reducers.
    fn default() -> Self {
        DataValues::of(&Reducer::Median, false)
    }
}

impl std::fmt::Display for DataValues {
    /// As the flags say it: `quantiles:0.1,0.9 with valid_count`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reducer)?;
        if self.valid_count {
            f.write_str(" with valid_count")?;
        }
        if !self.indices.is_empty() {
            write!(f, " with {}", self.indices.join(", "))?;
        }
        Ok(())
    }
}

impl DataValues {
    /// The values `reducer` makes, with `valid_count` beside them or not, in Sentinel-2 DNs.
    pub fn of(reducer: &Reducer, valid_count: bool) -> DataValues {
        DataValues {
            reducer: reducer.to_string(),
            encoding: reducer.encoding(),
            quantiles: reducer.quantiles().to_vec(),
            valid_count,
            scale_factor: meta::SCALE_FACTOR,
            add_offset: meta::ADD_OFFSET,
            quantity: None,
            indices: Vec::new(),
        }
    }

    /// These values in the DNs of the sensor of `collection` (the reflectance's, or the scale of
    /// the quantity `bands` are, e.g. aerosol optical thickness).
    pub fn of_sensor(self, collection: &str, bands: &[String]) -> DataValues {
        let profile = crate::sensor::profile_for(collection);
        let (scale_factor, add_offset) = profile.scale_of(bands);
        let quantity = match profile.cube_quantity(bands) {
            Ok(crate::sensor::CubeQuantity::Other(q)) => Some(q.what.to_string()),
            _ => None,
        };
        DataValues { scale_factor, add_offset, quantity, ..self }
    }

    /// These values with the index variables `indices` beside them.
    pub fn with_indices(self, indices: Vec<String>) -> DataValues {
        DataValues { indices, ..self }
    }

    /// Values per pixel and band in a data chunk (the number of quantiles, else 1).
    pub fn per_band(&self) -> usize {
        self.quantiles.len().max(1)
    }
}

/// Name of the variable of `with-count`.
pub const VALID_COUNT_VARIABLE: &str = "valid_count";

/// Default name of the data variable.
pub const DEFAULT_VARIABLE: &str = "rgb_median";
/// Directory of eocube's own files inside the store; no Zarr node lives there.
pub const BOOKKEEPING_DIR: &str = "_eocube";

/// The version of the cube layout this eocube writes and reads (`eocube_layout.layout_version`).
/// A later eocube raises it when a change would make this one misread or damage its cubes; this
/// one then refuses them ([`StoreError::NewerLayout`]) instead of resuming or extending them.
pub const LAYOUT_VERSION: u32 = 1;

fn layout_version_1() -> u32 {
    1
}

fn is_layout_version_1(v: &u32) -> bool {
    *v == 1
}

/// The serialized form of a [`CubeLayout`]: group attribute `eocube_layout` and `_eocube/plan.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LayoutRecord {
    /// Absent in version 1 (every cube before versions), so version-1 cubes keep their bytes.
    #[serde(default = "layout_version_1", skip_serializing_if = "is_layout_version_1")]
    layout_version: u32,
    epsg: u32,
    affine: Affine,
    shape: Shape,
    chunk_size: usize,
    times: Vec<i64>,
    bands: Vec<String>,
    variable: String,
    zarr_format: ZarrFormat,
    /// The `quantile` coordinate of a `quantiles` cube; absent (so older cubes keep their bytes)
    /// for every other reducer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    quantiles: Vec<f64>,
    /// `valid_count` is stored; absent when not.
    #[serde(default, skip_serializing_if = "is_false")]
    valid_count: bool,
    /// The index variables; absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    indices: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl LayoutRecord {
    fn of(layout: &CubeLayout) -> LayoutRecord {
        LayoutRecord {
            layout_version: LAYOUT_VERSION,
            epsg: layout.geobox.crs.epsg(),
            affine: layout.geobox.affine,
            shape: layout.geobox.shape,
            chunk_size: layout.chunk_size,
            times: layout.times.clone(),
            bands: layout.bands.clone(),
            variable: layout.variable.clone(),
            zarr_format: layout.zarr_format,
            quantiles: layout.values.quantiles.clone(),
            valid_count: layout.values.valid_count,
            indices: layout.values.indices.clone(),
        }
    }
}

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

/// What can go wrong reading or writing a cube. Each message names the location and what to do.
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
    #[error("no cube at {path}; check the path, or build the cube there first")]
    NotFound { path: PathBuf },
    #[error("{path} is not an eocube cube: {reason}; give the path of a cube made by eocube, or a new path")]
    NotACube { path: PathBuf, reason: String },
    #[error(
        "the cube at {path} has a different {field} (on disk: {found}, requested: {requested}); use the spec it was built with, or a new output path"
    )]
    LayoutMismatch { path: PathBuf, field: &'static str, found: String, requested: String },
    #[error(
        "{path} was written by eocube {writer} in cube layout version {version}; this eocube ({ours}) reads versions up to {LAYOUT_VERSION}: upgrade eocube to open, resume or extend it (nothing was changed)"
    )]
    NewerLayout { path: PathBuf, version: u32, writer: String, ours: &'static str },
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
    /// A request failed. `transient`: another attempt may succeed (5xx, 429, a reset, a timeout);
    /// set from the error's type, never from its text.
    #[error("{location}: {op} {key} failed: {reason}; run the same command again to retry (done jobs are kept)")]
    Remote { location: String, op: &'static str, key: String, reason: String, transient: bool },
    #[error("{location}: Icechunk {op}: {reason}")]
    Icechunk { location: String, op: &'static str, reason: String, transient: bool },
    #[error(
        "{location}: the branch {branch:?} changed while the cube was being built ({reason}); it was left as it is and the finished build stays on {build_branch}: run `eocube abort` and build again on the new version"
    )]
    BranchMoved { location: String, branch: String, build_branch: String, reason: String },
    /// A record eocube itself made could not be serialized or read back: never written half.
    #[error("{location}: {what}: {reason}; this is an eocube bug, please report it")]
    Record { location: String, what: String, reason: String },
    /// An operation the back end does not offer in this mode (e.g. publishing from a worker).
    #[error("{location}: {what}")]
    Unsupported { location: String, what: String },
}

impl StoreError {
    /// Whether another attempt may succeed: a request that failed for a transient reason. Every
    /// refusal (denied, no bucket, a cube that does not match) is permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Remote { transient, .. } | StoreError::Icechunk { transient, .. } => *transient,
            StoreError::Unreachable { .. } => true,
            StoreError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a chunk write hands back to the coordinator, who records it with the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Receipt {
    /// The chunk object is written (plain Zarr): nothing more to hand back.
    Stored,
    /// The serialized change set of the job's forked Icechunk session, to be merged.
    ChangeSet(#[serde(with = "hex")] Vec<u8>),
}

/// One job that ended, as the coordinator records it: its report line and, when done, the
/// receipts of its chunk writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub job: Job,
    /// `None`: the job failed (only its report line is recorded).
    pub receipt: Option<Receipt>,
    /// The job's run-report line; also its ledger record when done.
    pub record: Value,
}

/// Bytes as lowercase hex in JSON: receipts travel in result files.
mod hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            out.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd number of hex digits"));
        }
        (0..s.len())
            .step_by(2)
            .map(|i| {
                s.get(i..i + 2)
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom("not a hex digit"))
            })
            .collect()
    }
}

/// The seam between a cube and where its bytes live: meaningful, async operations only. One
/// implementation per back end ([`zarr::ZarrStore`], [`icechunk::IcechunkStore`]); every one
/// must pass the conformance suite (`tests/storage.rs`).
#[async_trait]
pub trait CubeStore: Send + Sync {
    /// Where the cube lives, for messages.
    fn location(&self) -> &OutLocation;

    /// A Zarr metadata document or coordinate chunk of the cube (`zarr.json`, `time/c/0`, ...).
    async fn read(&self, key: &str) -> Result<Option<Bytes>>;

    /// Writes (or rewrites, for `extend`) the template: every object in `objects`, in order.
    async fn write_template(&self, layout: &CubeLayout, objects: Vec<(String, Bytes)>) -> Result<()>;

    /// Writes the chunks of one job whole (the data variable's, and `valid_count`'s when the
    /// cube has it), `(key, None)` erasing an all-fill chunk. Rewriting a chunk with the same
    /// bytes is harmless; the one receipt goes to [`CubeStore::record`].
    async fn write_chunks(&self, job: Job, chunks: Vec<(String, Option<Bytes>)>) -> Result<Receipt>;

    /// Records finished jobs: report lines for all, the ledger (and receipts) for the done ones.
    /// A done job's chunk was written before: the ledger never claims a chunk that is not there.
    async fn record(&self, batch: Vec<Finished>) -> Result<()>;

    /// Makes what is recorded durable (Icechunk: a commit on the build branch); plain Zarr
    /// records are durable when written.
    async fn checkpoint(&self) -> Result<()>;

    /// Every job is done: makes the cube complete and visible (plain Zarr: the consolidated
    /// metadata, written last; Icechunk: the final commit and the guarded branch update).
    async fn publish(&self, layout: &CubeLayout) -> Result<()>;

    /// Whether [`CubeStore::publish`] has run.
    async fn is_published(&self) -> Result<bool>;

    /// The done jobs (one listing: resuming a continent's build must not read every record).
    async fn done_jobs(&self) -> Result<BTreeSet<Job>>;

    /// The ledger record of a done job.
    async fn ledger_record(&self, job: Job) -> Result<Option<Value>>;

    /// Every run-report record, oldest first.
    async fn report(&self) -> Result<Vec<Value>>;

    /// `eocube extend`: grows the cube to `layout` (more time bins), rewriting the template with
    /// `objects`; the done jobs for which `redo` holds are forgotten, so they are computed again.
    async fn begin_extend(
        &self,
        layout: &CubeLayout,
        objects: Vec<(String, Bytes)>,
        redo: &(dyn Fn(Job) -> bool + Sync),
    ) -> Result<()>;

    /// eocube's own files beside the cube (runs and their results).
    fn files(&self) -> &Files;

    /// What a remote worker needs to write chunks that [`CubeStore::record`] can take back
    /// (Icechunk: a serialized fork of the build branch's session); `None` for plain Zarr.
    async fn worker_base(&self) -> Result<Option<Vec<u8>>>;

    /// Writes objects derived from the cube's data rather than by a job (the overview pyramid,
    /// [`crate::pyramid`]): each put whole, or erased when `None`. Plain Zarr: object puts;
    /// Icechunk: into the session that the next commit makes visible (the build's publish, or
    /// [`CubeStore::publish_derived`]).
    async fn write_derived(&self, objects: Vec<(String, Option<Bytes>)>) -> Result<()> {
        let _ = objects;
        Err(StoreError::Unsupported { location: self.location().to_string(), what: "writing overviews".into() })
    }

    /// Makes what [`CubeStore::write_derived`] wrote to a finished cube visible: plain Zarr
    /// rewrites the consolidated metadata (which then lists it); an Icechunk branch opened for
    /// update gets one commit (`message`, eocube properties `props`). During a build nothing
    /// happens here: the build's [`CubeStore::publish`] does it.
    async fn publish_derived(&self, layout: &CubeLayout, message: &str, props: Value) -> Result<()> {
        let _ = (layout, message, props);
        Err(StoreError::Unsupported { location: self.location().to_string(), what: "publishing overviews".into() })
    }
}

/// An eocube cube: its layout, its store, and the encoder of its chunks.
pub struct Cube {
    store: Arc<dyn CubeStore>,
    layout: CubeLayout,
    /// The data variable as zarrs parsed it (bound to an empty in-memory store): it names a
    /// chunk's key; [`codec`] encodes the chunk's bytes, which the store then writes whole.
    encoder: Array<MemoryStore>,
    /// The `valid_count` variable likewise, when the cube has it.
    count_encoder: Option<Array<MemoryStore>>,
    /// The index variables likewise, in the order of [`DataValues::indices`].
    index_encoders: Vec<Array<MemoryStore>>,
}

impl Cube {
    /// Creates the cube at `loc` if nothing is there, or reopens it when it holds this very cube
    /// (resume; the flag is `true`). Anything else is refused without writing. Icechunk builds
    /// run on a build branch and publish with one branch update ([`icechunk`]).
    pub async fn create_or_open(
        loc: &OutLocation,
        layout: &CubeLayout,
        opts: &IcechunkOptions,
    ) -> Result<(Cube, bool)> {
        validate(&loc.as_path_buf(), layout)?;
        match loc {
            OutLocation::Icechunk(_) => icechunk::IcechunkStore::create_or_open(loc, layout, opts).await,
            _ => zarr::ZarrStore::create_or_open(loc, layout).await,
        }
    }

    /// Creates the cube at `out`; refuses an existing non-empty location.
    pub async fn create(out: impl AsRef<OsStr>, layout: &CubeLayout) -> Result<Cube> {
        let loc = OutLocation::parse(out)?;
        validate(&loc.as_path_buf(), layout)?;
        match &loc {
            OutLocation::Icechunk(_) => {
                icechunk::IcechunkStore::create_or_open(&loc, layout, &IcechunkOptions::default()).await.map(|(c, _)| c)
            }
            _ => zarr::ZarrStore::create(&loc, layout).await,
        }
    }

    /// Opens the cube at `out` (a local path or a URL) and reads its layout back from the group
    /// attributes. Only reads. In an Icechunk repository: `main`, or its unfinished build.
    pub async fn open(out: impl AsRef<OsStr>) -> Result<Cube> {
        Cube::open_branch(&OutLocation::parse(out)?, "main", true).await
    }

    /// [`Cube::open`] on `branch` of an Icechunk repository: with `unfinished`, its unfinished
    /// build if there is one, else the finished cube on the branch. Elsewhere the same as
    /// [`Cube::open`].
    pub async fn open_branch(loc: &OutLocation, branch: &str, unfinished: bool) -> Result<Cube> {
        let store: Arc<dyn CubeStore> = match loc {
            OutLocation::Icechunk(_) => Arc::new(icechunk::IcechunkStore::open_view(loc, branch, unfinished).await?),
            _ => Arc::new(zarr::ZarrStore::open(loc).await?),
        };
        Cube::from_store(store).await
    }

    /// Opens the cube at `loc` and checks that it has exactly `layout`.
    pub async fn open_matching(out: impl AsRef<OsStr>, layout: &CubeLayout) -> Result<Cube> {
        Cube::check_matching(Cube::open(out).await?, layout)
    }

    /// A cube whose layout is known (a worker's: from its run) on `store`, without reading it.
    pub fn with_store(store: Arc<dyn CubeStore>, layout: CubeLayout) -> Result<Cube> {
        let root = store.location().as_path_buf();
        let docs = meta::array_docs(&layout);
        let data_doc = docs
            .first()
            .ok_or_else(|| StoreError::InvalidLayout { path: root.clone(), reason: "no data variable".into() })?;
        let memory = Arc::new(MemoryStore::new());
        let encoder = Array::new_with_metadata(
            memory.clone(),
            &format!("/{}", layout.variable),
            parse_metadata(&root, data_doc)?,
        )
        .map_err(|e| zarr_err(&root, &layout.variable, e))?;
        let encoder_of = |name: &str| -> Result<Option<Array<MemoryStore>>> {
            let Some(doc) = docs.iter().find(|d| d.name == name) else { return Ok(None) };
            let array = Array::new_with_metadata(memory.clone(), &format!("/{name}"), parse_metadata(&root, doc)?)
                .map_err(|e| zarr_err(&root, name, e))?;
            Ok(Some(array))
        };
        let count_encoder = match layout.values.valid_count {
            true => encoder_of(VALID_COUNT_VARIABLE)?,
            false => None,
        };
        let mut index_encoders = Vec::with_capacity(layout.values.indices.len());
        for name in &layout.values.indices {
            index_encoders.push(encoder_of(name)?.ok_or_else(|| StoreError::InvalidLayout {
                path: root.clone(),
                reason: format!("no array for the index variable {name}"),
            })?);
        }
        Ok(Cube { store, layout, encoder, count_encoder, index_encoders })
    }

    /// Reads the layout back from the group attributes of the cube in `store`.
    pub async fn from_store(store: Arc<dyn CubeStore>) -> Result<Cube> {
        let path = store.location().as_path_buf();
        let not_cube = |reason: &str| StoreError::NotACube { path: path.clone(), reason: reason.into() };
        let (attrs, format) = if let Some(bytes) = store.read("zarr.json").await? {
            let doc: Value = serde_json::from_slice(&bytes).map_err(|_| not_cube("zarr.json is not JSON"))?;
            if doc.get("node_type").and_then(Value::as_str) != Some("group") {
                return Err(not_cube("zarr.json is not a Zarr group"));
            }
            (doc.get("attributes").cloned().unwrap_or(Value::Null), ZarrFormat::V3)
        } else if store.read(".zgroup").await?.is_some() {
            let bytes = store.read(".zattrs").await?.unwrap_or_else(|| Bytes::from_static(b"{}"));
            (serde_json::from_slice(&bytes).map_err(|_| not_cube(".zattrs is not JSON"))?, ZarrFormat::V2)
        } else {
            return Err(not_cube("no Zarr group metadata (zarr.json or .zgroup)"));
        };
        // Before the record is parsed: a newer layout may not parse as this one's at all.
        let version = attrs.pointer("/eocube_layout/layout_version").and_then(Value::as_u64).unwrap_or(1);
        if version > u64::from(LAYOUT_VERSION) {
            let writer = attrs.get("eocube_version").and_then(Value::as_str).unwrap_or("(unknown)").to_string();
            return Err(StoreError::NewerLayout {
                path,
                version: u32::try_from(version).unwrap_or(u32::MAX),
                writer,
                ours: env!("CARGO_PKG_VERSION"),
            });
        }
        let record: LayoutRecord = attrs
            .get("eocube_layout")
            .cloned()
            .ok_or_else(|| not_cube("the Zarr group has no `eocube_layout` attribute"))
            .and_then(|v| serde_json::from_value(v).map_err(|e| not_cube(&format!("bad `eocube_layout`: {e}"))))?;
        if record.zarr_format != format {
            return Err(not_cube("`eocube_layout` names another Zarr format than the metadata on disk"));
        }
        let crs = Crs::from_epsg(record.epsg).map_err(|e| not_cube(&e.to_string()))?;
        let spec = attrs.get("spec").cloned().unwrap_or(Value::Null);
        // The reducer is the spec's (a cube from before reducers has `median`).
        let reducer: Reducer = match spec.get("reducer").and_then(Value::as_str) {
            None => Reducer::Median,
            Some(r) => r.parse().map_err(|e: crate::reduce::ReduceError| not_cube(&format!("bad spec: {e}")))?,
        };
        let collection = spec.get("collection").and_then(Value::as_str).unwrap_or_default();
        let values = DataValues::of(&reducer, record.valid_count)
            .of_sensor(collection, &record.bands)
            .with_indices(record.indices);
        if values.quantiles != record.quantiles {
            return Err(not_cube("`eocube_layout` and the spec name different quantiles"));
        }
        let layout = CubeLayout {
            geobox: GeoBox::new(crs, record.affine, record.shape),
            chunk_size: record.chunk_size,
            times: record.times,
            bands: record.bands,
            variable: record.variable,
            zarr_format: record.zarr_format,
            attrs: spec,
            values,
        };
        Cube::with_store(store, layout)
    }

    /// `cube` if it has exactly `layout`, else [`StoreError::LayoutMismatch`].
    pub(crate) fn check_matching(cube: Cube, layout: &CubeLayout) -> Result<Cube> {
        let path = cube.path();
        let (a, b) = (LayoutRecord::of(&cube.layout), LayoutRecord::of(layout));
        let mismatch = |field: &'static str, found: String, requested: String| {
            Err(StoreError::LayoutMismatch { path: path.clone(), field, found, requested })
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
        if cube.layout.values != layout.values {
            return mismatch("reducer", cube.layout.values.to_string(), layout.values.to_string());
        }
        if cube.layout.attrs != layout.attrs {
            return mismatch("spec", cube.layout.attrs.to_string(), layout.attrs.to_string());
        }
        Ok(cube)
    }

    pub fn layout(&self) -> &CubeLayout {
        &self.layout
    }

    /// The store the cube lives in.
    pub fn store(&self) -> &Arc<dyn CubeStore> {
        &self.store
    }

    /// The local directory, or the URL (`s3://bucket/prefix`) as an opaque path.
    pub fn path(&self) -> PathBuf {
        self.store.location().as_path_buf()
    }

    /// Where the cube lives.
    pub fn location(&self) -> &OutLocation {
        self.store.location()
    }

    /// The expected shape `(rows, cols)` of chunk `(iy, ix)`: clipped at the grid edge.
    pub fn chunk_shape(&self, iy: usize, ix: usize) -> Option<(usize, usize)> {
        let cs = self.layout.chunk_size;
        let Shape { ny, nx } = self.layout.geobox.shape;
        (iy * cs < ny && ix * cs < nx).then(|| (cs.min(ny - iy * cs), cs.min(nx - ix * cs)))
    }

    /// The store key of a data chunk (relative to the cube's root).
    pub fn chunk_key(&self, t: usize, iy: usize, ix: usize) -> String {
        self.encoder.chunk_key(&self.data_indices(t, iy, ix)).as_str().to_string()
    }

    /// The store key of a `valid_count` chunk, when the cube has that variable.
    pub fn count_chunk_key(&self, t: usize, iy: usize, ix: usize) -> Option<String> {
        self.count_encoder.as_ref().map(|e| e.chunk_key(&[t as u64, iy as u64, ix as u64]).as_str().to_string())
    }

    /// The store keys of the index variables' chunks of `(t, iy, ix)`, in their order.
    pub fn index_chunk_keys(&self, t: usize, iy: usize, ix: usize) -> Vec<String> {
        let idx = self.index_indices(t, iy, ix);
        self.index_encoders.iter().map(|e| e.chunk_key(&idx).as_str().to_string()).collect()
    }

    /// Chunk indices of an index variable: (time, y, x), then the quantiles in one chunk.
    fn index_indices(&self, t: usize, iy: usize, ix: usize) -> Vec<u64> {
        let mut idx = vec![t as u64, iy as u64, ix as u64];
        if !self.layout.values.quantiles.is_empty() {
            idx.push(0);
        }
        idx
    }

    /// Chunk indices of the data variable: one chunk spans the bands (and the quantiles).
    fn data_indices(&self, t: usize, iy: usize, ix: usize) -> Vec<u64> {
        let mut idx = vec![t as u64, iy as u64, ix as u64, 0];
        if !self.layout.values.quantiles.is_empty() {
            idx.push(0);
        }
        idx
    }

    /// Encodes chunk `(t, iy, ix)` (CPU work, no I/O): `data` in (row, col, band) order with
    /// `shape = (rows, cols)` equal to [`Cube::chunk_shape`] (clipped at the grid edge; it is
    /// stored at offset `index * chunk_size` as a full Zarr chunk padded with the fill value).
    /// Returns its key and bytes; `None` when the chunk is all fill (it is then not stored: it
    /// reads as fill either way). The bytes depend only on the input.
    pub fn encode_chunk(&self, job: Job, data: &[u16], shape: (usize, usize)) -> Result<(String, Option<Bytes>)> {
        let Job { t, iy, ix } = job;
        let per_pixel = self.layout.bands.len() * self.layout.values.per_band();
        let indices = self.data_indices(t, iy, ix);
        self.encode_with(&self.encoder, job, &indices, data, shape, per_pixel)
    }

    /// Encodes the `valid_count` chunk of `job` (one value per pixel, row-major), as
    /// [`Cube::encode_chunk`] does the data; an error if the cube has no `valid_count`.
    pub fn encode_count_chunk(&self, job: Job, data: &[u16], shape: (usize, usize)) -> Result<(String, Option<Bytes>)> {
        let Job { t, iy, ix } = job;
        let encoder = self.count_encoder.as_ref().ok_or_else(|| StoreError::BadChunk {
            path: self.path(),
            t,
            iy,
            ix,
            reason: "this cube has no valid_count variable".into(),
        })?;
        self.encode_with(encoder, job, &[t as u64, iy as u64, ix as u64], data, shape, 1)
    }

    /// Encodes the chunk of index variable `i` of `job` (values per pixel as the data variable
    /// has per band, row-major), as [`Cube::encode_chunk`] does the data.
    pub fn encode_index_chunk(
        &self,
        job: Job,
        i: usize,
        data: &[u16],
        shape: (usize, usize),
    ) -> Result<(String, Option<Bytes>)> {
        let Job { t, iy, ix } = job;
        let encoder = self.index_encoders.get(i).ok_or_else(|| StoreError::BadChunk {
            path: self.path(),
            t,
            iy,
            ix,
            reason: format!("this cube has {} index variables, not {}", self.index_encoders.len(), i + 1),
        })?;
        let indices = self.index_indices(t, iy, ix);
        self.encode_with(encoder, job, &indices, data, shape, self.layout.values.per_band())
    }

    fn encode_with(
        &self,
        encoder: &Array<MemoryStore>,
        job: Job,
        indices: &[u64],
        data: &[u16],
        shape: (usize, usize),
        nb: usize,
    ) -> Result<(String, Option<Bytes>)> {
        let Job { t, iy, ix } = job;
        let bad = |reason: String| StoreError::BadChunk { path: self.path(), t, iy, ix, reason };
        if t >= self.layout.times.len() {
            return Err(bad(format!("time index out of range (the cube has {} time bins)", self.layout.times.len())));
        }
        let (rows, cols) =
            self.chunk_shape(iy, ix).ok_or_else(|| bad("chunk index outside the chunk grid".to_string()))?;
        if shape != (rows, cols) {
            return Err(bad(format!("shape {shape:?} given, this chunk is {rows} x {cols} pixels")));
        }
        if data.len() != rows * cols * nb {
            return Err(bad(format!("{} values given, expected {rows} x {cols} x {nb} values per pixel", data.len())));
        }
        // All fill (a job that found no scene): nothing is stored, as the codec pipeline would
        // decide after a copy and a scan of the whole chunk; no-scene jobs are most of a
        // continent-sized build, so this is their hot path.
        if data.iter().all(|&v| v == 0) {
            return Ok((encoder.chunk_key(indices).as_str().to_string(), None));
        }
        let cs = self.layout.chunk_size;
        // A chunk clipped at the grid edge is stored padded to the full chunk; a full one as it is.
        let full: std::borrow::Cow<'_, [u16]> = if (rows, cols) == (cs, cs) {
            data.into()
        } else {
            let mut full = vec![0u16; cs * cs * nb];
            for r in 0..rows {
                full[r * cs * nb..(r * cs + cols) * nb].copy_from_slice(&data[r * cols * nb..(r + 1) * cols * nb]);
            }
            full.into()
        };
        let key = encoder.chunk_key(indices);
        let encoded = codec::encode_u16(&full).map_err(|e| bad(format!("encoding failed: {e}")))?;
        Ok((key.as_str().to_string(), Some(Bytes::from(encoded))))
    }

    /// Encodes and writes chunk `job` (see [`Cube::encode_chunk`]); the receipt goes to
    /// [`Cube::record`].
    pub async fn write_chunk(&self, job: Job, data: &[u16], shape: (usize, usize)) -> Result<Receipt> {
        let chunk = self.encode_chunk(job, data, shape)?;
        self.store.write_chunks(job, vec![chunk]).await
    }

    /// Records finished jobs (see [`CubeStore::record`]).
    pub async fn record(&self, batch: Vec<Finished>) -> Result<()> {
        self.store.record(batch).await
    }

    /// Makes the recorded jobs durable (see [`CubeStore::checkpoint`]).
    pub async fn checkpoint(&self) -> Result<()> {
        self.store.checkpoint().await
    }

    /// Every job is done: the cube becomes complete (see [`CubeStore::publish`]).
    pub async fn finish(&self) -> Result<()> {
        self.store.publish(&self.layout).await
    }

    /// Whether [`Cube::finish`] has run.
    pub async fn is_consolidated(&self) -> Result<bool> {
        self.store.is_published().await
    }

    /// The jobs recorded as done: resuming skips them.
    pub async fn done_jobs(&self) -> Result<BTreeSet<Job>> {
        self.store.done_jobs().await
    }

    /// The ledger record of a done job.
    pub async fn ledger_record(&self, job: Job) -> Result<Option<Value>> {
        self.store.ledger_record(job).await
    }

    /// Every record of the run report, oldest first.
    pub async fn report(&self) -> Result<Vec<Value>> {
        self.store.report().await
    }

    /// Grows the time axis to `layout.times` (the old times must be its beginning; everything
    /// else but the spec attributes must be equal) and forgets the done jobs `redo` names. Data
    /// chunks stay where they are; the cube is incomplete until [`Cube::finish`] runs again.
    pub async fn begin_extend(&self, layout: &CubeLayout, redo: &(dyn Fn(Job) -> bool + Sync)) -> Result<()> {
        self.check_extends(layout)?;
        let objects = template_objects(&self.path(), layout)?;
        self.store.begin_extend(layout, objects, redo).await
    }

    /// That `layout` is this cube with more time bins at the end (and another spec): the
    /// precondition of [`Cube::begin_extend`]. Only reads.
    pub(crate) fn check_extends(&self, layout: &CubeLayout) -> Result<()> {
        let path = self.path();
        let (a, b) = (LayoutRecord::of(&self.layout), LayoutRecord::of(layout));
        let mismatch = |field: &'static str, found: String, requested: String| {
            Err(StoreError::LayoutMismatch { path: path.clone(), field, found, requested })
        };
        if (a.epsg, a.affine, a.shape, a.chunk_size) != (b.epsg, b.affine, b.shape, b.chunk_size)
            || a.bands != b.bands
            || a.variable != b.variable
            || a.indices != b.indices
            || a.zarr_format != b.zarr_format
        {
            return mismatch("grid, bands, variables or format", format!("{a:?}"), format!("{b:?}"));
        }
        if b.times.len() < a.times.len() || b.times[..a.times.len()] != a.times[..] {
            return mismatch("time bins", format!("{:?}", a.times), format!("{:?}", b.times));
        }
        validate(&path, layout)
    }
}

/// A remote error's text on one line (whitespace runs collapsed), cut after `max` bytes.
pub(crate) fn one_line(s: &str, max: usize) -> String {
    let mut s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > max {
        let cut = (0..=max).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn zarr_err(path: &Path, node: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Zarr { path: path.to_path_buf(), node: node.into(), reason: e.to_string() }
}

/// JSON for a record eocube writes; a failure is a typed error, never an empty file.
pub(crate) fn to_json_bytes(location: &OutLocation, what: &str, v: &impl Serialize) -> Result<Bytes> {
    serde_json::to_vec_pretty(v).map(Bytes::from).map_err(|e| StoreError::Record {
        location: location.to_string(),
        what: what.to_string(),
        reason: e.to_string(),
    })
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
    let reserved = [
        "time",
        "band",
        "spatial_ref",
        "latitude",
        "longitude",
        "x",
        "y",
        "quantile",
        VALID_COUNT_VARIABLE,
        BOOKKEEPING_DIR,
    ];
    if layout.variable.is_empty() || layout.variable.contains('/') || reserved.contains(&layout.variable.as_str()) {
        return bad("the variable name must be non-empty, without '/', and not a coordinate name");
    }
    let mut seen = vec![layout.variable.as_str()];
    for name in &layout.values.indices {
        if name.is_empty() || name.contains('/') || reserved.contains(&name.as_str()) || seen.contains(&name.as_str()) {
            return bad("an index variable's name must be non-empty, without '/', unique and not a coordinate name");
        }
        seen.push(name);
    }
    if layout.geobox.shape.ny == 0 || layout.geobox.shape.nx == 0 {
        return bad("empty grid");
    }
    Ok(())
}

/// `_eocube/plan.json`: written first by plain-Zarr templates, so a half-written template is
/// still recognisable.
fn plan_document(layout: &CubeLayout) -> Value {
    json!({"layout": LayoutRecord::of(layout), "spec": layout.attrs})
}

/// Everything of a cube but its data chunks, as `(key, bytes)` in write order: the group
/// metadata, every array's metadata and the coordinate values (encoded by zarrs). Data chunks
/// keep their keys across rewrites: their chunk shape never changes.
pub(crate) fn template_objects(path: &Path, layout: &CubeLayout) -> Result<Vec<(String, Bytes)>> {
    let pretty = |v: &Value| -> Result<Bytes> {
        serde_json::to_vec_pretty(v).map(Bytes::from).map_err(|e| zarr_err(path, "template", e))
    };
    let record = LayoutRecord::of(layout);
    let attrs = group_attrs(layout, &record);
    let mut out = Vec::new();
    match layout.zarr_format {
        ZarrFormat::V3 => out.push((
            "zarr.json".to_string(),
            pretty(&json!({"zarr_format": 3, "node_type": "group", "attributes": attrs}))?,
        )),
        ZarrFormat::V2 => {
            out.push((".zgroup".to_string(), pretty(&json!({"zarr_format": 2}))?));
            out.push((".zattrs".to_string(), pretty(&attrs)?));
        }
    }
    let staging = Arc::new(MemoryStore::new());
    for doc in meta::array_docs(layout) {
        // zarrs parses and validates each document, then the document itself is written: zarrs
        // 0.23 serializes a codec without configuration in the short form (`"vlen-utf8"`),
        // which zarr-python 3.1 rejects, so its own metadata writer is not used.
        let array = Array::new_with_metadata(staging.clone(), &format!("/{}", doc.name), parse_metadata(path, &doc)?)
            .map_err(|e| zarr_err(path, &doc.name, e))?;
        match layout.zarr_format {
            ZarrFormat::V3 => out.push((format!("{}/zarr.json", doc.name), pretty(&doc.metadata)?)),
            ZarrFormat::V2 => {
                out.push((format!("{}/.zarray", doc.name), pretty(&doc.metadata)?));
                out.push((format!("{}/.zattrs", doc.name), pretty(&doc.attrs)?));
            }
        }
        write_coordinate(&array, &doc.name, layout).map_err(|e| zarr_err(path, &doc.name, e))?;
    }
    let keys = zarrs::storage::ListableStorageTraits::list(&*staging).map_err(|e| zarr_err(path, "/", e))?;
    for key in keys {
        let bytes = zarrs::storage::ReadableStorageTraits::get(&*staging, &key)
            .map_err(|e| zarr_err(path, key.as_str(), e))?
            .ok_or_else(|| zarr_err(path, key.as_str(), "staged coordinate chunk vanished"))?;
        out.push((key.as_str().to_string(), Bytes::from(bytes.to_vec())));
    }
    Ok(out)
}

/// The consolidated metadata of the cube, built from the metadata documents in the store (so it
/// says exactly what they say): v3, the root `zarr.json` with `consolidated_metadata` (as
/// zarr-python 3 writes it); v2, `.zmetadata`. Returns the key and the document.
async fn consolidated(store: &dyn CubeStore, layout: &CubeLayout) -> Result<(&'static str, Bytes)> {
    let path = store.location().as_path_buf();
    let names: Vec<String> = meta::array_docs(layout).into_iter().map(|d| d.name).collect();
    let read = async |key: String| -> Result<Value> {
        let bytes = store
            .read(&key)
            .await?
            .ok_or_else(|| StoreError::NotACube { path: path.clone(), reason: format!("{key} is missing") })?;
        serde_json::from_slice(&bytes).map_err(|e| zarr_err(&path, &key, e))
    };
    let pretty =
        |v: &Value| serde_json::to_vec_pretty(v).map(Bytes::from).map_err(|e| zarr_err(&path, "consolidated", e));
    match layout.zarr_format {
        ZarrFormat::V3 => {
            let mut group = read("zarr.json".into()).await?;
            let mut members = Map::new();
            for name in names {
                members.insert(name.clone(), read(format!("{name}/zarr.json")).await?);
            }
            // The overview pyramid lists its own nodes (it is written last): they join the
            // root's listing under its path, and it is listed as zarr-python lists a child group.
            let pyramid = crate::pyramid::GROUP;
            if let Some(bytes) = store.read(&format!("{pyramid}/zarr.json")).await? {
                let mut doc: Value = serde_json::from_slice(&bytes).map_err(|e| zarr_err(&path, pyramid, e))?;
                let listed = doc.pointer("/consolidated_metadata/metadata").and_then(Value::as_object).cloned();
                for (k, v) in listed.unwrap_or_default() {
                    members.insert(format!("{pyramid}/{k}"), v);
                }
                doc["consolidated_metadata"] = json!({"kind": "inline", "must_understand": false, "metadata": {}});
                members.insert(pyramid.to_string(), doc);
            }
            if let Value::Object(g) = &mut group {
                g.insert(
                    "consolidated_metadata".into(),
                    json!({"kind": "inline", "must_understand": false, "metadata": members}),
                );
            }
            Ok(("zarr.json", pretty(&group)?))
        }
        ZarrFormat::V2 => {
            let mut m = Map::new();
            m.insert(".zgroup".into(), read(".zgroup".into()).await?);
            m.insert(".zattrs".into(), read(".zattrs".into()).await?);
            for name in names {
                m.insert(format!("{name}/.zarray"), read(format!("{name}/.zarray")).await?);
                m.insert(format!("{name}/.zattrs"), read(format!("{name}/.zattrs")).await?);
            }
            // The overview pyramid's own listing (written last), under its path.
            let pyramid = crate::pyramid::GROUP;
            if let Some(bytes) = store.read(&format!("{pyramid}/.zmetadata")).await? {
                let doc: Value = serde_json::from_slice(&bytes).map_err(|e| zarr_err(&path, pyramid, e))?;
                let listed = doc.get("metadata").and_then(Value::as_object).cloned();
                for (k, v) in listed.unwrap_or_default() {
                    m.insert(format!("{pyramid}/{k}"), v);
                }
            }
            Ok((".zmetadata", pretty(&json!({"metadata": m, "zarr_consolidated_format": 1}))?))
        }
    }
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
pub(crate) fn now_rfc3339() -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Parse one of our metadata documents with zarrs (which validates it).
fn parse_metadata(path: &Path, doc: &meta::ArrayDoc) -> Result<ArrayMetadata> {
    let err = |e: serde_json::Error| zarr_err(path, &doc.name, e);
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
    } else if name == "quantile" {
        array.store_chunk(&[0], layout.values.quantiles.clone())
    } else if name == "spatial_ref" {
        // Its value is meaningless (the attributes carry the CRS); rioxarray writes 0.
        array.store_chunk(&[], vec![0i32])
    } else {
        Ok(())
    }
}
