//! A whole build, start to finish (DESIGN section 1): check the catalog answers, plan, create the
//! cube's template (or reopen it to resume), run the jobs, and when every job is done write the
//! consolidated metadata that makes the cube complete. `eocube build` and `eocube demo` both
//! come through here.
//!
//! Owns: the order of those steps and the refusals that must come before any work (no output
//! path, a dead catalog, an output holding another cube). Must not touch: what a job computes,
//! how jobs are scheduled, or the store's byte layout.

use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::catalog::{Catalog, CatalogError};
use crate::cog::{FetchConfig, Fetcher};
use crate::executor::{self, Progress, ProgressMode, RunOptions, Summary};
use crate::job::JobContext;
use crate::plan::{LandTest, Plan, PlanError, PlanSummary};
use crate::spec::CubeSpec;
use crate::store::{Cube, CubeLayout, IcechunkOptions, LocationError, OutLocation, StoreError, ZarrFormat};
use crate::time::days_since_epoch;

/// How a build runs (not what it makes: that is the [`CubeSpec`]).
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub run: RunOptions,
    pub skip_bad_scenes: bool,
    pub progress: ProgressMode,
    pub fetch: FetchConfig,
}

/// What a build did.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub out: PathBuf,
    pub plan: PlanSummary,
    /// The output already held this cube: done jobs were skipped.
    pub resumed: bool,
    pub summary: Summary,
    /// Every job is done and the consolidated metadata is written.
    pub complete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("--out is missing: give the directory to write the cube into, e.g. --out cube.zarr")]
    NoOutput,
    // The inner errors are fields, not `source`s: their text is already in the message, and the
    // CLI prints the source chain, which would repeat it.
    #[error("--stac-url {url}: {error}")]
    Catalog { url: String, error: CatalogError },
    #[error("--items {path}: {error}")]
    Items { path: PathBuf, error: CatalogError },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("--out {path}: {error}")]
    Store { path: PathBuf, error: StoreError },
    #[error("--end {given}: {reason}")]
    End { given: String, reason: String },
    #[error("{what} is not supported yet; {fix}")]
    Unsupported { what: String, fix: String },
    /// `--out` is not a location eocube can write to (the message names `--out` and the forms).
    #[error(transparent)]
    Location(#[from] LocationError),
    /// The AWS profile named in the environment cannot be used (for `s3://` inputs).
    #[error("AWS settings for s3:// inputs: {reason}")]
    AwsSettings { reason: String },
}

/// The catalog of `spec`, checked to answer: a local item file is read, an API's landing page
/// must offer item search. Called before anything is written.
pub async fn open_catalog(spec: &CubeSpec) -> Result<Catalog, BuildError> {
    match &spec.items {
        Some(path) => Catalog::file(path).map_err(|error| BuildError::Items { path: path.clone(), error }),
        None => {
            let bad = |error| BuildError::Catalog { url: spec.stac_url.clone(), error };
            let catalog = Catalog::api(&spec.stac_url).map_err(bad)?;
            catalog.check().await.map_err(bad)?;
            Ok(catalog)
        }
    }
}

/// The store layout of a plan.
pub fn layout(plan: &Plan) -> CubeLayout {
    let spec = &plan.spec;
    CubeLayout {
        geobox: plan.geobox.clone(),
        chunk_size: spec.chunk_size,
        times: plan.bins.iter().map(|b| days_since_epoch(b.label())).collect(),
        bands: spec.bands.clone(),
        variable: spec.variable.clone(),
        zarr_format: if spec.zarr_format == 2 { ZarrFormat::V2 } else { ZarrFormat::V3 },
        attrs: spec.identity_json(),
    }
}

/// Creates the cube at `out` (a local path, `file://` or `s3://bucket/prefix`: see
/// [`OutLocation::parse`]), or reopens it when it holds the same cube (resume). Refuses an
/// output that holds anything else, an unknown or unsupported scheme, a missing bucket, refused
/// credentials or an unreachable endpoint, without touching it.
pub fn create_or_resume(out: impl AsRef<OsStr>, plan: &Plan) -> Result<(Cube, bool), BuildError> {
    create_or_resume_with(out, plan, &IcechunkOptions::default())
}

/// [`create_or_resume`] with the branch options of an Icechunk output (`icechunk://`,
/// `icechunk+s3://`; ignored for plain Zarr): the build runs on a build branch and the target
/// branch moves only when every job is done (`src/store/icechunk.rs`).
pub fn create_or_resume_with(
    out: impl AsRef<OsStr>,
    plan: &Plan,
    icechunk: &IcechunkOptions,
) -> Result<(Cube, bool), BuildError> {
    let out = out.as_ref();
    let store = |error| BuildError::Store { path: PathBuf::from(out), error };
    let loc = OutLocation::parse(out)?;
    Cube::create_or_open_icechunk(&loc, &layout(plan), icechunk).map_err(store)
}

/// Runs the build of `spec` until every job has ended or `stop` completes.
pub async fn build(
    spec: &CubeSpec,
    opts: &BuildOptions,
    is_land: LandTest<'_>,
    stop: impl Future<Output = ()>,
) -> Result<BuildReport, BuildError> {
    build_with(spec, opts, &IcechunkOptions::default(), is_land, stop).await
}

/// [`build`] with the branch options of an Icechunk output (`--branch`, `--tag`,
/// `--commit-every`; ignored for plain Zarr). On Icechunk, [`Cube::finish`] is the final commit
/// that moves the target branch.
pub async fn build_with(
    spec: &CubeSpec,
    opts: &BuildOptions,
    icechunk: &IcechunkOptions,
    is_land: LandTest<'_>,
    stop: impl Future<Output = ()>,
) -> Result<BuildReport, BuildError> {
    let out = PathBuf::from(spec.out.as_deref().ok_or(BuildError::NoOutput)?);
    // A profile named in the environment must be usable before any job starts: otherwise every
    // s3:// href would fail alike (or, with --skip-bad-scenes, be skipped).
    let named = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    if named("AWS_PROFILE") || named("AWS_DEFAULT_PROFILE") {
        opts.fetch.check_s3_settings().map_err(|reason| BuildError::AwsSettings { reason })?;
    }
    let catalog = open_catalog(spec).await?;
    let plan = Arc::new(Plan::new(spec, is_land)?);
    let (cube, resumed) = create_or_resume_with(&out, &plan, icechunk)?;
    let cube = Arc::new(cube);
    let ctx = JobContext::new(Arc::clone(&plan), catalog, Fetcher::new(opts.fetch.clone()), opts.skip_bad_scenes);
    let mut progress = Progress::new(opts.progress);
    let store = |error| BuildError::Store { path: out.clone(), error };
    let summary = executor::run_local(&ctx, &cube, &opts.run, &mut progress, stop).await.map_err(store)?;
    let complete = summary.complete();
    if complete {
        cube.finish().map_err(store)?;
    } else {
        // Icechunk: commit the jobs done since the last checkpoint to the build branch.
        cube.checkpoint().map_err(store)?;
    }
    Ok(BuildReport { out, plan: plan.summary(), resumed, summary, complete })
}

/// `eocube extend`: grows the time axis of the cube at `out` to `new_end` and computes what is
/// new. The last old bin is computed again when the old end cut it short (its search window
/// grows); every other done job is kept. A rerun with the same `new_end` resumes. In an Icechunk
/// repository the cube on `icechunk.branch` is extended on a build branch and the branch moves
/// once, when everything is done: one new version ([`Cube::begin_extend`]).
pub async fn extend(
    out: &str,
    new_end: crate::time::Date,
    workers: Option<usize>,
    opts: &BuildOptions,
    icechunk: &IcechunkOptions,
    is_land: LandTest<'_>,
    stop: impl Future<Output = ()>,
) -> Result<BuildReport, BuildError> {
    let store = |error| BuildError::Store { path: PathBuf::from(out), error };
    let loc = OutLocation::parse(out)?;
    let in_repo = matches!(loc, OutLocation::Icechunk(_));
    // A repository: the finished cube on the branch (an unfinished extend is found by its spec).
    let cube = Cube::open_branch(&loc, &icechunk.branch, false).map_err(store)?;
    let old = stored_spec(&cube, out)?;
    if new_end < old.end {
        return Err(BuildError::End {
            given: new_end.to_string(),
            reason: format!("the cube already ends on {}; give a later date (a cube never shrinks)", old.end),
        });
    }
    let mut spec = old.clone();
    spec.end = new_end;
    spec.out = Some(out.to_string());
    if let Some(w) = workers {
        spec.workers = w;
    }
    let old_plan = Plan::new(&old, is_land)?;
    let plan = Plan::new(&spec, is_land)?;
    if new_end > old.end {
        // The catalog must answer before the cube is touched.
        open_catalog(&spec).await?;
        let changed = old_plan
            .bins
            .iter()
            .position(|b| b.search_window(old.start, old.end) != b.search_window(spec.start, spec.end))
            .unwrap_or(old_plan.bins.len());
        if in_repo {
            cube.begin_extend(&layout(&plan), icechunk, &|(t, _, _)| t >= changed).map_err(store)?;
        } else {
            for job in old_plan.jobs().filter(|j| j.t >= changed) {
                cube.unmark_done((job.t, job.iy, job.ix)).map_err(store)?;
            }
            cube.extend_times(&layout(&plan)).map_err(store)?;
        }
    }
    build_with(&spec, opts, icechunk, is_land, stop).await
}

/// The spec stored in a cube, with the run-only fields put back.
fn stored_spec(cube: &Cube, out: &str) -> Result<CubeSpec, BuildError> {
    serde_json::from_value(with_run_fields(cube.layout().attrs.clone())).map_err(|e| BuildError::Store {
        path: PathBuf::from(out),
        error: StoreError::NotACube {
            path: PathBuf::from(out),
            reason: format!("its stored spec cannot be read ({e})"),
        },
    })
}

/// Jobs of a cube's plan by state, read from its ledger and run report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Status {
    pub jobs: usize,
    pub done: usize,
    /// Ended as failed in the last run that tried them, and not done since.
    pub failed: usize,
    pub pending: usize,
    /// Consolidated metadata written: the build finished.
    pub complete: bool,
    pub failures: Vec<(crate::plan::Job, String)>,
}

/// The status of the cube at `out` (a local path or a URL, as for [`create_or_resume`]): its plan
/// is recomputed from the spec stored in it (the plan is deterministic), then compared with the
/// ledger and the run report.
/// In an Icechunk repository: the unfinished build for `branch` if there is one, else the cube on
/// `branch`.
pub fn status(out: impl AsRef<OsStr>, branch: &str, is_land: LandTest<'_>) -> Result<Status, BuildError> {
    let path = Path::new(out.as_ref());
    let store = |error| BuildError::Store { path: path.to_path_buf(), error };
    let cube = Cube::open_branch(&OutLocation::parse(path)?, branch, true).map_err(store)?;
    let spec = stored_spec(&cube, &path.display().to_string())?;
    let plan = Plan::new(&spec, is_land)?;
    let done = cube.done_jobs().map_err(store)?;
    let mut last: std::collections::HashMap<crate::plan::Job, (bool, String)> = Default::default();
    for r in cube.report().map_err(store)? {
        let Some(job) = r.get("job").and_then(|j| serde_json::from_value::<crate::plan::Job>(j.clone()).ok()) else {
            continue;
        };
        let failed = r.get("outcome").and_then(|o| o.as_str()) == Some("failed");
        let error = r.get("error").and_then(|e| e.as_str()).unwrap_or_default().to_string();
        last.insert(job, (failed, error));
    }
    let mut s = Status { jobs: 0, done: 0, failed: 0, pending: 0, complete: cube.is_consolidated(), failures: vec![] };
    for job in plan.jobs() {
        s.jobs += 1;
        if done.contains(&(job.t, job.iy, job.ix)) {
            s.done += 1;
        } else if let Some((true, error)) = last.get(&job) {
            s.failed += 1;
            s.failures.push((job, error.clone()));
        } else {
            s.pending += 1;
        }
    }
    Ok(s)
}

/// The stored spec lacks the run-only fields ([`CubeSpec::identity_json`]); put defaults back.
fn with_run_fields(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(m) = v.as_object_mut() {
        m.entry("workers").or_insert(serde_json::json!(1));
        m.entry("out").or_insert(serde_json::Value::Null);
    }
    v
}
