//! The job: one (time bin, chunk) taken from the catalog search to the written chunk (DESIGN
//! section 1). [`run`] is the one entry point every executor calls (local today; Lambda and
//! array jobs later through `eocube worker`).
//!
//! ```text
//! search (chunk footprint + halo, bin's UTC interval) ─▶ per scene, at most `scene_concurrency`
//! at once: open each band's COG (the cube's bands, those its indices need, and the sensor's
//! quality band), pick the overview, fetch the window (bounded by `io`) ─▶ on the CPU pool:
//! decode (Landsat's QA_PIXEL into quality codes), warp onto the chunk grid grown by the mask
//! halo (quality always nearest) ─▶ scenes arrive in (solar day, datetime, id) order: each
//! finished solar day is fused, masked, cropped to the chunk, its indices computed, and kept as
//! one packed observation ─▶ the reducer per band and per index, strip by strip ─▶ write the chunk
//! ```
//!
//! Owns: the order of those steps, which overview and window each band reads, what a job
//! counts (scenes, requests, bytes, timings) and which failures are worth a retry. Must not
//! touch: the ledger, retries, timeouts and progress (the executor's), nor the numeric rules
//! themselves (`fuse`, `mask`, `reduce`, `warp`).
//!
//! Memory: a scene is held only as windows on the chunk grid (never whole), and only until its
//! solar day is fused; a job holds one masked observation per solar day of its bin, packed to
//! its valid pixels ([`Stack`]).

use crate::cloud::retries::in_this_job;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::Semaphore;

use crate::catalog::{Catalog, CatalogError, Scene, SearchRequest};
use crate::cog::{Cog, CogError, FetchedWindow, Fetcher, RasterData, RequestStats};
use crate::fuse::{self, Day, FuseError, Radiometry, SampledScene, WarpedScene};
use crate::grid::{Crs, GeoBox, GridError, PixelWindow, Shape, Transformer};
use crate::mask::{self, MaskError};
use crate::plan::{Job, Plan};
pub use crate::reduce::Reduced;
use crate::reduce::{ReduceError, Stack};
use crate::sensor::landsat::QaDecoder;
use crate::store::{Cube, Receipt, StoreError};
use crate::time::solar_day;
use crate::warp::{
    self, PixelMap, Resampling, SamplePlan, Sampling, SourceImage, WarpError, choose_overview,
    source_pixels_per_target_pixel, source_window,
};

/// The band every job of `spec` reads for the mask: its collection's sensor's quality band
/// (`scl`, `qa_pixel`).
pub fn quality_band(spec: &crate::spec::CubeSpec) -> &'static str {
    crate::sensor::profile_for(&spec.collection).quality.band.name
}
/// Points per side of the chunk footprint sent to the catalog (UTM → lon/lat edges curve).
const FOOTPRINT_POINTS_PER_SIDE: usize = 8;
/// Scenes of one job read at once: enough to keep I/O and decoding overlapped, few enough that
/// the windows in memory stay a handful of scenes.
pub const DEFAULT_SCENE_CONCURRENCY: usize = 6;
/// Compressed bytes a job holds in fetched, not yet decoded windows before it stops starting new
/// scenes ahead, per scene it decodes at once. Real Sentinel-2 tiles compress only about 1.4:1,
/// so a scene's windows at 20 m are 15-20 MB: six scenes ahead would hold 100 MB of them.
const FETCHED_BYTES_PER_DECODER: u64 = 16 << 20;
/// Windows being fetched at once over all jobs of a process (each window issues up to
/// `FetchConfig::max_concurrent_requests` range requests).
pub const DEFAULT_WINDOWS_IN_FLIGHT: usize = 16;

/// What every job of a build shares. Cheap to clone.
#[derive(Clone)]
pub struct JobContext {
    pub plan: Arc<Plan>,
    pub catalog: Catalog,
    pub fetcher: Fetcher,
    /// Bounds the COG windows being fetched at once across all jobs.
    pub io: Arc<Semaphore>,
    pub scene_concurrency: usize,
    /// Turn a scene's permanent failure (404, corrupt TIFF, missing band) into a warning.
    pub skip_bad_scenes: bool,
    /// One catalog search per chunk for the bins this process runs ([`JobContext::share_searches`]).
    pub searches: Option<Arc<SharedSearches>>,
}

impl JobContext {
    pub fn new(plan: Arc<Plan>, catalog: Catalog, fetcher: Fetcher, skip_bad_scenes: bool) -> JobContext {
        JobContext {
            plan,
            catalog,
            fetcher,
            io: Arc::new(Semaphore::new(DEFAULT_WINDOWS_IN_FLIGHT)),
            scene_concurrency: DEFAULT_SCENE_CONCURRENCY,
            skip_bad_scenes,
            searches: None,
        }
    }

    /// This process will run `jobs` (in any order, several at once): the bins of one chunk
    /// then share one catalog search over their joint interval, made by the first of them to
    /// need it, so a chunk of twelve months costs one search rather than twelve.
    pub fn share_searches(mut self, jobs: &[Job]) -> JobContext {
        self.searches = Some(Arc::new(SharedSearches::new(jobs)));
        self
    }
}

/// A bin's part of its chunk's search, given back however the job ends (a timeout drops it).
struct Taken<'a> {
    searches: &'a SharedSearches,
    job: Job,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.searches.done(self.job);
    }
}

/// The searches that the bins of one chunk share: a chunk's entry lives from the first of its
/// bins to need it until the last has taken its scenes, so at most a chunk per job in work is
/// held. A bin takes its part once; run again (a retry), it searches by itself.
#[derive(Default)]
pub struct SharedSearches {
    inner: std::sync::Mutex<Shares>,
}

type SharedScenes = Arc<tokio::sync::OnceCell<Arc<Vec<Scene>>>>;

#[derive(Default)]
struct Shares {
    /// Per chunk, the bins that have not taken their part yet.
    waiting: HashMap<(usize, usize), Vec<usize>>,
    /// Per chunk, the joint search once a bin asked for it.
    live: HashMap<(usize, usize), (Vec<Job>, SharedScenes)>,
}

impl SharedSearches {
    /// Only chunks with two bins or more share.
    fn new(jobs: &[Job]) -> SharedSearches {
        let mut waiting: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
        for j in jobs {
            let bins = waiting.entry((j.iy, j.ix)).or_default();
            if !bins.contains(&j.t) {
                bins.push(j.t);
            }
        }
        waiting.retain(|_, bins| bins.len() > 1);
        SharedSearches { inner: std::sync::Mutex::new(Shares { waiting, live: HashMap::new() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shares> {
        lock(&self.inner)
    }

    /// The shared search for `job`, with the bins it covers; `None`: search alone.
    fn take(&self, job: Job) -> Option<(Vec<Job>, SharedScenes)> {
        let key = (job.iy, job.ix);
        let mut s = self.lock();
        let bins = s.waiting.get(&key)?;
        if !bins.contains(&job.t) {
            return None;
        }
        let jobs: Vec<Job> = bins.iter().map(|&t| Job { t, ..job }).collect();
        Some(s.live.entry(key).or_insert_with(|| (jobs, Default::default())).clone())
    }

    /// `job` has its scenes (or gave up): its chunk's search is dropped after the last bin.
    fn done(&self, job: Job) {
        let key = (job.iy, job.ix);
        let mut s = self.lock();
        let Some(bins) = s.waiting.get_mut(&key) else { return };
        bins.retain(|&t| t != job.t);
        if bins.is_empty() {
            s.waiting.remove(&key);
            s.live.remove(&key);
        }
    }

    /// Chunks whose search is held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().live.len()
    }
}

/// What a job did: the run report's per-job record (DESIGN section 9).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct JobStats {
    /// Scenes the catalog returned for the bin's days.
    pub scenes_found: usize,
    /// Scenes whose windows covered the chunk and were read and fused (one may still fill no
    /// pixel, where earlier scenes of its day filled all it covers).
    pub scenes: usize,
    /// Scenes not fused because earlier scenes of their solar day had filled every pixel of
    /// the chunk (and its mask halo): they could not change it, so they are not read.
    pub scenes_covered: usize,
    /// Observations (solar days) the median saw.
    pub solar_days: usize,
    /// Range requests and bytes received, headers included, of the scenes read (a covered
    /// scene whose read was under way when it was dropped is not counted).
    pub requests: u64,
    pub bytes: u64,
    /// Catalog searches made for this job: 1, or 0 when it used the one search of its chunk's
    /// bins (the job that made that search counts it, and its time).
    pub searches: usize,
    pub search_seconds: f64,
    /// Fetch, decode and warp of every scene (overlapped, so wall time).
    pub read_seconds: f64,
    pub reduce_seconds: f64,
    pub write_seconds: f64,
    /// Scenes left out under `--skip-bad-scenes`, and other things a user should know.
    pub warnings: Vec<String>,
}

/// Why a job failed. Every message names the job's input that failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Cog(#[from] CogError),
    #[error("scene {id}: {reason}; fix the catalog or rerun with `skip-bad-scenes` to leave such scenes out")]
    BadScene { id: String, reason: String },
    #[error("job (t={}, iy={}, ix={}) is not in the plan: {reason}", job.t, job.iy, job.ix)]
    NotInPlan { job: Job, reason: String },
    #[error(transparent)]
    Grid(#[from] GridError),
    #[error(transparent)]
    Warp(#[from] WarpError),
    #[error(transparent)]
    Fuse(#[from] FuseError),
    #[error(transparent)]
    Mask(#[from] MaskError),
    #[error(transparent)]
    Reduce(#[from] ReduceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}; this is a bug in eocube, please report it with the command that caused it")]
    Internal(String),
}

impl JobError {
    /// Failures a later attempt may not see (network, throttling, server errors).
    pub fn is_transient(&self) -> bool {
        match self {
            JobError::Catalog(e) => e.is_transient(),
            JobError::Cog(e) => e.is_transient(),
            JobError::Store(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// Runs `job` to the end: computes the chunk and writes it into `cube` (a chunk with no valid
/// observation is erased, so it reads as fill: rerunning a job always leaves the same bytes).
/// Encoding runs on the CPU pool, the write on the async runtime. Does not touch the ledger: the
/// receipt goes to [`Cube::record`] with the job's record.
pub async fn run(ctx: &JobContext, cube: &Arc<Cube>, job: Job) -> Result<(JobStats, Receipt), JobError> {
    run_with(ctx, cube, job, None).await
}

/// [`run`] with the scenes of a search already made for several bins of this job's chunk
/// ([`search_bins`]); the job keeps those of its own bin.
pub async fn run_with(
    ctx: &JobContext,
    cube: &Arc<Cube>,
    job: Job,
    found: Option<&[Scene]>,
) -> Result<(JobStats, Receipt), JobError> {
    let (data, shape, mut stats) = observe_and_reduce(ctx, job, found).await?;
    let t0 = Instant::now();
    let chunks = match data {
        Some(Reduced { data, count, indices }) => {
            let encoder = Arc::clone(cube);
            cpu(move || -> Result<Vec<(String, Option<bytes::Bytes>)>, StoreError> {
                let mut chunks = vec![encoder.encode_chunk(job, &data, shape)?];
                if let Some(count) = count {
                    chunks.push(encoder.encode_count_chunk(job, &count, shape)?);
                }
                for (i, values) in indices.iter().enumerate() {
                    chunks.push(encoder.encode_index_chunk(job, i, values, shape)?);
                }
                Ok(chunks)
            })
            .await??
        }
        // Nothing observed: no chunk is stored (Zarr reads fill), and any earlier one goes.
        None => {
            let mut keys = vec![(cube.chunk_key(job.t, job.iy, job.ix), None)];
            keys.extend(cube.count_chunk_key(job.t, job.iy, job.ix).map(|k| (k, None)));
            keys.extend(cube.index_chunk_keys(job.t, job.iy, job.ix).into_iter().map(|k| (k, None)));
            keys
        }
    };
    let receipt = cube.store().write_chunks(job, chunks).await?;
    stats.write_seconds = t0.elapsed().as_secs_f64();
    Ok((stats, receipt))
}

/// The chunk of `job`: values in (row, col, band) order (then quantile, for a `quantiles`
/// reducer), its shape `(rows, cols)` (clipped at the grid edge) and what it took.
pub async fn compute(ctx: &JobContext, job: Job) -> Result<(Vec<u16>, (usize, usize), JobStats), JobError> {
    compute_with(ctx, job, None).await
}

/// One catalog search for jobs that are bins of one chunk (a task of `--jobs-per-task` holding
/// them): the chunk's footprint over the joint interval of their windows, so each job finds in
/// it exactly what its own search would (it keeps the scenes of its window). `None` when the
/// jobs are not of one chunk, or fewer than two.
pub async fn search_bins(ctx: &JobContext, jobs: &[Job]) -> Result<Option<Vec<Scene>>, JobError> {
    let Some(first) = jobs.first() else { return Ok(None) };
    if jobs.len() < 2 || jobs.iter().any(|j| (j.iy, j.ix) != (first.iy, first.ix)) {
        return Ok(None);
    }
    let mut joint: Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> = None;
    let mut req = None;
    for &job in jobs {
        let Some(r) = chunk_search(ctx, job)? else { continue };
        let (start, end) = r.datetime;
        joint = Some(match joint {
            None => (start, end),
            Some((a, b)) => (a.min(start), b.max(end)),
        });
        req = Some(r);
    }
    let (Some(mut req), Some(interval)) = (req, joint) else { return Ok(Some(Vec::new())) };
    req.datetime = interval;
    Ok(Some(ctx.catalog.search(&req, &search_bands(ctx)).await?))
}

/// The bands every search asks for: those the job reads (the cube's and its indices') and SCL.
fn search_bands(ctx: &JobContext) -> Vec<String> {
    let mut bands: Vec<String> = ctx.plan.spec.read_bands();
    bands.push(quality_band(&ctx.plan.spec).to_string());
    bands
}

/// The catalog request of `job`: its chunk's footprint grown by the mask halo (scenes touching
/// only the halo still shape the mask inside the chunk), over its bin's UTC interval. `None`
/// when the bin's window is empty.
fn chunk_search(ctx: &JobContext, job: Job) -> Result<Option<SearchRequest>, JobError> {
    let plan = &ctx.plan;
    let spec = &plan.spec;
    let not_in_plan = |reason: String| JobError::NotInPlan { job, reason };
    let bin = plan.bins.get(job.t).ok_or_else(|| not_in_plan(format!("the plan has {} time bins", plan.bins.len())))?;
    let chunk = plan.chunks.chunk(job.iy, job.ix).map_err(|e| not_in_plan(e.to_string()))?;
    let work = WorkGrid::new(&plan.geobox, chunk.row_offset, chunk.col_offset, chunk.geobox.shape, spec.mask.halo())?;
    let wgs84 = Crs::wgs84();
    let lon_center = chunk_center_lon(&chunk.geobox, &wgs84)?;
    let Some(window) = bin.search_window(spec.start, spec.end) else { return Ok(None) };
    let (start, end_exclusive) = window.utc_interval(lon_center);
    let end = end_exclusive - chrono::TimeDelta::milliseconds(1);
    let mut req = SearchRequest::new(&[spec.collection.as_str()], start, end);
    req.intersects = Some(work.geobox.footprint(&wgs84, FOOTPRINT_POINTS_PER_SIDE)?.to_geojson());
    req.max_cloud_cover = spec.cloud_cover_max;
    Ok(Some(req))
}

/// [`compute`] with the scenes of a search made for several bins ([`search_bins`]).
pub async fn compute_with(
    ctx: &JobContext,
    job: Job,
    found: Option<&[Scene]>,
) -> Result<(Vec<u16>, (usize, usize), JobStats), JobError> {
    let (data, (rows, cols), stats) = observe_and_reduce(ctx, job, found).await?;
    let spec = &ctx.plan.spec;
    let data = match data {
        Some(r) => r.data,
        None => vec![0; rows * cols * spec.bands.len() * spec.reducer.values_per_band()],
    };
    Ok((data, (rows, cols), stats))
}

/// [`compute_with`] with `None` for a chunk of fill (no observation), so that the jobs that
/// find nothing (most of a continent-sized build) cost neither a chunk of zeros nor a pass
/// over one.
async fn observe_and_reduce(
    ctx: &JobContext,
    job: Job,
    found: Option<&[Scene]>,
) -> Result<(Option<Reduced>, (usize, usize), JobStats), JobError> {
    let plan = &ctx.plan;
    let spec = &plan.spec;
    let not_in_plan = |reason: String| JobError::NotInPlan { job, reason };
    let bin = plan.bins.get(job.t).ok_or_else(|| not_in_plan(format!("the plan has {} time bins", plan.bins.len())))?;
    let chunk = plan.chunks.chunk(job.iy, job.ix).map_err(|e| not_in_plan(e.to_string()))?;
    let (rows, cols) = (chunk.geobox.shape.ny, chunk.geobox.shape.nx);
    let nb = spec.bands.len();
    // Bands only the indices need are read and fused too, and dropped once the indices are made.
    let read = spec.read_bands().len();
    let profile = crate::sensor::profile_for(&spec.collection);
    let indices = Arc::new(Indices {
        exprs: crate::index::compile(&spec.index, &spec.read_band_names())
            .map_err(|e| JobError::Internal(format!("an index the spec accepted does not compile: {e}")))?,
        bands: nb,
        reflectance: profile.harmonization.scale(),
    });
    let mut stats = JobStats::default();
    let mask = spec.mask.resolve(profile)?;
    let rules = SceneRules {
        qa: mask.qa_decoder(),
        // Quantities (aerosol optical thickness, ...) are stored as delivered: no BOA offset.
        boa_offset: matches!(profile.cube_quantity(&spec.bands), Ok(crate::sensor::CubeQuantity::Reflectance)),
    };

    let work = WorkGrid::new(&plan.geobox, chunk.row_offset, chunk.col_offset, chunk.geobox.shape, spec.mask.halo())?;
    let wgs84 = Crs::wgs84();
    let lon_center = chunk_center_lon(&chunk.geobox, &wgs84)?;
    let Some(window) = bin.search_window(spec.start, spec.end) else {
        return Ok((None, (rows, cols), stats));
    };

    let t0 = Instant::now();
    let shared = match found {
        Some(_) => None,
        None => ctx.searches.as_ref().and_then(|s| s.take(job).map(|share| (s, share))),
    };
    let mut scenes = match (found, shared) {
        (Some(found), _) => found.iter().filter(|s| window.contains(s.datetime, lon_center)).cloned().collect(),
        (None, Some((searches, (bins, cell)))) => {
            // The first bin of the chunk to get here searches for all; the others wait for it.
            // A failed search initialises nothing: the next bin tries again by itself.
            let _taken = Taken { searches, job };
            let joint = cell
                .get_or_try_init(|| async {
                    stats.searches = 1;
                    Ok::<_, JobError>(Arc::new(search_bins(ctx, &bins).await?.unwrap_or_default()))
                })
                .await?;
            joint.iter().filter(|s| window.contains(s.datetime, lon_center)).cloned().collect()
        }
        (None, None) => match chunk_search(ctx, job)? {
            Some(req) => {
                stats.searches = 1;
                ctx.catalog.search(&req, &search_bands(ctx)).await?
            }
            None => Vec::new(),
        },
    };
    scenes.retain(|s| window.contains(s.datetime, lon_center));
    // Fusion order: solar day, then (datetime, id) within it.
    scenes.sort_by(|a, b| {
        (solar_day(a.datetime, lon_center), a.datetime, &a.id).cmp(&(
            solar_day(b.datetime, lon_center),
            b.datetime,
            &b.id,
        ))
    });
    stats.scenes_found = scenes.len();
    stats.search_seconds = t0.elapsed().as_secs_f64();

    // Scenes stream in fusion order (fetched ahead, decoded a few ahead); each is fused into its
    // solar day as it arrives, and a day is masked once its last scene is in.
    let t0 = Instant::now();
    let work = Arc::new(work);
    let mut scenes = Pipeline::new(ctx, Arc::clone(&work), rules, scenes, lon_center);
    let mut stack = Stack::new(rows * cols, nb + indices.exprs.len());
    let mut open: Option<OpenDay> = None;
    while let Some((date, id, loaded)) = scenes.next().await {
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) if ctx.skip_bad_scenes && !e.is_transient() => {
                stats.warnings.push(format!("skipped scene {id}: {e}"));
                continue;
            }
            Err(e) => return Err(e),
        };
        stats.requests += loaded.stats.requests;
        stats.bytes += loaded.stats.bytes;
        let Some(pixels) = loaded.scene else { continue };
        let mut today = match open.take() {
            Some(day) if day.date == date => day,
            finished => {
                stack = finish_day(finished, &work, &mask, &indices, stack).await?;
                OpenDay { date, day: Day::new(work.geobox.shape.len(), read), filled: 0 }
            }
        };
        let (day, filled) = cpu(move || {
            let filled = pixels.fuse_into(&mut today.day);
            (today, filled)
        })
        .await?;
        today = day;
        stats.scenes += 1;
        today.filled += filled?;
        if today.filled == work.geobox.shape.len() {
            stats.scenes_covered += scenes.skip_day(date);
        }
        open = Some(today);
    }
    let stack = finish_day(open, &work, &mask, &indices, stack).await?;
    stats.read_seconds = t0.elapsed().as_secs_f64();
    stats.solar_days = stack.days();

    let t0 = Instant::now();
    if stack.is_empty() {
        return Ok((None, (rows, cols), stats));
    }
    let (reducer, with_count) = (spec.reducer.clone(), spec.with_count);
    let data = cpu(move || stack.reduce(&reducer, nb, with_count)).await??;
    stats.reduce_seconds = t0.elapsed().as_secs_f64();
    Ok((Some(data), (rows, cols), stats))
}

/// How a job turns an observation's read bands into the cube's bands and its indices.
struct Indices {
    /// The index formulas over the read bands.
    exprs: Vec<crate::expr::Expr>,
    /// The cube's bands: the first read bands.
    bands: usize,
    /// The sensor's `(scale_factor, add_offset)`: indices are formulas of reflectance.
    reflectance: (f64, f64),
}

/// The grid a job warps onto: the chunk grown by the mask halo on every side, clipped to the
/// cube's grid (the whole-cube mask also stops at the grid edge, so clipping keeps them equal).
#[derive(Debug, Clone)]
struct WorkGrid {
    geobox: GeoBox,
    /// Where the chunk sits inside the work grid.
    inner: PixelWindow,
}

impl WorkGrid {
    fn new(cube: &GeoBox, row: usize, col: usize, chunk: Shape, halo: usize) -> Result<WorkGrid, JobError> {
        let grown = PixelWindow {
            row: row as i64 - halo as i64,
            col: col as i64 - halo as i64,
            height: chunk.ny + 2 * halo,
            width: chunk.nx + 2 * halo,
        };
        let clipped = grown
            .clip(cube.shape)
            .ok_or_else(|| JobError::Internal(format!("chunk at row {row}, col {col} lies outside the cube grid")))?;
        let inner = PixelWindow {
            row: row as i64 - clipped.row,
            col: col as i64 - clipped.col,
            height: chunk.ny,
            width: chunk.nx,
        };
        Ok(WorkGrid { geobox: cube.window(&clipped), inner })
    }

    /// The chunk's part of a work-grid array.
    fn crop<T: Copy>(&self, a: &[T]) -> Vec<T> {
        let nx = self.geobox.shape.nx;
        let (r0, c0) = (self.inner.row as usize, self.inner.col as usize);
        let mut out = Vec::with_capacity(self.inner.height * self.inner.width);
        for r in r0..r0 + self.inner.height {
            out.extend_from_slice(&a[r * nx + c0..r * nx + c0 + self.inner.width]);
        }
        out
    }
}

fn chunk_center_lon(chunk: &GeoBox, wgs84: &Crs) -> Result<f64, JobError> {
    let (x, y) = chunk.affine.apply(chunk.shape.nx as f64 / 2.0, chunk.shape.ny as f64 / 2.0);
    Ok(Transformer::new(&chunk.crs, wgs84).transform(x, y)?.0)
}

/// The solar day being fused and how many pixels its scenes filled so far.
struct OpenDay {
    date: crate::time::Date,
    day: Day,
    filled: usize,
}

/// A fused solar day → one observation on the chunk, pushed onto `stack`: masked (invalid
/// pixels are fill, which the reducer skips), cropped to the chunk when the work grid has a halo.
/// Its bands are the cube's, then one per index (computed from the masked read bands, so a
/// masked pixel is fill in every index). No day, or a day no scene filled a pixel of, adds
/// nothing to any reducer, so it is no observation.
async fn finish_day(
    open: Option<OpenDay>,
    work: &Arc<WorkGrid>,
    mask: &mask::Mask,
    indices: &Arc<Indices>,
    mut stack: Stack,
) -> Result<Stack, JobError> {
    let Some(OpenDay { day, .. }) = open.filter(|d| d.filled > 0) else { return Ok(stack) };
    let (work, mask, indices) = (Arc::clone(work), mask.clone(), Arc::clone(indices));
    cpu(move || -> Result<Stack, JobError> {
        let obs = day.into_observation();
        let valid = mask.valid(&obs.scl, work.geobox.shape)?;
        let whole = work.inner.height == work.geobox.shape.ny && work.inner.width == work.geobox.shape.nx;
        let (valid, mut bands) = if whole {
            (valid, obs.bands)
        } else {
            (work.crop(&valid), obs.bands.iter().map(|b| work.crop(b)).collect())
        };
        if !indices.exprs.is_empty() {
            // The stack drops invalid pixels by itself; the indices need them as fill first.
            for band in &mut bands {
                for (v, ok) in band.iter_mut().zip(&valid) {
                    if !ok {
                        *v = fuse::NODATA;
                    }
                }
            }
            let made = {
                let (scale, offset) = indices.reflectance;
                crate::index::compute(&indices.exprs, &bands, scale, offset)
            };
            bands.truncate(indices.bands);
            bands.extend(made);
        }
        stack.push(&bands, &valid)?;
        Ok(stack)
    })
    .await?
}

/// What reading a scene gave: its pixels ready to fuse (`None` when it has no pixel on the work
/// grid) and what reading cost.
struct Loaded {
    scene: Option<ScenePixels>,
    stats: RequestStats,
}

/// A scene's pixels, ready to be fused into its solar day.
enum ScenePixels {
    /// Every band (SCL included) decoded on one source grid, sampled while fusing.
    Sampled {
        id: String,
        radiometry: Radiometry,
        plan: Arc<SamplePlan>,
        resampling: Resampling,
        bands: Vec<Window<u16>>,
        scl: Window<u8>,
    },
    /// Bands on different grids (or averaged): each warped onto the work grid first.
    Warped(WarpedScene),
}

impl ScenePixels {
    /// Fuses the scene into `day`; the pixels it filled.
    fn fuse_into(&self, day: &mut Day) -> Result<usize, FuseError> {
        match self {
            ScenePixels::Warped(scene) => day.add_warped(scene),
            ScenePixels::Sampled { id, radiometry, plan, resampling, bands, scl } => day.add_sampled(&SampledScene {
                id,
                radiometry: *radiometry,
                plan,
                resampling: *resampling,
                bands: bands.iter().map(Window::image).collect(),
                scl: scl.image(),
            }),
        }
    }
}

/// A decoded band window and its nodata value.
struct Window<T> {
    data: Vec<T>,
    geobox: GeoBox,
    nodata: Option<T>,
}

impl<T: Copy> Window<T> {
    fn image(&self) -> SourceImage<'_, T> {
        SourceImage { data: &self.data, geobox: &self.geobox, nodata: self.nodata }
    }
}

/// The scenes of one job in flight, handed out in fusion order. Up to `fetch_ahead` scenes fetch
/// their windows at once (I/O: on an object store many requests must be in flight to hide
/// latency), fewer once their compressed windows reach a byte budget (real tiles compress only
/// about 1.4:1); of those, the first `decode_ahead` also decode (CPU: decoded windows are large,
/// so only as many as keep the cores busy). Memory is bounded by those numbers, not by the
/// number of scenes. Dropping the pipeline aborts its tasks.
///
/// A solar day whose scenes have filled every pixel of the work grid takes nothing from its
/// later scenes (fusion fills only open pixels), so the job drops them ([`Pipeline::skip_day`]).
/// Where one scene's STAC bbox holds the whole work grid (two tiles of one pass over a tile
/// overlap or a UTM zone boundary), the later scenes of its day are held back, not read ahead,
/// until that day is fused: most of them are then dropped unread. Holding back only delays a
/// read; which scenes are fused, and so the cube, is the same.
struct Pipeline {
    ctx: JobContext,
    work: Arc<WorkGrid>,
    /// The work grid's lon/lat bounds, to compare with the scenes' bboxes; `None` when the
    /// grid does not project to lon/lat (nothing is held back then).
    work_lonlat: Option<crate::grid::Bbox>,
    rules: SceneRules,
    grids: Arc<SourceGrids>,
    lon_center: f64,
    waiting: std::collections::VecDeque<Scene>,
    fetching: std::collections::VecDeque<InFlight<Fetched>>,
    decoding: std::collections::VecDeque<InFlight<Loaded>>,
    decode_ahead: usize,
    /// The compressed bytes of the windows fetched (or being fetched) and not decoded yet.
    fetched_bytes: FetchedBytes,
    /// The solar day of the last scene taken from `waiting` whose bbox holds the work grid.
    covering: Option<crate::time::Date>,
}

/// A scene in a stage of the [`Pipeline`]: its solar day, id and the task working on it, or
/// the scene itself while it is held back.
struct InFlight<T> {
    date: crate::time::Date,
    id: String,
    stage: Stage<T>,
}

enum Stage<T> {
    Started(Task<Result<T, JobError>>),
    Held(Box<Scene>),
}

/// How many scenes of a stage have a task (held scenes have none).
fn started<T>(stage: &std::collections::VecDeque<InFlight<T>>) -> usize {
    stage.iter().filter(|f| matches!(f.stage, Stage::Started(_))).count()
}

/// A spawned task that is aborted when dropped (a job that times out stops its reads).
struct Task<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Task<T> {
    async fn join(mut self) -> Result<T, JobError> {
        (&mut self.0).await.map_err(|e| JobError::Internal(format!("a read task ended without an answer: {e}")))
    }
}

impl Pipeline {
    fn new(ctx: &JobContext, work: Arc<WorkGrid>, rules: SceneRules, scenes: Vec<Scene>, lon_center: f64) -> Pipeline {
        let work_lonlat = work.geobox.footprint(&Crs::wgs84(), 8).ok().and_then(|f| f.bbox());
        let mut p = Pipeline {
            ctx: ctx.clone(),
            work,
            work_lonlat,
            rules,
            grids: Arc::new(SourceGrids::default()),
            lon_center,
            waiting: scenes.into(),
            fetching: Default::default(),
            decoding: Default::default(),
            // Each decoding scene gives the pool a task per band, and the scene being fused keeps
            // it busy too: one scene per core is enough, and a decoded scene is 10-20 MB.
            decode_ahead: rayon::current_num_threads().max(2),
            fetched_bytes: FetchedBytes::default(),
            covering: None,
        };
        p.refill();
        p
    }

    /// Starts fetches up to `fetch_ahead` scenes ahead (fewer once their compressed windows
    /// reach the byte budget; see [`may_fetch_ahead`]) and decodes up to `decode_ahead`; held
    /// scenes take no place in either.
    fn refill(&mut self) {
        let fetch_ahead = self.ctx.scene_concurrency.max(self.decode_ahead);
        let budget = FETCHED_BYTES_PER_DECODER * self.decode_ahead as u64;
        while started(&self.decoding) < self.decode_ahead {
            let Some(InFlight { date, id, stage }) = self.fetching.pop_front().or_else(|| self.take_next()) else {
                break;
            };
            let stage = match stage {
                Stage::Held(scene) => Stage::Held(scene),
                Stage::Started(fetch) => Stage::Started(self.decode(async move { fetch.join().await? })),
            };
            self.decoding.push_back(InFlight { date, id, stage });
        }
        while may_fetch_ahead(
            started(&self.decoding) + started(&self.fetching),
            fetch_ahead,
            self.decode_ahead,
            self.fetched_bytes.held(),
            budget,
        ) {
            let Some(next) = self.take_next() else { break };
            self.fetching.push_back(next);
        }
    }

    /// A task that decodes the scene `fetched` gives, once it has it.
    fn decode(
        &self,
        fetched: impl Future<Output = Result<Fetched, JobError>> + Send + 'static,
    ) -> Task<Result<Loaded, JobError>> {
        let (ctx, work, rules, grids) = (self.ctx.clone(), Arc::clone(&self.work), self.rules, Arc::clone(&self.grids));
        Task(tokio::spawn(in_this_job(
            async move { decode_scene(fetched.await?, &ctx.plan, &work, rules, &grids).await },
        )))
    }

    /// The next waiting scene: held back when an earlier scene of its day may cover the work
    /// grid, else with its fetch started.
    fn take_next(&mut self) -> Option<InFlight<Fetched>> {
        let scene = self.waiting.pop_front()?;
        let date = solar_day(scene.datetime, self.lon_center);
        let id = scene.id.clone();
        if self.covering == Some(date) {
            return Some(InFlight { date, id, stage: Stage::Held(Box::new(scene)) });
        }
        if self.work_lonlat.is_some_and(|w| scene.bbox.contains(&w)) {
            self.covering = Some(date);
        }
        let (ctx, work, reserved) = (self.ctx.clone(), Arc::clone(&self.work), self.fetched_bytes.reserve_scene());
        let task = Task(tokio::spawn(in_this_job(async move { fetch_scene(&ctx, scene, &work, reserved).await })));
        Some(InFlight { date, id, stage: Stage::Started(task) })
    }

    /// The next scene in fusion order: its solar day, id and what reading it gave. A held scene
    /// whose day was not covered after all is read now.
    async fn next(&mut self) -> Option<(crate::time::Date, String, Result<Loaded, JobError>)> {
        let InFlight { date, id, stage } = self.decoding.pop_front()?;
        let task = match stage {
            Stage::Started(task) => task,
            Stage::Held(scene) => {
                let (ctx, work, reserved) =
                    (self.ctx.clone(), Arc::clone(&self.work), self.fetched_bytes.reserve_scene());
                self.decode(async move { fetch_scene(&ctx, *scene, &work, reserved).await })
            }
        };
        self.refill();
        let loaded = match task.join().await {
            Ok(r) => r,
            Err(e) => Err(e),
        };
        Some((date, id, loaded))
    }

    /// Drops the scenes of solar day `date` not handed out yet, their reads aborted (scenes
    /// come in fusion order, so they are the first in line); returns how many.
    fn skip_day(&mut self, date: crate::time::Date) -> usize {
        let mut dropped = 0;
        while self.decoding.front().is_some_and(|f| f.date == date) {
            self.decoding.pop_front();
            dropped += 1;
        }
        if self.decoding.is_empty() {
            while self.fetching.front().is_some_and(|f| f.date == date) {
                self.fetching.pop_front();
                dropped += 1;
            }
        }
        if self.decoding.is_empty() && self.fetching.is_empty() {
            while self.waiting.front().is_some_and(|s| solar_day(s.datetime, self.lon_center) == date) {
                self.waiting.pop_front();
                dropped += 1;
            }
        }
        self.refill();
        dropped
    }
}

/// Whether a job with `started` scenes fetching or decoding starts one more: below
/// `fetch_ahead`, and, once it has enough scenes to keep its `decode_ahead` decoders fed, only
/// while the compressed windows it holds (`held` bytes) are below `budget`. Smooth or mostly
/// empty scenes are small and are read far ahead (hiding an object store's latency); real
/// scenes are not, and reading six of them ahead would be most of a job's memory.
fn may_fetch_ahead(started: usize, fetch_ahead: usize, decode_ahead: usize, held: u64, budget: u64) -> bool {
    started < fetch_ahead && (started < decode_ahead || held < budget)
}

/// The compressed bytes of a job's windows fetched or being fetched and not decoded yet. A
/// scene is started with an estimate of its bytes ([`FetchedBytes::reserve_scene`]: the mean
/// of the job's scenes so far), replaced by its windows' own once its COGs are open; each
/// window then holds its share until it is decoded or dropped.
#[derive(Clone, Default)]
struct FetchedBytes(Arc<ByteCounts>);

#[derive(Default)]
struct ByteCounts {
    held: AtomicU64,
    /// Scenes whose bytes are known, and their bytes: the estimate for the next.
    scenes: AtomicU64,
    scene_bytes: AtomicU64,
}

impl FetchedBytes {
    fn hold(&self, bytes: u64) -> HeldBytes {
        self.0.held.fetch_add(bytes, Relaxed);
        HeldBytes { of: self.clone(), bytes }
    }

    /// Holds what the next scene is expected to fetch: the mean of the scenes so far, or
    /// [`FETCHED_BYTES_PER_DECODER`] before any is known.
    fn reserve_scene(&self) -> HeldBytes {
        let (n, bytes) = (self.0.scenes.load(Relaxed), self.0.scene_bytes.load(Relaxed));
        self.hold(bytes.checked_div(n).unwrap_or(FETCHED_BYTES_PER_DECODER))
    }

    fn held(&self) -> u64 {
        self.0.held.load(Relaxed)
    }
}

/// A share of [`FetchedBytes`], given back when dropped (decoded, skipped or aborted alike).
struct HeldBytes {
    of: FetchedBytes,
    bytes: u64,
}

impl HeldBytes {
    /// Gives back a scene's estimate, its real `bytes` now held window by window, and counts
    /// them for the next estimates.
    fn settle(self, bytes: u64) {
        self.of.0.scenes.fetch_add(1, Relaxed);
        self.of.0.scene_bytes.fetch_add(bytes, Relaxed);
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        self.of.0.held.fetch_sub(self.bytes, Relaxed);
    }
}

/// How every scene of a job is read, resolved once per job from its spec: how the quality band
/// decodes (`QA_PIXEL`'s bits under the cube's mask; `None` for SCL's classes) and whether the
/// bands take the sensor's BOA offset rule (reflectance, not a quantity such as `aot`).
#[derive(Debug, Clone, Copy)]
struct SceneRules {
    qa: Option<QaDecoder>,
    boa_offset: bool,
}

/// A scene's band windows, fetched (compressed); `None` for a band whose image does not touch
/// the work grid.
struct Fetched {
    scene: Scene,
    bands: Vec<Option<(BandWindow, RequestStats)>>,
}

/// One band's fetched window and how to resample it.
struct BandWindow {
    fetched: FetchedWindow,
    /// The window's compressed bytes, counted against the job's budget until it is decoded.
    _held: HeldBytes,
    resampling: Resampling,
    nodata: f64,
    scl: bool,
}

/// Fetches the windows of every band of `scene` (the bands it reads, then SCL) that cover `work`;
/// `reserved` is the scene's estimated share of the job's [`FetchedBytes`], settled once its
/// windows' own bytes are known.
async fn fetch_scene(
    ctx: &JobContext,
    scene: Scene,
    work: &WorkGrid,
    reserved: HeldBytes,
) -> Result<Fetched, JobError> {
    let spec = &ctx.plan.spec;
    let read = spec.read_bands();
    let mut names: Vec<&str> = read.iter().map(String::as_str).collect();
    let quality = quality_band(spec);
    names.push(quality);
    // First every band's COG and window: then the scene's bytes are known, and they replace
    // the estimate the scene was started with before any tile is fetched.
    let opens = names.iter().map(|&band| {
        let scene = &scene;
        async move {
            let asset = scene.asset(band).ok_or_else(|| JobError::BadScene {
                id: scene.id.clone(),
                reason: format!("no asset for band {band}"),
            })?;
            let scl = band == quality;
            // Every band with the reflectance's margin (SCL needs less): bands on one grid read
            // one window, so the scene is sampled in one pass while it is fused.
            let Some(read) = open_band(ctx, &asset.href, &work.geobox, spec.resampling.margin()).await? else {
                return Ok::<_, JobError>(None);
            };
            Ok(Some((read, asset.nodata, scl)))
        }
    });
    let opened: Vec<_> = futures::future::try_join_all(opens)
        .await?
        .into_iter()
        .map(|open| open.map(|(read, item_nodata, scl)| (reserved.of.hold(read.bytes), read, item_nodata, scl)))
        .collect();
    reserved.settle(opened.iter().flatten().map(|(_, read, ..)| read.bytes).sum());
    let fetches = opened.into_iter().map(|open| async move {
        let Some((held, read, item_nodata, scl)) = open else { return Ok::<_, JobError>(None) };
        let fetched = {
            let _permit =
                ctx.io.acquire().await.map_err(|_| JobError::Internal("the I/O limiter was closed".to_string()))?;
            read.cog.fetch_window(read.level, read.window).await?
        };
        // The COG's own nodata wins; then the STAC item's; Sentinel-2 uses 0.
        let nodata = read.cog.nodata().or(item_nodata).unwrap_or(0.0);
        let resampling = if scl { Resampling::Nearest } else { spec.resampling };
        Ok(Some((BandWindow { fetched, _held: held, resampling, nodata, scl }, read.cog.stats())))
    });
    let bands = futures::future::try_join_all(fetches).await?;
    Ok(Fetched { scene, bands })
}

/// Decodes a fetched scene's windows (each band on the CPU pool at once) and prepares its pixels
/// for fusion: sampled from one grid when every band lies on it (the usual case: the bands and
/// SCL of a 20 m read), else warped band by band.
async fn decode_scene(
    fetched: Fetched,
    plan: &Plan,
    work: &WorkGrid,
    rules: SceneRules,
    grids: &SourceGrids,
) -> Result<Loaded, JobError> {
    let Fetched { scene, bands } = fetched;
    let mut stats = RequestStats::default();
    for (_, s) in bands.iter().flatten() {
        stats.requests += s.requests;
        stats.bytes += s.bytes;
    }
    let Some(windows) = bands.into_iter().map(|b| b.map(|(w, _)| w)).collect::<Option<Vec<BandWindow>>>() else {
        return Ok(Loaded { scene: None, stats });
    };
    let collection = scene.collection.clone().unwrap_or_else(|| plan.spec.collection.clone());
    let profile = crate::sensor::profile_for(&plan.spec.collection);
    let radiometry = Radiometry {
        add: if rules.boa_offset {
            profile.harmonization.offset_to_add(
                scene.processing_baseline.as_deref(),
                scene.boa_offset_applied,
                &collection,
            )
        } else {
            0
        },
    };
    let qa = rules.qa;
    let decodes = windows.into_iter().map(|w| {
        let id = scene.id.clone();
        cpu(move || decode_band(&id, w, qa))
    });
    let mut decoded: Vec<Decoded> =
        futures::future::try_join_all(decodes).await?.into_iter().collect::<Result<Vec<_>, JobError>>()?;
    let Some(Decoded::Scl(scl)) = decoded.pop() else {
        return Err(JobError::Internal("the last window of a scene is not its SCL".into()));
    };
    let mut bands = Vec::with_capacity(decoded.len());
    let mut resamplings = Vec::with_capacity(decoded.len());
    for d in decoded {
        match d {
            Decoded::Reflectance(w, r) => {
                bands.push(w);
                resamplings.push(r);
            }
            Decoded::Scl(..) => return Err(JobError::Internal("a scene has two SCL windows".into())),
        }
    }
    let resampling = plan.spec.resampling;
    let one_grid = bands.iter().all(|b| b.geobox == scl.geobox);
    if one_grid && matches!(resampling, Resampling::Nearest | Resampling::Bilinear) {
        let plan = grids.plan(&scl.geobox, &work.geobox).await?;
        let id = scene.id;
        return Ok(Loaded {
            scene: Some(ScenePixels::Sampled { id, radiometry, plan, resampling, bands, scl }),
            stats,
        });
    }
    // Each band onto the work grid through its own grid's plan (or map, for average).
    let n = work.geobox.shape.len();
    let mut warps = Vec::with_capacity(bands.len() + 1);
    for (b, r) in bands.iter().zip(&resamplings) {
        warps.push(grids.warp_of(&b.geobox, *r, &work.geobox).await?);
    }
    let scl_plan = grids.plan(&scl.geobox, &work.geobox).await?;
    let warped = cpu(move || -> Result<WarpedScene, JobError> {
        let mut out = Vec::with_capacity(bands.len());
        for (band, grid) in bands.iter().zip(&warps) {
            let mut v = vec![0u16; n];
            grid.warp(&band.image(), 0, &mut v)?;
            out.push(v);
        }
        let mut scl_out = vec![0u8; n];
        scl_plan.gather(&scl.image(), 0, &mut scl_out)?;
        Ok(WarpedScene { id: scene.id, datetime: scene.datetime, radiometry, bands: out, scl: scl_out })
    })
    .await??;
    Ok(Loaded { scene: Some(ScenePixels::Warped(warped)), stats })
}

/// A decoded window: a reflectance band (as u16, with its resampling) or SCL (as u8).
enum Decoded {
    Reflectance(Window<u16>, Resampling),
    Scl(Window<u8>),
}

/// Decodes one band's window into the type the pipeline works in: SCL as u8 classes, `QA_PIXEL`
/// as the u8 codes `qa` gives (see [`crate::sensor::landsat`]), reflectance as u16 digital
/// numbers.
fn decode_band(id: &str, w: BandWindow, qa: Option<QaDecoder>) -> Result<Decoded, JobError> {
    let bad = |reason: String| JobError::BadScene { id: id.to_string(), reason };
    let raster = w.fetched.decode()?;
    let geobox = raster.geobox;
    if let (true, Some(qa)) = (w.scl, qa) {
        let data: Vec<u8> = match raster.data {
            RasterData::U16(v) => v.into_iter().map(|x| qa.code(x)).collect(),
            RasterData::U8(v) => v.into_iter().map(|x| qa.code(u16::from(x))).collect(),
            other => return Err(bad(format!("QA_PIXEL is {:?}; it must be a 16-bit bit-flag raster", other.dtype()))),
        };
        // Fill decodes to no data, whatever the COG calls its nodata.
        return Ok(Decoded::Scl(Window { data, geobox, nodata: Some(crate::sensor::landsat::code::NO_DATA) }));
    }
    if w.scl {
        let data: Vec<u8> = match raster.data {
            RasterData::U8(v) => v,
            RasterData::U16(v) => v.into_iter().map(|x| u8::try_from(x).unwrap_or(0)).collect(),
            other => return Err(bad(format!("SCL is {:?}; it must be an 8-bit class raster", other.dtype()))),
        };
        let nodata = u8::try_from(w.nodata as i64).ok().filter(|_| w.nodata.fract() == 0.0);
        return Ok(Decoded::Scl(Window { data, geobox, nodata }));
    }
    let data: Vec<u16> = match raster.data {
        RasterData::U16(v) => v,
        RasterData::U8(v) => v.into_iter().map(u16::from).collect(),
        other => {
            return Err(bad(format!(
                "a reflectance band is {:?}; eocube cubes hold uint16 digital numbers",
                other.dtype()
            )));
        }
    };
    let nodata = u16::try_from(w.nodata as i64).ok().filter(|_| w.nodata.fract() == 0.0);
    Ok(Decoded::Reflectance(Window { data, geobox, nodata }, w.resampling))
}

/// One band's COG opened, with the overview level and window a job reads from it and that
/// window's compressed bytes.
struct BandRead {
    cog: Cog,
    level: usize,
    window: PixelWindow,
    bytes: u64,
}

/// Opens one band's COG and picks the overview as odc-stac does and the window that covers
/// `work` grown by `margin` source pixels (`None` when the image does not touch it).
async fn open_band(ctx: &JobContext, href: &str, work: &GeoBox, margin: usize) -> Result<Option<BandRead>, JobError> {
    let cog = ctx.fetcher.open(href).await?;
    let full = cog.geobox(0).ok_or_else(|| CogError::Malformed { href: href.into(), reason: "no image".into() })?;
    let shrink = source_pixels_per_target_pixel(&full, work)?;
    let base = full.shape.nx as f64;
    let factors: Vec<f64> = cog.levels().iter().map(|l| base / l.width.max(1) as f64).collect();
    let level = choose_overview(&factors, shrink);
    let level_box = cog.geobox(level).unwrap_or(full);
    let Some(window) = source_window(&level_box, work, margin)? else {
        return Ok(None);
    };
    let bytes = cog.window_bytes(level, window)?;
    Ok(Some(BandRead { cog, level, window, bytes }))
}

/// The source grids of one job and what warping from each onto its work grid needs, built once
/// and shared by every scene and band read on that grid: the scenes of one MGRS tile read the
/// same window of the same level (and SCL at 20 m shares the grid of the 10 m bands' first
/// overview), so a chunk-month of 26 scenes in two tiles builds two plans, not 26.
#[derive(Default)]
struct SourceGrids {
    grids: std::sync::Mutex<Vec<(GeoBox, Sampling, GridSlot)>>,
}

/// A grid built once: the first band to need it builds it, the others wait for it. The wait is
/// asynchronous on purpose: a rayon thread blocked on a lock can deadlock the pool (a thread
/// waiting inside a parallel loop runs other queued tasks, which may be the very waiters).
type GridSlot = Arc<tokio::sync::OnceCell<Built>>;

/// What a grid's slot holds: a sample plan (pixel centres) or a corner map (average).
#[derive(Clone)]
enum Built {
    Plan(Arc<SamplePlan>),
    Corners(Arc<PixelMap>),
}

/// How one band is warped from its grid onto the work grid.
enum GridWarp {
    Nearest(Arc<SamplePlan>),
    Bilinear(Arc<SamplePlan>),
    Average(Arc<PixelMap>),
}

impl GridWarp {
    /// Warps `src` (on this grid) into `out`, `fill` where it has no value; the number of pixels
    /// that got one.
    fn warp<T: warp::Pixel>(&self, src: &SourceImage<'_, T>, fill: T, out: &mut [T]) -> Result<usize, WarpError> {
        match self {
            GridWarp::Nearest(plan) => plan.gather(src, fill, out),
            GridWarp::Bilinear(plan) => plan.bilinear(src, fill, out),
            GridWarp::Average(map) => warp::warp_with_map(src, map, Resampling::Average, fill, out),
        }
    }
}

impl SourceGrids {
    /// How `work` samples `geobox` (centres or corners), built on first use on the CPU pool.
    async fn built(&self, geobox: &GeoBox, sampling: Sampling, work: &GeoBox) -> Result<Built, JobError> {
        let slot = {
            let mut grids = lock(&self.grids);
            match grids.iter().find(|(g, s, _)| g == geobox && *s == sampling) {
                Some((_, _, slot)) => Arc::clone(slot),
                None => {
                    let slot = GridSlot::default();
                    grids.push((geobox.clone(), sampling, Arc::clone(&slot)));
                    slot
                }
            }
        };
        let built = slot
            .get_or_try_init(|| {
                let (geobox, work) = (geobox.clone(), work.clone());
                async move {
                    cpu(move || -> Result<Built, JobError> {
                        Ok(match sampling {
                            Sampling::Centres => Built::Plan(Arc::new(SamplePlan::new(&geobox, &work)?)),
                            Sampling::Corners => Built::Corners(Arc::new(PixelMap::new(
                                &geobox,
                                &work,
                                sampling,
                                warp::DEFAULT_TOLERANCE,
                            )?)),
                        })
                    })
                    .await?
                }
            })
            .await?;
        Ok(built.clone())
    }

    /// The sample plan of `geobox` onto `work` (pixel centres: nearest and bilinear).
    async fn plan(&self, geobox: &GeoBox, work: &GeoBox) -> Result<Arc<SamplePlan>, JobError> {
        match self.built(geobox, Sampling::Centres, work).await? {
            Built::Plan(plan) => Ok(plan),
            Built::Corners(_) => Err(JobError::Internal("a centre grid holds a corner map".into())),
        }
    }

    /// How one band on `geobox` is warped onto `work` with `resampling`.
    async fn warp_of(&self, geobox: &GeoBox, resampling: Resampling, work: &GeoBox) -> Result<GridWarp, JobError> {
        Ok(match resampling {
            Resampling::Nearest => GridWarp::Nearest(self.plan(geobox, work).await?),
            Resampling::Bilinear => GridWarp::Bilinear(self.plan(geobox, work).await?),
            Resampling::Average => match self.built(geobox, Sampling::Corners, work).await? {
                Built::Corners(map) => GridWarp::Average(map),
                Built::Plan(_) => return Err(JobError::Internal("a corner grid holds a sample plan".into())),
            },
        })
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs CPU work on the rayon pool (sized to the cores) without blocking the async runtime. A
/// panic inside becomes an error instead of aborting the process.
pub async fn cpu<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, JobError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let r = std::panic::catch_unwind(AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            Err(JobError::Internal(format!("a CPU task panicked: {what}")))
        }
        Err(_) => Err(JobError::Internal("a CPU task ended without an answer".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bins_of_a_chunk_share_one_search_until_the_last_has_its_scenes() {
        let job = |t, iy, ix| Job { t, iy, ix };
        let s = SharedSearches::new(&[job(0, 0, 0), job(1, 0, 0), job(2, 0, 0), job(0, 5, 5)]);
        assert!(s.take(job(0, 5, 5)).is_none(), "a chunk of one bin searches alone");
        assert!(s.take(job(3, 0, 0)).is_none(), "a bin this process does not run searches alone");
        let (bins, first) = s.take(job(1, 0, 0)).expect("shared");
        assert_eq!(bins, [job(0, 0, 0), job(1, 0, 0), job(2, 0, 0)]);
        let (_, second) = s.take(job(0, 0, 0)).expect("shared");
        assert!(Arc::ptr_eq(&first, &second), "one search for the chunk");
        s.done(job(1, 0, 0));
        s.done(job(0, 0, 0));
        assert!(s.take(job(1, 0, 0)).is_none(), "a bin that had its part searches alone when run again");
        assert_eq!(s.held(), 1);
        {
            let _t = Taken { searches: &s, job: job(2, 0, 0) };
        }
        assert_eq!(s.held(), 0, "the last bin's part given back drops the chunk's search");
        assert!(s.take(job(2, 0, 0)).is_none());
    }
    #[test]
    fn scenes_are_read_ahead_while_their_compressed_windows_fit_the_budget() {
        let mb = 1 << 20;
        assert!(may_fetch_ahead(0, 6, 2, 100 * mb, 32 * mb), "the decoders are fed whatever the bytes");
        assert!(may_fetch_ahead(1, 6, 2, 100 * mb, 32 * mb));
        assert!(!may_fetch_ahead(2, 6, 2, 32 * mb, 32 * mb), "then only below the budget");
        assert!(may_fetch_ahead(5, 6, 2, 20 * mb, 32 * mb), "small scenes are read far ahead");
        assert!(!may_fetch_ahead(6, 6, 2, 0, 32 * mb), "but never more than fetch_ahead");
    }

    #[test]
    fn fetched_bytes_are_held_until_dropped_and_estimated_from_the_scenes_so_far() {
        let bytes = FetchedBytes::default();
        let first = bytes.reserve_scene();
        assert_eq!(bytes.held(), FETCHED_BYTES_PER_DECODER, "no scene known: the default estimate");
        let windows = [bytes.hold(3_000), bytes.hold(1_000)];
        first.settle(4_000);
        assert_eq!(bytes.held(), 4_000, "the estimate is given back, the windows stay");
        let second = bytes.reserve_scene();
        assert_eq!(bytes.held(), 8_000, "the next scene is expected to be like the first");
        drop(windows);
        drop(second);
        assert_eq!(bytes.held(), 0, "decoded or dropped alike, everything is given back");
    }

    use crate::grid::Affine;

    fn cube() -> GeoBox {
        GeoBox::new(
            Crs::wgs84(),
            Affine { a: 0.1, b: 0.0, c: 10.0, d: 0.0, e: -0.1, f: 50.0 },
            Shape { ny: 25, nx: 30 },
        )
    }

    #[test]
    fn work_grid_grows_by_the_halo_and_clips_at_the_cube_edge() {
        // interior chunk: halo on all sides
        let w = WorkGrid::new(&cube(), 10, 10, Shape { ny: 10, nx: 10 }, 3).unwrap();
        assert_eq!(w.geobox.shape, Shape { ny: 16, nx: 16 });
        assert_eq!((w.inner.row, w.inner.col), (3, 3));
        assert!((w.geobox.affine.c - 10.7).abs() < 1e-9 && (w.geobox.affine.f - 49.3).abs() < 1e-9);
        // corner chunk: no halo beyond the grid
        let w = WorkGrid::new(&cube(), 0, 20, Shape { ny: 10, nx: 10 }, 3).unwrap();
        assert_eq!(w.geobox.shape, Shape { ny: 13, nx: 13 });
        assert_eq!((w.inner.row, w.inner.col), (0, 3));
        let a: Vec<u32> = (0..13 * 13).collect();
        let c = w.crop(&a);
        assert_eq!(c.len(), 100);
        assert_eq!((c[0], c[9], c[10]), (3, 12, 16));
    }

    #[test]
    fn cpu_returns_values_and_turns_panics_into_errors() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(rt.block_on(cpu(|| 6 * 7)).unwrap(), 42);
        #[allow(clippy::panic)]
        let e = rt.block_on(cpu(|| -> u8 { panic!("boom") })).unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
    }
}
