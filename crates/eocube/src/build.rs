//! A whole build, start to finish (DESIGN section 1): check the catalog answers, plan, create the
//! cube's template (or reopen it to resume), run the jobs, and when every job is done write the
//! consolidated metadata that makes the cube complete. `eocube build` and `eocube demo` both
//! come through here.
//!
//! Owns: the order of those steps and the refusals that must come before any work (no output
//! path, a dead catalog, an output holding another cube). Must not touch: what a job computes,
//! how jobs are scheduled, or the store's byte layout.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::catalog::probe::{Probe, ProbeError};
use crate::catalog::{Catalog, CatalogError, SearchRequest};
use crate::cog::{FetchConfig, Fetcher};
#[cfg(feature = "batch")]
use crate::executor::batch::BatchOptions;
#[cfg(feature = "kubernetes")]
use crate::executor::kubernetes::KubernetesOptions;
use crate::executor::slurm::{SlurmExecutor, SlurmOptions};
use crate::executor::{self, Executor, ExecutorError, LocalExecutor, Observer, Pending, RunOptions, Summary, Watcher};
use crate::job::JobContext;
use crate::plan::{Job, LandTest, Plan, PlanError, PlanSummary};
use crate::pyramid::{PyramidError, PyramidOptions, PyramidSummary};
use crate::spec::CubeSpec;
use crate::store::{Cube, CubeLayout, IcechunkOptions, LocationError, OutLocation, StoreError, ZarrFormat};
use crate::time::days_since_epoch;
use crate::worker::{self, RunRecord, StoredRun, WorkerError};

/// How a build runs (not what it makes: that is the [`CubeSpec`]).
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Where the cube goes (`--out`): a path or URL ([`OutLocation::parse`]).
    pub out: Option<String>,
    pub run: RunOptions,
    /// Who runs the tasks.
    pub executor: ExecutorChoice,
    /// Jobs each task runs (`--jobs-per-task`); 1 unless an engine's per-task start-up is dear.
    pub jobs_per_task: usize,
    pub skip_bad_scenes: bool,
    /// Publish the cube even when no job found a scene (`allow-empty`): a cube of fill. Without
    /// it such a build is refused before any job when the catalog holds nothing for it, and left
    /// unpublished, with an error, when its jobs found nothing.
    pub allow_empty: bool,
    /// Who is told how the run goes (the CLI's progress bar); nobody by default.
    pub watcher: Watcher,
    pub fetch: FetchConfig,
    /// Submit the tasks and return without waiting (`--detach`): `eocube collect` finishes.
    pub detach: bool,
}

/// Who runs a build's tasks (`--executor`).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ExecutorChoice {
    /// This process ([`LocalExecutor`]), [`RunOptions::workers`] tasks at once.
    #[default]
    Local,
    /// Slurm job arrays ([`SlurmExecutor`]), at most `max_parallel` tasks at once (0: no limit).
    Slurm { opts: SlurmOptions, max_parallel: u32 },
    /// Kubernetes Indexed Jobs through kubectl, or their manifests written to a file.
    #[cfg(feature = "kubernetes")]
    Kubernetes { opts: KubernetesOptions, remote: Remote },
    /// AWS Batch array jobs through the AWS SDK, or their SubmitJob requests written to a file.
    #[cfg(feature = "batch")]
    Batch { opts: BatchOptions, remote: Remote },
    /// One AWS Lambda invocation per task attempt (the function is this binary).
    #[cfg(feature = "lambda")]
    Lambda { opts: crate::executor::lambda::LambdaOptions },
}

/// What every container engine is given besides its own options.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    /// The eocube command inside the image (`eocube` on its PATH by default).
    pub worker_bin: String,
    /// Tasks at once (0: as many as the engine gives).
    pub max_parallel: u32,
    /// Write what would be submitted here and submit nothing (`--emit FILE`).
    pub emit: Option<PathBuf>,
}

impl ExecutorChoice {
    /// The tasks run in containers, which see only what they mount.
    pub fn in_containers(&self) -> bool {
        match self {
            ExecutorChoice::Local | ExecutorChoice::Slurm { .. } => false,
            #[cfg(feature = "kubernetes")]
            ExecutorChoice::Kubernetes { .. } => true,
            #[cfg(feature = "batch")]
            ExecutorChoice::Batch { .. } => true,
            #[cfg(feature = "lambda")]
            ExecutorChoice::Lambda { .. } => true,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ExecutorChoice::Local => "local",
            ExecutorChoice::Slurm { .. } => "slurm",
            #[cfg(feature = "kubernetes")]
            ExecutorChoice::Kubernetes { .. } => "kubernetes",
            #[cfg(feature = "batch")]
            ExecutorChoice::Batch { .. } => "batch",
            #[cfg(feature = "lambda")]
            ExecutorChoice::Lambda { .. } => "lambda",
        }
    }
}

/// A build whose tasks were submitted and left running (`--detach`), or written to a file for
/// someone else to submit (`--emit`).
#[derive(Debug, Clone)]
pub struct Detached {
    pub run: String,
    pub executor: &'static str,
    /// The engine's ids of what was submitted (Slurm array job ids); empty when emitted.
    pub engine_jobs: Vec<String>,
    /// Where the engine writes the task logs (Slurm), or the file written (`--emit`).
    pub path: PathBuf,
    /// Emitted, not submitted.
    pub emitted: bool,
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
    /// The tasks were submitted and not waited for.
    pub detached: Option<Detached>,
    /// What the engine says it did ([`Executor::summary`]).
    pub engine: Option<String>,
    /// The overview pyramid, when asked for (`--overviews`) and the build completed.
    pub pyramid: Option<PyramidSummary>,
    /// Every job is done and none found a scene with data: the cube is all fill. Unless
    /// `allow-empty`, it is not published (`complete` is false).
    pub empty: Option<Empty>,
    /// What the catalog probe found wanting but `allow-empty` let pass.
    pub warnings: Vec<String>,
}

/// A build whose jobs found no scene with data on the cube: every chunk is fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Empty {
    pub jobs: usize,
    /// Scenes the catalog returned to the jobs (each counted once per job).
    pub scenes_found: usize,
}

impl std::fmt::Display for Empty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.scenes_found == 0 {
            write!(f, "0 scenes found in {} jobs", self.jobs)
        } else {
            write!(f, "{} scenes found in {} jobs, none with data on the cube's chunks", self.scenes_found, self.jobs)
        }
    }
}

/// Why a build did not start or did not finish. Variants about one setting start their message
/// with its name (see [`BuildError::setting`]).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("out is missing: give where to write the cube, e.g. cube.zarr")]
    NoOutput,
    // The inner errors are fields, not `source`s: their text is already in the message, and the
    // CLI prints the source chain, which would repeat it.
    #[error("stac-url {url}: {error}")]
    Catalog { url: String, error: CatalogError },
    #[error("items {path}: {error}")]
    Items { path: PathBuf, error: CatalogError },
    #[error("sas-token-url {url}: {error}")]
    SasToken { url: String, error: CatalogError },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("out {path}: {error}")]
    Store { path: PathBuf, error: Box<StoreError> },
    #[error("out {}: {error}", path.display())]
    Executor { path: PathBuf, error: Box<ExecutorError> },
    #[error("out {}: {error}", path.display())]
    Run { path: PathBuf, error: Box<WorkerError> },
    #[error("out {}: overviews: {error}", path.display())]
    Pyramid { path: PathBuf, error: Box<PyramidError> },
    #[error("end {given}: {reason}")]
    End { given: String, reason: String },
    #[error(
        "detach with the local executor: local tasks run in this process; choose the slurm, kubernetes or \
         batch executor, or do not detach"
    )]
    DetachLocal,
    #[error(
        "out {out}: a relative path cannot be used with the {executor} executor: the tasks run in containers; \
         give s3://..., icechunk+s3://..., or an absolute path that every container mounts"
    )]
    RelativeOut { out: String, executor: &'static str },
    /// `out` is not a location eocube can write to (the message names it and the forms).
    #[error(transparent)]
    Location(#[from] LocationError),
    /// The catalog holds nothing for the build, or nothing it can read (checked before any job).
    #[error(transparent)]
    Probe(Box<ProbeError>),
    /// The AWS profile named in the environment cannot be used (for `s3://` inputs).
    #[error("AWS settings for s3:// inputs: {reason}")]
    AwsSettings { reason: String },
}

impl BuildError {
    /// The setting this error is about, when it is about one: its message then starts with the
    /// setting's name, which a front end may respell (the CLI writes `--out`).
    pub fn setting(&self) -> Option<&'static str> {
        match self {
            BuildError::NoOutput
            | BuildError::Store { .. }
            | BuildError::Executor { .. }
            | BuildError::Run { .. }
            | BuildError::Pyramid { .. }
            | BuildError::RelativeOut { .. }
            | BuildError::Location(_) => Some("out"),
            BuildError::Catalog { .. } => Some("stac-url"),
            BuildError::Items { .. } => Some("items"),
            BuildError::SasToken { .. } => Some("sas-token-url"),
            BuildError::End { .. } => Some("end"),
            BuildError::DetachLocal => Some("detach"),
            BuildError::Plan(PlanError::Spec(e)) => Some(e.setting),
            BuildError::Probe(e) => e.setting(),
            BuildError::Plan(_) | BuildError::AwsSettings { .. } => None,
        }
    }
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

/// The signer of the COG requests of `spec` (Planetary Computer: SAS tokens of its collection),
/// or `None`. With `check`, one token is fetched now, so that a wrong `sas-token-url` fails the
/// build before anything is written rather than every job.
pub async fn sas_signer(
    spec: &CubeSpec,
    fetch: &crate::cog::FetchConfig,
    check: bool,
) -> Result<Option<crate::cloud::sign::Signer>, BuildError> {
    let Some(url) = &spec.sas_token_url else { return Ok(None) };
    let bad = |error| BuildError::SasToken { url: url.clone(), error };
    let signer = crate::catalog::sas::SasSigner::new(url, &spec.collection, fetch.total_timeout).map_err(bad)?;
    if check {
        signer.token().await.map_err(bad)?;
    }
    Ok(Some(crate::cloud::sign::Signer(Arc::new(signer))))
}

/// Looks at the catalog before anything is written ([`crate::catalog::probe`]): one search over
/// the whole bbox and dates must find items of the collection with every band. A catalog holding
/// nothing for the build is an error unless `allow_empty`, which turns it into a warning.
pub async fn probe_catalog(spec: &CubeSpec, catalog: &Catalog, allow_empty: bool) -> Result<Vec<String>, BuildError> {
    let day = |d: crate::time::Date| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    let (Some(start), Some(end)) = (day(spec.start), day(spec.end)) else { return Ok(Vec::new()) };
    // A job's window is its bins' solar days: up to 12 h either side of the UTC dates.
    let mut search = SearchRequest::new(
        &[spec.collection.as_str()],
        start - chrono::TimeDelta::hours(12),
        end + chrono::TimeDelta::hours(36),
    );
    search.bbox = Some(spec.bbox);
    search.max_cloud_cover = spec.cloud_cover_max;
    let mut bands = spec.bands.clone();
    bands.push(crate::job::quality_band(spec).to_string());
    let probe = Probe { search, bands, dates: format!("{} to {}", spec.start, spec.end) };
    match crate::catalog::probe::probe(catalog, &probe).await {
        Ok(_) => Ok(Vec::new()),
        Err(e) if allow_empty && e.is_nothing() => Ok(vec![e.to_string()]),
        Err(ProbeError::Catalog(error)) => Err(match &spec.items {
            Some(path) => BuildError::Items { path: path.clone(), error },
            None => BuildError::Catalog { url: spec.stac_url.clone(), error },
        }),
        Err(e) => Err(BuildError::Probe(Box::new(e))),
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
        values: crate::store::DataValues::of(&spec.reducer, spec.with_count)
            .of_sensor(&spec.collection, &spec.bands)
            .with_indices(spec.index_variables()),
    }
}

/// Creates the cube at `out` (a local path, `file://` or `s3://bucket/prefix`: see
/// [`OutLocation::parse`]), or reopens it when it holds the same cube (resume). Refuses an
/// output that holds anything else, an unknown or unsupported scheme, a missing bucket, refused
/// credentials or an unreachable endpoint, without touching it.
pub async fn create_or_resume(out: impl AsRef<OsStr>, plan: &Plan) -> Result<(Cube, bool), BuildError> {
    create_or_resume_with(out, plan, &IcechunkOptions::default()).await
}

/// [`create_or_resume`] with the branch options of an Icechunk output (`icechunk://`,
/// `icechunk+s3://`; ignored for plain Zarr): the build runs on a build branch and the target
/// branch moves only when every job is done (`src/store/icechunk.rs`).
pub async fn create_or_resume_with(
    out: impl AsRef<OsStr>,
    plan: &Plan,
    icechunk: &IcechunkOptions,
) -> Result<(Cube, bool), BuildError> {
    let out = out.as_ref();
    let store = |error| BuildError::Store { path: PathBuf::from(out), error: Box::new(error) };
    let loc = OutLocation::parse(out)?;
    Cube::create_or_open(&loc, &layout(plan), icechunk).await.map_err(store)
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
    build_with_overviews(spec, opts, icechunk, None, is_land, stop).await
}

/// [`build_with`], and with `overviews` the overview pyramid ([`crate::pyramid::Builder`]),
/// built tile by tile as the jobs below each tile are recorded and finished once every job is
/// done, before the cube is published: an Icechunk build publishes cube and pyramid in one
/// commit, a plain one lists the pyramid in its consolidated metadata.
pub async fn build_with_overviews(
    spec: &CubeSpec,
    opts: &BuildOptions,
    icechunk: &IcechunkOptions,
    overviews: Option<&PyramidOptions>,
    is_land: LandTest<'_>,
    stop: impl Future<Output = ()>,
) -> Result<BuildReport, BuildError> {
    let out_arg = opts.out.as_deref().ok_or(BuildError::NoOutput)?;
    let out = PathBuf::from(out_arg);
    if opts.detach && opts.executor == ExecutorChoice::Local {
        return Err(BuildError::DetachLocal);
    }
    if opts.executor.in_containers()
        && let Ok(OutLocation::Local(p)) = OutLocation::parse(out_arg)
        && !p.is_absolute()
    {
        return Err(BuildError::RelativeOut { out: out_arg.to_string(), executor: opts.executor.name() });
    }
    // A profile named in the environment must be usable before any job starts: otherwise every
    // s3:// href would fail alike (or, with --skip-bad-scenes, be skipped).
    let named = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    if named("AWS_PROFILE") || named("AWS_DEFAULT_PROFILE") {
        opts.fetch.check_s3_settings().map_err(|reason| BuildError::AwsSettings { reason })?;
    }
    let catalog = open_catalog(spec).await?;
    let plan = Arc::new(Plan::new(spec, is_land)?);
    let warnings = probe_catalog(spec, &catalog, opts.allow_empty).await?;
    let mut fetch = opts.fetch.clone();
    fetch.signer = sas_signer(spec, &fetch, true).await?;
    let (cube, resumed) = create_or_resume_with(&out, &plan, icechunk).await?;
    let cube = Arc::new(cube);
    let store = |error| BuildError::Store { path: out.clone(), error: Box::new(error) };
    let done = cube.done_jobs().await.map_err(store)?;
    let jobs: Vec<Job> = plan.jobs().filter(|j| !done.contains(j)).collect();
    let already_done = plan.job_count() - jobs.len();
    let run = Arc::new(new_run(spec, opts, jobs));
    let remote = !matches!(opts.executor, ExecutorChoice::Local);
    worker::write_run(&cube, &run.record, &run.jobs, remote).await.map_err(|e| worker_err(&out, e))?;
    let mut ctx = JobContext::new(Arc::clone(&plan), catalog, Fetcher::new(fetch), opts.skip_bad_scenes);
    if opts.executor == ExecutorChoice::Local {
        // The bins of a chunk run back to back here (jobs are chunk-major): one search each.
        ctx = ctx.share_searches(&run.jobs);
    }
    let engine = |error| BuildError::Executor { path: out.clone(), error: Box::new(error) };
    let tasks: Vec<u32> = (0..run.record.tasks).collect();
    let executor = match start_executor(opts, ctx, &cube, &run, out_arg, tasks.clone()).await? {
        Started::Wait(executor) => executor,
        Started::Detached(detached) => {
            let summary =
                Summary { jobs: plan.job_count(), already_done, not_run: run.jobs.len(), ..Default::default() };
            return Ok(BuildReport {
                out,
                plan: plan.summary(),
                resumed,
                summary,
                complete: false,
                detached: Some(detached),
                engine: None,
                pyramid: None,
                empty: None,
                warnings,
            });
        }
    };
    // The pyramid grows beside the jobs: a tile once the chunks below it are recorded.
    let pyramid_err = |e| BuildError::Pyramid { path: out.clone(), error: Box::new(e) };
    let builder = match overviews {
        Some(p) => Some(crate::pyramid::Builder::start(&cube, p, &run.jobs).await.map_err(pyramid_err)?),
        None => None,
    };
    let watcher = match &builder {
        Some(b) => opts.watcher.clone().and(Watcher::new(PyramidFeed(b.feed()))),
        None => opts.watcher.clone(),
    };
    let summary =
        executor::run(&*executor, Pending { run: &run, tasks, already_done }, &cube, &opts.run, &watcher, stop)
            .await
            .map_err(engine)?;
    let mut complete = summary.complete();
    let empty = if complete { emptiness(&cube, &summary, &done).await.map_err(store)? } else { None };
    if empty.is_some() && !opts.allow_empty {
        // Nothing to show: the jobs stay recorded (a rerun with `allow-empty` publishes at
        // once), the target is left as it was.
        complete = false;
    }
    let mut pyramid = None;
    if complete {
        if let Some(b) = builder {
            // Icechunk: the jobs' chunks in a checkpoint of their own, so the final commit,
            // the one that publishes, is the one that lists the levels.
            cube.checkpoint().await.map_err(store)?;
            pyramid = Some(b.finish().await.map_err(pyramid_err)?);
        }
        cube.finish().await.map_err(store)?;
    } else {
        // The tiles written so far stay unlisted; the next build rewrites them.
        drop(builder);
        // Icechunk: commit the jobs done since the last checkpoint to the build branch.
        cube.checkpoint().await.map_err(store)?;
    }
    let engine = executor.summary();
    Ok(BuildReport {
        out,
        plan: plan.summary(),
        resumed,
        summary,
        complete,
        detached: None,
        engine,
        pyramid,
        empty,
        warnings,
    })
}

/// Whether a build whose every job is done found no scene with data: this run's jobs by its
/// summary, the jobs done before (`done_before`) by their lines in the run report.
async fn emptiness(cube: &Cube, summary: &Summary, done_before: &BTreeSet<Job>) -> Result<Option<Empty>, StoreError> {
    let (mut found, mut used) = (summary.scenes_found, summary.scenes);
    if !done_before.is_empty() {
        let counts = scene_counts(&cube.report().await?, done_before);
        if counts.unknown > 0 {
            return Ok(None);
        }
        found += counts.found;
        used += counts.used;
    }
    Ok((used == 0).then_some(Empty { jobs: summary.jobs, scenes_found: found }))
}

/// Scenes over the last done record of each job of a run report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SceneCounts {
    found: usize,
    /// Scenes with data.
    used: usize,
    /// Jobs without a done record: a kill between the ledger and the report can leave a done job
    /// without its line, so nothing is known about its scenes and no build is called empty.
    unknown: usize,
}

/// The [`SceneCounts`] of `jobs` in the run report `lines`.
fn scene_counts(lines: &[serde_json::Value], jobs: &BTreeSet<Job>) -> SceneCounts {
    let mut last: std::collections::HashMap<Job, (usize, usize)> = Default::default();
    for r in lines {
        let Some(job) = r.get("job").and_then(|j| serde_json::from_value::<Job>(j.clone()).ok()) else { continue };
        if !jobs.contains(&job) || r.get("outcome").and_then(|o| o.as_str()) != Some("done") {
            continue;
        }
        let n = |k: &str| r.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0) as usize;
        last.insert(job, (n("scenes_found"), n("scenes")));
    }
    let (found, used) = last.values().fold((0, 0), |(f, u), (a, b)| (f + a, u + b));
    SceneCounts { found, used, unknown: jobs.len().saturating_sub(last.len()) }
}

/// Tells the pyramid builder which chunks are final: those of the jobs recorded done.
struct PyramidFeed(crate::pyramid::Feed);

impl Observer for PyramidFeed {
    fn recorded(&mut self, jobs: &[Job]) {
        self.0.chunks_final(jobs);
    }
}

/// An executor to wait for, or tasks that were left to the engine.
enum Started {
    Wait(Box<dyn Executor>),
    Detached(Detached),
}

/// The executor `opts` names for `run`; with `--detach` its tasks are submitted and left, with
/// `--emit` what would be submitted is written to a file.
async fn start_executor(
    opts: &BuildOptions,
    ctx: JobContext,
    cube: &Arc<Cube>,
    run: &Arc<StoredRun>,
    out: &str,
    tasks: Vec<u32>,
) -> Result<Started, BuildError> {
    let path = PathBuf::from(out);
    let engine = |error| BuildError::Executor { path: path.clone(), error: Box::new(error) };
    let id = run.record.id.clone();
    let detached = |executor: &'static str, engine_jobs: Vec<String>, path: PathBuf, emitted: bool| {
        Started::Detached(Detached { run: id.clone(), executor, engine_jobs, path, emitted })
    };
    match &opts.executor {
        ExecutorChoice::Local => {
            Ok(Started::Wait(Box::new(LocalExecutor::new(ctx, Arc::clone(cube), Arc::clone(run), opts.run.workers))))
        }
        ExecutorChoice::Slurm { opts: slurm, max_parallel } => {
            let ex = SlurmExecutor::new(Arc::clone(cube), out, &run.record.id, *max_parallel, slurm.clone())
                .map_err(engine)?;
            if !opts.detach {
                return Ok(Started::Wait(Box::new(ex)));
            }
            let (events, _) = tokio::sync::mpsc::unbounded_channel();
            ex.launch(tasks, events).await.map_err(engine)?;
            let ids = ex.submitted().into_iter().map(|s| s.job_id).collect();
            Ok(detached("slurm", ids, ex.log_dir().to_path_buf(), false))
        }
        #[cfg(feature = "kubernetes")]
        ExecutorChoice::Kubernetes { opts: k8s, remote } => {
            use crate::executor::kubernetes::{self, KubernetesExecutor};
            let job = remote_job(run, out, remote, tasks.clone(), true);
            let mut k8s = k8s.clone();
            let emit_err = |e: &dyn std::fmt::Display| {
                engine(ExecutorError::Engine { executor: "kubernetes", reason: e.to_string() })
            };
            if let Some(file) = &remote.emit {
                // Nobody watches emitted Jobs: Kubernetes retries each index itself.
                k8s.backoff_limit_per_index = opts.run.retries as i32;
                let jobs = kubernetes::manifests(&job, &k8s).map_err(|e| emit_err(&e))?;
                write_emitted(file, kubernetes::to_json(&jobs)).map_err(|e| emit_err(&e))?;
                return Ok(detached("kubernetes", Vec::new(), file.clone(), true));
            }
            // The scheduler retries (as new Jobs), with its backoff and its record of attempts.
            k8s.backoff_limit_per_index = 0;
            let results = crate::executor::remote::cube_results(Arc::clone(cube), run.record.id.clone());
            let ex = KubernetesExecutor::new(job, k8s, results).map_err(|e| emit_err(&e))?;
            finish_remote(opts, Box::new(ex), tasks, engine, detached).await
        }
        #[cfg(feature = "batch")]
        ExecutorChoice::Batch { opts: batch, remote } => {
            use crate::executor::batch::{self, BatchExecutor};
            let job = remote_job(run, out, remote, tasks.clone(), false);
            let mut batch = batch.clone();
            let emit_err =
                |e: &dyn std::fmt::Display| engine(ExecutorError::Engine { executor: "batch", reason: e.to_string() });
            if let Some(file) = &remote.emit {
                // Nobody watches emitted jobs: Batch retries each child itself (at most 10 attempts).
                batch.attempts = (opts.run.retries as i32 + 1).min(batch::MAX_ATTEMPTS);
                let requests = batch::requests(&job, &batch).map_err(|e| emit_err(&e))?;
                write_emitted(file, batch::to_json(&requests)).map_err(|e| emit_err(&e))?;
                return Ok(detached("batch", Vec::new(), file.clone(), true));
            }
            batch.attempts = 1;
            let results = crate::executor::remote::cube_results(Arc::clone(cube), run.record.id.clone());
            let ex = BatchExecutor::connect(job, batch, results).await.map_err(|e| emit_err(&e))?;
            finish_remote(opts, Box::new(ex), tasks, engine, detached).await
        }
        #[cfg(feature = "lambda")]
        ExecutorChoice::Lambda { opts: lambda } => {
            use crate::executor::lambda::LambdaExecutor;
            let results = crate::executor::remote::cube_results(Arc::clone(cube), run.record.id.clone());
            let ex = LambdaExecutor::connect(out, &run.record.id, lambda.clone(), results)
                .await
                .map_err(|e| engine(ExecutorError::Engine { executor: "lambda", reason: e.to_string() }))?;
            Ok(Started::Wait(Box::new(ex)))
        }
    }
}

/// The task array of a container engine: the image's eocube runs `eocube worker OUT --run ID`.
#[cfg(any(feature = "kubernetes", feature = "batch"))]
fn remote_job(
    run: &StoredRun,
    out: &str,
    remote: &Remote,
    indices: Vec<u32>,
    dns_name: bool,
) -> crate::executor::array::ArrayJob {
    let id = &run.record.id;
    crate::executor::array::ArrayJob {
        // Kubernetes names are lowercase DNS labels; a run id has a `T`.
        name: if dns_name { format!("eocube-{}", id.to_ascii_lowercase()) } else { format!("eocube-{id}") },
        command: vec![remote.worker_bin.clone(), "worker".into(), out.to_string(), "--run".into(), id.clone()],
        indices,
        max_parallel: remote.max_parallel,
        env: Vec::new(),
    }
}

/// Writes an emitted document, whole or not at all.
#[cfg(any(feature = "kubernetes", feature = "batch"))]
fn write_emitted(file: &Path, text: String) -> std::io::Result<()> {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, file)
}

/// A container engine's executor, waited for or (`--detach`) left running after launch.
#[cfg(any(feature = "kubernetes", feature = "batch"))]
async fn finish_remote(
    opts: &BuildOptions,
    ex: Box<dyn Executor>,
    tasks: Vec<u32>,
    engine: impl Fn(ExecutorError) -> BuildError,
    detached: impl Fn(&'static str, Vec<String>, PathBuf, bool) -> Started,
) -> Result<Started, BuildError> {
    if !opts.detach {
        return Ok(Started::Wait(ex));
    }
    let (events, _) = tokio::sync::mpsc::unbounded_channel();
    ex.launch(tasks, events).await.map_err(engine)?;
    Ok(detached(ex.name(), Vec::new(), PathBuf::new(), false))
}

fn worker_err(out: &Path, e: WorkerError) -> BuildError {
    match e {
        WorkerError::Store(error) => BuildError::Store { path: out.to_path_buf(), error: Box::new(error) },
        other => BuildError::Run { path: out.to_path_buf(), error: Box::new(other) },
    }
}

/// The run record of a build of `spec` with `jobs` still to do.
fn new_run(spec: &CubeSpec, opts: &BuildOptions, jobs: Vec<Job>) -> StoredRun {
    let per_task = opts.jobs_per_task.max(1);
    let record = RunRecord {
        id: worker::new_run_id(),
        created: crate::store::now_rfc3339(),
        executor: opts.executor.name().to_string(),
        spec: spec.identity_json(),
        jobs: jobs.len(),
        jobs_per_task: per_task,
        tasks: jobs.len().div_ceil(per_task) as u32,
        job_timeout_seconds: opts.run.timeout.as_secs_f64(),
        request_timeout_seconds: Some(opts.fetch.request_timeout.as_secs_f64()),
        skip_bad_scenes: opts.skip_bad_scenes,
        allow_empty: opts.allow_empty,
        memory_mb: None,
    };
    StoredRun { record, jobs }
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
    let store = |error| BuildError::Store { path: PathBuf::from(out), error: Box::new(error) };
    let loc = OutLocation::parse(out)?;
    // A repository: the finished cube on the branch (an unfinished extend is found by its spec).
    let cube = Cube::open_branch(&loc, &icechunk.branch, false).await.map_err(store)?;
    let old = stored_spec(&cube, out)?;
    if new_end < old.end {
        return Err(BuildError::End {
            given: new_end.to_string(),
            reason: format!("the cube already ends on {}; give a later date (a cube never shrinks)", old.end),
        });
    }
    let mut spec = old.clone();
    spec.end = new_end;
    let mut opts = opts.clone();
    opts.out = Some(out.to_string());
    if let Some(w) = workers {
        opts.run.workers = w;
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
        cube.begin_extend(&layout(&plan), &|j: Job| j.t >= changed).await.map_err(store)?;
    }
    build_with(&spec, &opts, icechunk, is_land, stop).await
}

/// The spec stored in a cube, with the run-only fields put back.
fn stored_spec(cube: &Cube, out: &str) -> Result<CubeSpec, BuildError> {
    serde_json::from_value(cube.layout().attrs.clone()).map_err(|e| BuildError::Store {
        path: PathBuf::from(out),
        error: Box::new(StoreError::NotACube {
            path: PathBuf::from(out),
            reason: format!("its stored spec cannot be read ({e})"),
        }),
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
    /// Scenes the catalog returned to the done jobs, and those with data on a chunk.
    pub scenes_found: usize,
    pub scenes: usize,
    /// Every job is done and none found a scene with data: the cube is all fill (published only
    /// with `allow-empty`).
    pub empty: Option<Empty>,
    pub failures: Vec<(Job, String)>,
    /// The runs stored in the cube, oldest first.
    pub runs: Vec<RunStatus>,
}

/// One stored run: how far its tasks got, by their result files.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunStatus {
    pub id: String,
    pub created: String,
    pub executor: String,
    pub tasks: u32,
    pub jobs: usize,
    /// From the run's report lines: job attempts after the first, and failed request attempts
    /// sent again ([`crate::executor::JobRecord::request_retries`]).
    pub retries: u64,
    pub request_retries: u64,
}

/// The status of the cube at `out` (a local path or a URL, as for [`create_or_resume`]): its plan
/// is recomputed from the spec stored in it (the plan is deterministic), then compared with the
/// ledger and the run report.
/// In an Icechunk repository: the unfinished build for `branch` if there is one, else the cube on
/// `branch`.
pub async fn status(out: impl AsRef<OsStr>, branch: &str, is_land: LandTest<'_>) -> Result<Status, BuildError> {
    let path = Path::new(out.as_ref());
    let store = |error| BuildError::Store { path: path.to_path_buf(), error: Box::new(error) };
    let cube = Cube::open_branch(&OutLocation::parse(path)?, branch, true).await.map_err(store)?;
    let spec = stored_spec(&cube, &path.display().to_string())?;
    let plan = Plan::new(&spec, is_land)?;
    let done = cube.done_jobs().await.map_err(store)?;
    let mut last: std::collections::HashMap<Job, (bool, String)> = Default::default();
    let report = cube.report().await.map_err(store)?;
    let counts = scene_counts(&report, &done);
    let (scenes_found, scenes) = (counts.found, counts.used);
    let mut retries: std::collections::HashMap<String, (u64, u64)> = Default::default();
    for r in report {
        if let Some(run) = r.get("run").and_then(|v| v.as_str()) {
            let count = |k: &str| r.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            let sums = retries.entry(run.to_string()).or_default();
            sums.0 += count("retries");
            sums.1 += count("request_retries");
        }
        let Some(job) = r.get("job").and_then(|j| serde_json::from_value::<Job>(j.clone()).ok()) else {
            continue;
        };
        let failed = r.get("outcome").and_then(|o| o.as_str()) == Some("failed");
        let error = r.get("error").and_then(|e| e.as_str()).unwrap_or_default().to_string();
        last.insert(job, (failed, error));
    }
    let complete = cube.is_consolidated().await.map_err(store)?;
    let mut s = Status {
        jobs: 0,
        done: 0,
        failed: 0,
        pending: 0,
        complete,
        scenes_found,
        scenes,
        empty: None,
        failures: vec![],
        runs: vec![],
    };
    for job in plan.jobs() {
        s.jobs += 1;
        if done.contains(&job) {
            s.done += 1;
        } else if let Some((true, error)) = last.get(&job) {
            s.failed += 1;
            s.failures.push((job, error.clone()));
        } else {
            s.pending += 1;
        }
    }
    if s.jobs > 0 && s.done == s.jobs && scenes == 0 && counts.unknown == 0 {
        s.empty = Some(Empty { jobs: s.jobs, scenes_found });
    }
    for id in worker::list_runs(&cube).await.map_err(|e| worker_err(path, e))? {
        // A run whose files cannot be read is left out of the list, not an error of `status`.
        if let Ok(run) = worker::read_run(&cube, &id).await {
            let r = run.record;
            let (retries, request_retries) = retries.get(&id).copied().unwrap_or_default();
            s.runs.push(RunStatus {
                id,
                created: r.created,
                executor: r.executor,
                tasks: r.tasks,
                jobs: r.jobs,
                retries,
                request_retries,
            });
        }
    }
    Ok(s)
}

/// What `eocube collect` found and did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CollectReport {
    pub run: String,
    pub tasks: u32,
    /// Tasks with a result file.
    pub results: usize,
    /// Jobs newly recorded as done.
    pub recorded_done: usize,
    pub failed_jobs: usize,
    /// Tasks without a result file (never ran, still running, or killed).
    pub missing: Vec<u32>,
    /// Tasks whose result has a failed job.
    pub failed: Vec<u32>,
    /// Jobs of the plan not done after collecting.
    pub pending: usize,
    /// Every job is done and the cube is published.
    pub complete: bool,
    /// Every job is done and none found a scene with data; published only if the run allows it.
    pub empty: Option<Empty>,
}

/// Finished jobs recorded at once by `collect`.
const COLLECT_BATCH: usize = 512;

/// `eocube collect`: records the results of run `run` (default: the newest) of the cube at
/// `out`: done jobs into the ledger (and, in an Icechunk repository, their change sets into the
/// build branch), failed ones into the run report; publishes when every job of the plan is done
/// (Icechunk: the one guarded update of the target branch). Collecting twice records nothing new.
pub async fn collect(
    out: &str,
    run: Option<&str>,
    icechunk: &IcechunkOptions,
    is_land: LandTest<'_>,
) -> Result<CollectReport, BuildError> {
    let path = PathBuf::from(out);
    let store = |error| BuildError::Store { path: path.clone(), error: Box::new(error) };
    let loc = OutLocation::parse(out)?;
    let view = Cube::open_branch(&loc, &icechunk.branch, true).await.map_err(store)?;
    let spec = stored_spec(&view, out)?;
    let plan = Plan::new(&spec, is_land)?;
    let (cube, _) = create_or_resume_with(out, &plan, icechunk).await?;
    let run_id = match run {
        Some(r) => r.to_string(),
        None => {
            worker::list_runs(&cube).await.map_err(|e| worker_err(&path, e))?.pop().ok_or_else(|| BuildError::Run {
                path: path.clone(),
                error: Box::new(WorkerError::NoRun {
                    location: out.to_string(),
                    run: "(newest)".into(),
                    reason: "the cube holds no runs".into(),
                }),
            })?
        }
    };
    let stored = worker::read_run(&cube, &run_id).await.map_err(|e| worker_err(&path, e))?;
    let mut done = cube.done_jobs().await.map_err(store)?;
    // Scenes of the jobs recorded here are counted from their records: an Icechunk report lists
    // them only once committed.
    let done_before = done.clone();
    let (mut found_now, mut used_now) = (0, 0);
    let mut report = CollectReport {
        run: run_id.clone(),
        tasks: stored.record.tasks,
        results: 0,
        recorded_done: 0,
        failed_jobs: 0,
        missing: vec![],
        failed: vec![],
        pending: 0,
        complete: false,
        empty: None,
    };
    let mut batch = Vec::new();
    for index in 0..stored.record.tasks {
        let Some(result) = worker::read_result(&cube, &run_id, index).await.map_err(|e| worker_err(&path, e))? else {
            report.missing.push(index);
            continue;
        };
        report.results += 1;
        if result.exit != worker::TaskExit::Done {
            report.failed.push(index);
        }
        for j in result.jobs {
            let job = j.record.job;
            let is_done = j.record.outcome == executor::Outcome::Done;
            if is_done && done.contains(&job) {
                continue;
            }
            let line = serde_json::to_value(&j.record).map_err(|e| {
                store(StoreError::Record {
                    location: out.to_string(),
                    what: format!("job {job:?}"),
                    reason: e.to_string(),
                })
            })?;
            if is_done {
                done.insert(job);
                report.recorded_done += 1;
                found_now += j.record.stats.scenes_found;
                used_now += j.record.stats.scenes;
            } else {
                report.failed_jobs += 1;
            }
            batch.push(crate::store::Finished { job, receipt: if is_done { j.receipt } else { None }, record: line });
            if batch.len() >= COLLECT_BATCH {
                cube.record(std::mem::take(&mut batch)).await.map_err(store)?;
            }
        }
    }
    cube.record(batch).await.map_err(store)?;
    report.pending = plan.jobs().filter(|j| !done.contains(j)).count();
    if report.pending == 0 {
        let before = scene_counts(&cube.report().await.map_err(store)?, &done_before);
        if before.used + used_now == 0 && before.unknown == 0 {
            report.empty = Some(Empty { jobs: plan.job_count(), scenes_found: before.found + found_now });
        }
    }
    if report.pending == 0 && (report.empty.is_none() || stored.record.allow_empty) {
        cube.finish().await.map_err(store)?;
        report.complete = true;
    } else {
        cube.checkpoint().await.map_err(store)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_done_job_without_its_report_line_makes_the_scene_counts_unknown() {
        let (a, b) = (Job { t: 0, iy: 0, ix: 0 }, Job { t: 0, iy: 0, ix: 1 });
        let line = |job: Job, outcome: &str, found: u64, used: u64| serde_json::json!({"job": job, "outcome": outcome, "scenes_found": found, "scenes": used});
        let lines = vec![line(a, "failed", 0, 0), line(a, "done", 3, 2), line(b, "failed", 1, 0)];
        let jobs: BTreeSet<Job> = [a, b].into();
        assert_eq!(scene_counts(&lines, &jobs), SceneCounts { found: 3, used: 2, unknown: 1 });
        let only_a: BTreeSet<Job> = [a].into();
        assert_eq!(scene_counts(&lines, &only_a), SceneCounts { found: 3, used: 2, unknown: 0 });
    }
}
