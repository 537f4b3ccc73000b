//! The worker: one task of a run, wherever it runs (DESIGN section 9). A run is stored in the
//! cube under `_eocube/runs/<run-id>/`:
//!
//! ```text
//! run.json          the spec, the run settings a worker needs, jobs per task, task count
//! jobs.json         the run's jobs in task order: task i holds jobs[i*K .. (i+1)*K]
//! fork.bin          Icechunk only: the session every worker writes into (no credentials)
//! results/<i>.json  what task i did: one record (and receipt) per job, written by the worker
//! ```
//!
//! The local executor calls [`run_task`] in-process; `eocube worker` calls [`run_stored_task`]
//! in a process of its own (a Slurm array task, a Kubernetes pod, a Batch child), which finds
//! its index with [`task_index`], writes its result file and exits with a code from
//! [`crate::executor::array`].
//!
//! Owns: the run folder's layout, a task's jobs and their per-attempt timeout, the task's result
//! and its exit status. Must not touch: retries across attempts, the ledger and publishing (the
//! scheduler's and `collect`'s), or what a job computes (`job`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::catalog::{ApiOptions, Catalog};
use crate::cloud::retries;
use crate::cog::{FetchConfig, Fetcher};
use crate::executor::array::{EXIT_DONE, EXIT_PERMANENT, EXIT_RETRY};
use crate::executor::{JobRecord, Outcome};
use crate::job::{self, JobContext};
use crate::plan::{Job, Plan};
use crate::spec::CubeSpec;
use crate::store::icechunk::IcechunkStore;
use crate::store::{Cube, OutLocation, Receipt, StoreError};

/// Where runs live, under the cube's bookkeeping folder.
const RUNS: &str = "runs";

/// The environment variables an engine sets to a task's index, in the order they are tried.
pub const INDEX_VARIABLES: [&str; 4] =
    ["EOCUBE_TASK_INDEX", "SLURM_ARRAY_TASK_ID", "AWS_BATCH_JOB_ARRAY_INDEX", "JOB_COMPLETION_INDEX"];

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(
        "no task index: give one (`index`), or run under an engine that sets one of {}",
        INDEX_VARIABLES.join(", ")
    )]
    NoIndex,
    #[error("{variable}={value:?} is not a task index (a whole number from 0)")]
    BadIndex { variable: String, value: String },
    #[error("task {index} is not in run {run}: it has {tasks} tasks (0..={last})", last = tasks.saturating_sub(1))]
    IndexOutOfRange { run: String, index: u32, tasks: u32 },
    #[error("run {run} is not in {location}: {reason}; `eocube status {location}` lists its runs")]
    NoRun { location: String, run: String, reason: String },
    #[error("run {run} in {location}: {what} is damaged ({reason}); start the build again to write a new run")]
    Damaged { location: String, run: String, what: String, reason: String },
    #[error("run {run}: its stored spec cannot be planned ({reason})")]
    Plan { run: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WorkerError {
    /// Whether another attempt may succeed (the store was unreachable, throttled, ...).
    pub fn is_transient(&self) -> bool {
        matches!(self, WorkerError::Store(e) if e.is_transient())
    }
}

/// What a worker needs to know about its run, besides the jobs (`run.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub id: String,
    /// When the run was written, RFC 3339 UTC.
    pub created: String,
    /// Who runs its tasks: `local`, `slurm`, ...
    pub executor: String,
    /// The spec (its identity: only what determines the cube's bytes).
    pub spec: serde_json::Value,
    pub jobs: usize,
    pub jobs_per_task: usize,
    pub tasks: u32,
    /// One attempt of one job, in seconds; a task's bound is this times its jobs.
    pub job_timeout_seconds: f64,
    /// The silence bound of every request the workers make for their inputs (the build's
    /// `--request-timeout`); `None` in runs written before it was stored: the worker's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_seconds: Option<f64>,
    pub skip_bad_scenes: bool,
    /// A build in which no job finds a scene may publish its cube of fill (`allow-empty`);
    /// `eocube collect` of a detached run follows it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_empty: bool,
    /// Memory each task is given, in MB, when the engine fixes it (Lambda's function memory,
    /// what it bills by); the run report prices the run with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
}

impl RunRecord {
    /// The jobs of task `index` in `jobs` (the run's ordered list).
    pub fn task_jobs<'a>(&self, jobs: &'a [Job], index: u32) -> &'a [Job] {
        let k = self.jobs_per_task.max(1);
        let start = (index as usize).saturating_mul(k).min(jobs.len());
        &jobs[start..(start + k).min(jobs.len())]
    }

    /// The bound on one attempt of a task of `jobs` jobs.
    pub fn task_timeout(&self, jobs: usize) -> Duration {
        Duration::from_secs_f64(self.job_timeout_seconds.max(0.001) * jobs.max(1) as f64)
    }
}

/// A run as stored: its record and its ordered jobs.
#[derive(Debug, Clone)]
pub struct StoredRun {
    pub record: RunRecord,
    pub jobs: Vec<Job>,
}

/// Who runs this process, for the job records: the engine's name for it when it has one
/// (Lambda's log stream, the Slurm array task, the Batch job, the Kubernetes pod), else
/// `host:pid`. `env` reads a variable (`|k| std::env::var(k).ok()`).
pub fn worker_id(env: impl Fn(&str) -> Option<String>) -> String {
    let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if let Some(stream) = var("AWS_LAMBDA_LOG_STREAM_NAME") {
        return format!("lambda:{stream}");
    }
    if let Some(job) = var("SLURM_JOB_ID") {
        return match var("SLURM_ARRAY_TASK_ID") {
            Some(task) => format!("slurm:{job}_{task}"),
            None => format!("slurm:{job}"),
        };
    }
    if let Some(job) = var("AWS_BATCH_JOB_ID") {
        return format!("batch:{job}");
    }
    // A pod's HOSTNAME is its name; elsewhere a shell may set HOSTNAME to something stale.
    if var("KUBERNETES_SERVICE_HOST").is_some()
        && let Some(pod) = var("HOSTNAME")
    {
        return format!("pod:{pod}");
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| var("HOSTNAME"))
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// The peak resident memory of this process so far, in MB (`VmHWM` of /proc/self/status);
/// `None` off Linux or when unreadable.
pub fn peak_rss_mb() -> Option<f64> {
    parse_vm_hwm(&std::fs::read_to_string("/proc/self/status").ok()?)
}

fn parse_vm_hwm(status: &str) -> Option<f64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let kb: f64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}

/// Now, as Unix seconds (the job records' clock).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// A new run id: the time and the process, sortable.
pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as i64;
    let stamp = chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.format("%Y%m%dT%H%M%S").to_string())
        .unwrap_or_else(|| secs.to_string());
    format!("{stamp}-{:04x}", (crate::unit_random() * 65536.0) as u32)
}

fn run_key(run: &str, file: &str) -> String {
    format!("{RUNS}/{run}/{file}")
}

fn result_key(run: &str, index: u32) -> String {
    run_key(run, &format!("results/{index}.json"))
}

/// Writes run `record` with its `jobs` (and, when the store has one, the fork workers write
/// into) into `cube`. The record goes last: a run whose `run.json` exists is whole.
pub async fn write_run(cube: &Cube, record: &RunRecord, jobs: &[Job], with_fork: bool) -> Result<(), WorkerError> {
    let store = cube.store();
    let json = |what: &str, v: &dyn erased::Json| {
        v.to_bytes().map_err(|e| WorkerError::Damaged {
            location: cube.location().to_string(),
            run: record.id.clone(),
            what: what.to_string(),
            reason: e.to_string(),
        })
    };
    let list: Vec<[usize; 3]> = jobs.iter().map(|j| [j.t, j.iy, j.ix]).collect();
    store.files().put(&run_key(&record.id, "jobs.json"), json("jobs.json", &list)?).await?;
    if with_fork && let Some(base) = store.worker_base().await? {
        store.files().put(&run_key(&record.id, "fork.bin"), Bytes::from(base)).await?;
    }
    store.files().put(&run_key(&record.id, "run.json"), json("run.json", record)?).await?;
    Ok(())
}

/// JSON for the run folder without a generic closure per type.
mod erased {
    pub trait Json {
        fn to_bytes(&self) -> serde_json::Result<bytes::Bytes>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_bytes(&self) -> serde_json::Result<bytes::Bytes> {
            serde_json::to_vec(self).map(bytes::Bytes::from)
        }
    }
}

/// Reads run `run` of `cube`.
pub async fn read_run(cube: &Cube, run: &str) -> Result<StoredRun, WorkerError> {
    let location = cube.location().to_string();
    let store = cube.store();
    let missing = |what: &str| WorkerError::NoRun {
        location: location.clone(),
        run: run.to_string(),
        reason: format!("{what} is missing"),
    };
    let damaged = |what: &str, e: serde_json::Error| WorkerError::Damaged {
        location: location.clone(),
        run: run.to_string(),
        what: what.to_string(),
        reason: e.to_string(),
    };
    let bytes = store.files().get(&run_key(run, "run.json")).await?.ok_or_else(|| missing("run.json"))?;
    let record: RunRecord = serde_json::from_slice(&bytes).map_err(|e| damaged("run.json", e))?;
    let bytes = store.files().get(&run_key(run, "jobs.json")).await?.ok_or_else(|| missing("jobs.json"))?;
    let list: Vec<[usize; 3]> = serde_json::from_slice(&bytes).map_err(|e| damaged("jobs.json", e))?;
    let jobs: Vec<Job> = list.into_iter().map(|[t, iy, ix]| Job { t, iy, ix }).collect();
    if jobs.len() != record.jobs {
        return Err(WorkerError::Damaged {
            location,
            run: run.to_string(),
            what: "jobs.json".into(),
            reason: format!("{} jobs listed, run.json says {}", jobs.len(), record.jobs),
        });
    }
    Ok(StoredRun { record, jobs })
}

/// The runs of `cube`, oldest first.
pub async fn list_runs(cube: &Cube) -> Result<Vec<String>, WorkerError> {
    let files = cube.store().files().list(&format!("{RUNS}/")).await?;
    let mut runs: Vec<String> = files
        .iter()
        .filter_map(|f| f.strip_prefix(&format!("{RUNS}/"))?.strip_suffix("/run.json").map(str::to_string))
        .collect();
    runs.sort();
    Ok(runs)
}

/// How one task attempt ended, as its exit code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskExit {
    /// Every job of the task is done.
    Done,
    /// A job failed in a way another attempt may fix.
    Retry,
    /// A job failed in a way no attempt can fix (the other jobs of the task still ran).
    Permanent,
}

impl TaskExit {
    pub fn code(self) -> i32 {
        match self {
            TaskExit::Done => EXIT_DONE,
            TaskExit::Retry => EXIT_RETRY,
            TaskExit::Permanent => EXIT_PERMANENT,
        }
    }
}

/// One job's part of a task result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobResult {
    pub record: JobRecord,
    /// Present when the job is done: what the coordinator records for its chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
    /// A failed job's failure is worth another attempt.
    #[serde(default)]
    pub transient: bool,
}

/// What one attempt of one task did (`results/<index>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    pub index: u32,
    pub exit: TaskExit,
    pub jobs: Vec<JobResult>,
}

impl TaskResult {
    fn of(index: u32, jobs: Vec<JobResult>) -> TaskResult {
        let failed = || jobs.iter().filter(|j| j.record.outcome == Outcome::Failed);
        let exit = if failed().next().is_none() {
            TaskExit::Done
        } else if failed().any(|j| j.transient) {
            TaskExit::Retry
        } else {
            TaskExit::Permanent
        };
        TaskResult { index, exit, jobs }
    }

    /// A task attempt that failed before any job ran (the run could not be read, ...).
    pub fn failed_before_jobs(index: u32, jobs: &[Job], error: &str, transient: bool) -> TaskResult {
        let jobs = jobs
            .iter()
            .map(|&job| JobResult { record: JobRecord::failed(job, error.to_string(), 0.0), receipt: None, transient })
            .collect();
        TaskResult::of(index, jobs)
    }
}

/// Runs the jobs of one task, each at most `timeout`, skipping those in `done`: every job not
/// skipped ends in a [`JobResult`]. A failing job does not stop the others.
pub async fn run_task(
    ctx: &JobContext,
    cube: &Arc<Cube>,
    index: u32,
    jobs: &[Job],
    done: &BTreeSet<Job>,
    timeout: Duration,
) -> TaskResult {
    let mut results = Vec::with_capacity(jobs.len());
    let todo: Vec<Job> = jobs.iter().filter(|j| !done.contains(j)).copied().collect();
    // The bins of one chunk search the catalog once; a failed joint search leaves each job to
    // search (and fail or retry) by itself.
    let t_search = Instant::now();
    // The first job's span starts with the task, so the timeline shows the joint search too.
    let mut task_start = Some(unix_now());
    let (found, mut search_retries) =
        retries::counted(tokio::time::timeout(timeout, job::search_bins(ctx, &todo))).await;
    let found = match found {
        Ok(Ok(found)) => found,
        _ => None,
    };
    let mut shared_search = found.as_ref().map(|_| t_search.elapsed().as_secs_f64());
    let worker = worker_id(|k| std::env::var(k).ok());
    for &job in &todo {
        let t0 = Instant::now();
        let started = task_start.take().unwrap_or_else(unix_now);
        let (result, request_retries) =
            retries::counted(tokio::time::timeout(timeout, job::run_with(ctx, cube, job, found.as_deref()))).await;
        let result = match result {
            Ok(Ok((mut stats, receipt))) => {
                if let Some(seconds) = shared_search.take() {
                    stats.searches = 1;
                    stats.search_seconds += seconds;
                }
                JobResult {
                    record: JobRecord::done(job, stats, t0.elapsed().as_secs_f64()),
                    receipt: Some(receipt),
                    transient: false,
                }
            }
            Ok(Err(e)) => JobResult {
                record: JobRecord::failed(job, crate::error_chain(&e), t0.elapsed().as_secs_f64()),
                receipt: None,
                transient: e.is_transient(),
            },
            Err(_) => JobResult {
                record: JobRecord::failed(
                    job,
                    format!(
                        "timed out after {} s; raise `timeout` if jobs are slow rather than stuck",
                        timeout.as_secs_f64()
                    ),
                    t0.elapsed().as_secs_f64(),
                ),
                receipt: None,
                transient: true,
            },
        };
        let mut result = result;
        // The joint search's failed attempts are the first job's, as its time is.
        result.record.request_retries = request_retries + std::mem::take(&mut search_retries);
        result.record.worker = Some(worker.clone());
        result.record.started = Some(started);
        result.record.ended = Some(unix_now());
        result.record.peak_rss_mb = peak_rss_mb();
        results.push(result);
    }
    TaskResult::of(index, results)
}

/// The task index of this process: `--index` if given, else the first of [`INDEX_VARIABLES`]
/// set, plus `offset` (engines whose arrays must be split start each part at 0).
pub fn task_index(given: Option<u32>, offset: u32, env: impl Fn(&str) -> Option<String>) -> Result<u32, WorkerError> {
    let base = match given {
        Some(i) => i,
        None => {
            let (variable, value) = INDEX_VARIABLES
                .iter()
                .find_map(|v| env(v).filter(|s| !s.trim().is_empty()).map(|s| (v.to_string(), s)))
                .ok_or(WorkerError::NoIndex)?;
            value.trim().parse().map_err(|_| WorkerError::BadIndex { variable, value })?
        }
    };
    base.checked_add(offset).ok_or(WorkerError::BadIndex { variable: "index-offset".into(), value: offset.to_string() })
}

/// Opens the cube at `loc` the way a worker of run `run` writes it: plain Zarr as it is;
/// Icechunk through the run's fork (so the coordinator's commit takes the chunks).
pub async fn open_for_worker(loc: &OutLocation, run: &str) -> Result<Arc<Cube>, WorkerError> {
    let cube = match loc {
        OutLocation::Icechunk(_) => {
            let base =
                IcechunkStore::read_file(loc, &run_key(run, "fork.bin")).await?.ok_or_else(|| WorkerError::NoRun {
                    location: loc.to_string(),
                    run: run.to_string(),
                    reason: "fork.bin is missing (was the run written by a build with a remote executor?)".into(),
                })?;
            Cube::from_store(Arc::new(IcechunkStore::for_worker(loc, &base)?)).await?
        }
        _ => Cube::open(loc.to_string()).await?,
    };
    Ok(Arc::new(cube))
}

/// What `eocube worker` needs besides the location and run.
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    pub fetch: FetchConfig,
}

/// `eocube worker`: runs task `index` of run `run` of the cube at `loc`, writes its result file
/// and returns it (the exit code is [`TaskExit::code`] of its `exit`). An error means no result
/// could be written; [`WorkerError::is_transient`] says whether to retry.
pub async fn run_stored_task(
    loc: &OutLocation,
    run: &str,
    index: u32,
    opts: &WorkerOptions,
) -> Result<TaskResult, WorkerError> {
    let cube = open_for_worker(loc, run).await?;
    let stored = read_run(&cube, run).await?;
    let rec = &stored.record;
    if index >= rec.tasks {
        return Err(WorkerError::IndexOutOfRange { run: run.to_string(), index, tasks: rec.tasks });
    }
    let jobs = rec.task_jobs(&stored.jobs, index);
    let spec: CubeSpec = serde_json::from_value(rec.spec.clone())
        .map_err(|e| WorkerError::Plan { run: run.to_string(), reason: e.to_string() })?;
    // The job list is the run's: the land test was the coordinator's, so every chunk is "land".
    let plan = Plan::new(&spec, &|| Ok(Box::new(|_, _| true)))
        .map_err(|e| WorkerError::Plan { run: run.to_string(), reason: e.to_string() })?;
    let previous = read_result(&cube, run, index).await.ok().flatten();
    // Jobs an earlier attempt of this task finished keep their results; the rest run again.
    let mut kept: Vec<JobResult> = previous
        .into_iter()
        .flat_map(|r| r.jobs)
        .filter(|j| j.record.outcome == Outcome::Done && jobs.contains(&j.record.job))
        .collect();
    let mut done: BTreeSet<Job> = kept.iter().map(|j| j.record.job).collect();
    if !matches!(loc, OutLocation::Icechunk(_)) {
        done.extend(cube.done_jobs().await?.into_iter().filter(|j| jobs.contains(j)));
    }
    // The build's silence bound, for the inputs (the cube was opened with this process's).
    let mut fetch = opts.fetch.clone();
    if let Some(t) = rec.request_timeout_seconds.and_then(|s| Duration::try_from_secs_f64(s).ok()) {
        fetch.request_timeout = t;
    }
    let catalog = match &spec.items {
        Some(path) => Catalog::file(path),
        None => Catalog::api_with(&spec.stac_url, ApiOptions::from_client(&fetch.client())),
    }
    .map_err(|e| WorkerError::Plan { run: run.to_string(), reason: e.to_string() })?;
    // The coordinator checked the token API; a worker fetches its own tokens as it goes.
    fetch.signer = crate::build::sas_signer(&spec, &fetch, false)
        .await
        .map_err(|e| WorkerError::Plan { run: run.to_string(), reason: e.to_string() })?;
    let ctx = JobContext::new(Arc::new(plan), catalog, Fetcher::new(fetch), rec.skip_bad_scenes);
    let mut result = run_task(&ctx, &cube, index, jobs, &done, rec.task_timeout(1)).await;
    kept.append(&mut result.jobs);
    let result = TaskResult::of(index, kept);
    write_result(&cube, run, &result).await?;
    Ok(result)
}

/// Writes the result of a task attempt (replacing an earlier attempt's).
pub async fn write_result(cube: &Cube, run: &str, result: &TaskResult) -> Result<(), WorkerError> {
    let bytes = serde_json::to_vec(result).map(Bytes::from).map_err(|e| WorkerError::Damaged {
        location: cube.location().to_string(),
        run: run.to_string(),
        what: format!("the result of task {}", result.index),
        reason: e.to_string(),
    })?;
    cube.store().files().put(&result_key(run, result.index), bytes).await?;
    Ok(())
}

/// The result file of task `index`, if its worker wrote one.
pub async fn read_result(cube: &Cube, run: &str, index: u32) -> Result<Option<TaskResult>, WorkerError> {
    let Some(bytes) = cube.store().files().get(&result_key(run, index)).await? else { return Ok(None) };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| WorkerError::Damaged {
        location: cube.location().to_string(),
        run: run.to_string(),
        what: format!("results/{index}.json"),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn index_comes_from_the_flag_then_each_engine_variable_plus_offset() {
        assert_eq!(task_index(Some(3), 0, env(&[("SLURM_ARRAY_TASK_ID", "9")])).unwrap(), 3);
        for var in INDEX_VARIABLES {
            assert_eq!(task_index(None, 0, env(&[(var, "7")])).unwrap(), 7, "{var}");
            assert_eq!(task_index(None, 1000, env(&[(var, "7")])).unwrap(), 1007, "{var}");
        }
        assert_eq!(task_index(None, 0, env(&[("JOB_COMPLETION_INDEX", "2"), ("EOCUBE_TASK_INDEX", "5")])).unwrap(), 5);
        assert!(matches!(task_index(None, 0, env(&[])), Err(WorkerError::NoIndex)));
        let e = task_index(None, 0, env(&[("SLURM_ARRAY_TASK_ID", "x1")])).unwrap_err();
        assert!(e.to_string().contains("SLURM_ARRAY_TASK_ID"), "{e}");
        assert!(task_index(Some(u32::MAX), 1, env(&[])).is_err());
    }

    #[test]
    fn the_worker_id_is_the_engine_name_for_the_process_else_host_and_pid() {
        let lambda = [("AWS_LAMBDA_LOG_STREAM_NAME", "2026/12/01/[$LATEST]abc"), ("SLURM_JOB_ID", "9")];
        assert_eq!(worker_id(env(&lambda)), "lambda:2026/12/01/[$LATEST]abc");
        assert_eq!(worker_id(env(&[("SLURM_JOB_ID", "41"), ("SLURM_ARRAY_TASK_ID", "3")])), "slurm:41_3");
        assert_eq!(worker_id(env(&[("SLURM_JOB_ID", "41")])), "slurm:41");
        assert_eq!(worker_id(env(&[("AWS_BATCH_JOB_ID", "j-1:7")])), "batch:j-1:7");
        let pod = [("KUBERNETES_SERVICE_HOST", "10.0.0.1"), ("HOSTNAME", "eocube-r-7-x2")];
        assert_eq!(worker_id(env(&pod)), "pod:eocube-r-7-x2");
        let local = worker_id(env(&[("HOSTNAME", "stale")]));
        assert!(local.ends_with(&format!(":{}", std::process::id())), "{local}");
    }

    #[test]
    fn peak_memory_is_vm_hwm_in_mb() {
        assert_eq!(parse_vm_hwm("Name:\tx\nVmPeak:\t 9 kB\nVmHWM:\t  262144 kB\n"), Some(256.0));
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
        if cfg!(target_os = "linux") {
            assert!(peak_rss_mb().is_some_and(|m| m > 0.0));
        }
    }

    #[test]
    fn tasks_take_consecutive_jobs_and_the_last_may_be_short() {
        let rec = RunRecord {
            id: "r".into(),
            created: String::new(),
            executor: "local".into(),
            spec: serde_json::json!({}),
            jobs: 5,
            jobs_per_task: 2,
            tasks: 3,
            job_timeout_seconds: 10.0,
            request_timeout_seconds: None,
            skip_bad_scenes: false,
            allow_empty: false,
            memory_mb: None,
        };
        let jobs: Vec<Job> = (0..5).map(|t| Job { t, iy: 0, ix: 0 }).collect();
        assert_eq!(rec.task_jobs(&jobs, 0), &jobs[0..2]);
        assert_eq!(rec.task_jobs(&jobs, 2), &jobs[4..5]);
        assert!(rec.task_jobs(&jobs, 3).is_empty());
        assert_eq!(rec.task_timeout(2), Duration::from_secs(20));
    }

    #[test]
    fn a_task_exit_is_permanent_only_when_no_failure_is_transient() {
        let job = Job { t: 0, iy: 0, ix: 0 };
        let failed =
            |transient| JobResult { record: JobRecord::failed(job, "x".into(), 0.0), receipt: None, transient };
        let done = JobResult {
            record: JobRecord::done(job, Default::default(), 0.0),
            receipt: Some(Receipt::Stored),
            transient: false,
        };
        assert_eq!(TaskResult::of(0, vec![done.clone()]).exit, TaskExit::Done);
        assert_eq!(TaskResult::of(0, vec![]).exit, TaskExit::Done);
        assert_eq!(TaskResult::of(0, vec![done.clone(), failed(false)]).exit, TaskExit::Permanent);
        assert_eq!(TaskResult::of(0, vec![failed(false), failed(true)]).exit, TaskExit::Retry);
        assert_eq!(TaskExit::Retry.code(), EXIT_RETRY);
        assert_eq!(TaskExit::Permanent.code(), EXIT_PERMANENT);
        let back: TaskResult =
            serde_json::from_slice(&serde_json::to_vec(&TaskResult::of(4, vec![done, failed(true)])).unwrap()).unwrap();
        assert_eq!(back.index, 4);
        assert_eq!(back.jobs.len(), 2);
        assert!(matches!(back.jobs[0].receipt, Some(Receipt::Stored)));
    }
}
