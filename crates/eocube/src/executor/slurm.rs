//! The Slurm executor: a run's tasks as Slurm job arrays whose every task runs `eocube worker`.
//!
//! Owns: the sbatch script, splitting at the cluster's `MaxArraySize`, submitting with `sbatch`,
//! watching the tasks (`squeue` for the live ones, `scontrol show job` for each that ended),
//! stopping them with `scancel`, and turning what Slurm says of an ended task into a [`TaskEnd`]. Must not touch: retries, timeouts and the
//! classification of failures (the scheduler above every executor does those) or what a task
//! computes (the worker, [`crate::worker::run_stored_task`]).
//!
//! The tasks run this same binary (`--worker-bin` for a cluster's own install), so nothing is
//! shipped but the run folder in the cube. A task's result is its result file in the cube; its
//! exit code only says whether one was written. One poll is one `squeue` of every live array
//! (pending tasks come back as one range per array, so its output grows with the tasks running,
//! not with the array), then one `scontrol show job ARRAY_TASK` per task that left the queue since
//! the last poll, for its exit code. Accounting (`sacct`) is not needed: `scontrol` keeps ended
//! tasks for the cluster's `MinJobAge` (300 s by default), and the executor polls far more often.
//! A task Slurm has forgotten before it was seen to end is lost (and retried).
//!
//! The worker's environment is the submitter's (`sbatch` exports it by default): credentials stay
//! in the environment and never enter a script or the cube.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::process::Command;
use tokio::sync::mpsc;

use super::array::{ArrayJob, EXIT_PERMANENT, ranges_text};
use super::scheduler::{Executor, ExecutorError, TaskEnd, TaskEvent};
use crate::store::Cube;
use crate::worker;

/// How the tasks are submitted (`eocube build --executor slurm`).
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmOptions {
    /// `--partition`; the cluster's default when `None`.
    pub partition: Option<String>,
    /// `--time` of every task, in Slurm's forms (`30`, `1:00:00`, `1-0`).
    pub time: Option<String>,
    /// `--mem` of every task (`4G`).
    pub mem: Option<String>,
    /// More `sbatch` options, each one argument (`--account=geo`, `--qos=low`).
    pub sbatch_args: Vec<String>,
    /// The eocube binary on the nodes; this process's own binary when `None`.
    pub worker_bin: Option<PathBuf>,
    /// Where the scripts and the task logs go: a folder every node can write. Default
    /// `eocube-slurm/<run id>` under the current directory.
    pub log_dir: Option<PathBuf>,
    /// How often the tasks are looked at.
    pub poll: Duration,
}

impl Default for SlurmOptions {
    fn default() -> Self {
        SlurmOptions {
            partition: None,
            time: None,
            mem: None,
            sbatch_args: Vec::new(),
            worker_bin: None,
            log_dir: None,
            poll: Duration::from_secs(1),
        }
    }
}

/// One submitted Slurm array: the tasks `offset + i` for its array indices `i`.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub job_id: String,
    pub offset: u32,
    /// The run's task indices it holds (global, not Slurm's).
    pub indices: Vec<u32>,
    pub script: PathBuf,
}

/// One part of an array job that fits the cluster's `MaxArraySize`.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Added to `SLURM_ARRAY_TASK_ID` (the worker's `--index-offset`).
    pub offset: u32,
    /// Global task indices, all in `offset..offset + max_array_size`.
    pub indices: Vec<u32>,
}

/// Splits `indices` (sorted) into parts whose array indices are below `max_array_size` (Slurm
/// refuses an index >= `MaxArraySize`).
pub fn split(indices: &[u32], max_array_size: u32) -> Vec<Part> {
    let size = max_array_size.max(1);
    let mut parts: Vec<Part> = Vec::new();
    for &i in indices {
        let offset = i - i % size;
        match parts.last_mut() {
            Some(p) if p.offset == offset => p.indices.push(i),
            _ => parts.push(Part { offset, indices: vec![i] }),
        }
    }
    parts
}

/// The `--array` value of a part: ranges of array indices, then `%P`.
pub fn array_spec(part: &Part, max_parallel: u32) -> String {
    let local: Vec<u32> = part.indices.iter().map(|i| i - part.offset).collect();
    let mut spec = ranges_text(&local);
    if max_parallel > 0 {
        let _ = write!(spec, "%{max_parallel}");
    }
    spec
}

/// Single-quoted for bash.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The sbatch script of one part. Options on `#SBATCH` lines so the script alone says how it
/// was run; `opts.sbatch_args` go on the command line (they may hold spaces).
pub fn batch_script(job: &ArrayJob, part: &Part, opts: &SlurmOptions, log_dir: &Path, workdir: &Path) -> String {
    let mut s = String::from("#!/bin/bash\n");
    let _ = writeln!(s, "#SBATCH --job-name={}", job.name);
    let _ = writeln!(s, "#SBATCH --array={}", array_spec(part, job.max_parallel));
    let _ = writeln!(s, "#SBATCH --output={}/%A_%a.log", log_dir.display());
    let _ = writeln!(s, "#SBATCH --chdir={}", workdir.display());
    // One worker is one process: its CPU work is sized to the cores it is given.
    s.push_str("#SBATCH --ntasks=1\n");
    for (flag, value) in [("partition", &opts.partition), ("time", &opts.time), ("mem", &opts.mem)] {
        if let Some(v) = value {
            let _ = writeln!(s, "#SBATCH --{flag}={v}");
        }
    }
    s.push_str("# Written by eocube; every task runs one task of the run (exit 0 done, 75 retry, 65 permanent).\n");
    s.push_str("set -u\n");
    for (k, v) in &job.env {
        let _ = writeln!(s, "export {k}={}", quote(v));
    }
    let mut cmd: Vec<String> = job.command.iter().map(|a| quote(a)).collect();
    if part.offset > 0 {
        cmd.push("--index-offset".into());
        cmd.push(part.offset.to_string());
    }
    let _ = writeln!(s, "exec {}", cmd.join(" "));
    s
}

/// What `scontrol -o show job` says of one record of an array.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The array index, or `None` for a record of several pending tasks (`3-5%2`).
    pub array_index: Option<u32>,
    pub state: String,
    /// The exit code and the signal (`ExitCode=75:0`).
    pub exit_code: i32,
    pub signal: i32,
    pub reason: String,
}

/// Parses `scontrol -o show job <array id>`: one line per record.
pub fn parse_records(text: &str) -> Vec<Record> {
    text.lines()
        .filter(|l| l.contains("JobState="))
        .map(|line| {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
                    .unwrap_or("")
                    .to_string()
            };
            let exit = field("ExitCode");
            let (code, signal) = exit.split_once(':').unwrap_or((&exit, "0"));
            Record {
                array_index: field("ArrayTaskId").parse().ok(),
                state: field("JobState"),
                exit_code: code.parse().unwrap_or(-1),
                signal: signal.parse().unwrap_or(0),
                reason: field("Reason"),
            }
        })
        .collect()
}

/// What `squeue -h -o "%F|%K|%T"` says of the live tasks: per array job id, the tasks it
/// lists one by one (array index -> state) and the pending ranges (`4-7%2`, `3,5-9`).
#[derive(Debug, Default, PartialEq)]
pub struct Queue {
    pub tasks: BTreeMap<(String, u32), String>,
    pub pending: BTreeMap<String, Vec<std::ops::RangeInclusive<u32>>>,
}

impl Queue {
    /// The state of task `index` of array `job_id`, if it is still queued or running.
    pub fn state(&self, job_id: &str, index: u32) -> Option<&str> {
        if let Some(s) = self.tasks.get(&(job_id.to_string(), index)) {
            return Some(s);
        }
        let pending = self.pending.get(job_id)?.iter().any(|r| r.contains(&index));
        pending.then_some("PENDING")
    }
}

/// Parses the output of `squeue -h -o "%F|%K|%T"`. Lines it does not understand are skipped:
/// a task missing from the queue is then looked up with `scontrol`, never assumed done.
pub fn parse_queue(text: &str) -> Queue {
    let mut q = Queue::default();
    for line in text.lines() {
        let mut fields = line.trim().split('|');
        let (Some(job), Some(task), Some(state)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let job = job.trim().to_string();
        if let Ok(i) = task.trim().parse::<u32>() {
            q.tasks.insert((job, i), state.trim().to_string());
            continue;
        }
        // A record of several pending tasks: `2-7%2`, `[3,5-9]` on some versions.
        let spec = task.trim().trim_start_matches('[').trim_end_matches(']');
        let spec = spec.split_once('%').map_or(spec, |(r, _)| r);
        for part in spec.split(',') {
            let range = match part.split_once('-') {
                Some((a, b)) => a.parse().ok().zip(b.parse().ok()).map(|(a, b)| a..=b),
                None => part.parse().ok().map(|a| a..=a),
            };
            if let Some(r) = range {
                q.pending.entry(job.clone()).or_default().push(r);
            }
        }
    }
    q
}

/// How Slurm sees a task.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Waiting,
    Running,
    /// Ended: `exited` when the worker itself ended (its exit code is its word), else killed,
    /// timed out, out of memory, its node failed.
    Ended {
        exited: bool,
        exit_code: i32,
        what: String,
    },
}

/// A record's state as [`Seen`].
pub fn seen(r: &Record) -> Seen {
    // JobState may carry a suffix on some versions (`CANCELLED+`, `CANCELLED by 0`).
    let state = r.state.trim_end_matches('+');
    match state {
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD" | "SUSPENDED" => {
            Seen::Waiting
        }
        "RUNNING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" | "RESIZING" => Seen::Running,
        "COMPLETED" | "FAILED" if r.signal == 0 => {
            Seen::Ended { exited: true, exit_code: r.exit_code, what: format!("exited with code {}", r.exit_code) }
        }
        other => Seen::Ended {
            exited: false,
            exit_code: r.exit_code,
            what: if r.signal != 0 { format!("{other} (signal {})", r.signal) } else { other.to_string() },
        },
    }
}

/// Runs a run's tasks on Slurm.
pub struct SlurmExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    opts: SlurmOptions,
    cube: Arc<Cube>,
    run: String,
    /// The worker command without its index.
    command: Vec<String>,
    max_parallel: u32,
    log_dir: PathBuf,
    workdir: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    arrays: Vec<Submitted>,
    /// Attempts launched and not seen to end: index -> array job id.
    live: BTreeMap<u32, String>,
    started: HashSet<u32>,
    /// Submissions so far, for script names.
    submissions: usize,
    poller: Option<tokio::task::JoinHandle<()>>,
    max_array_size: Option<u32>,
}

impl SlurmExecutor {
    /// Tasks of run `run` of `cube` (whose location the workers open as `out`), at most
    /// `max_parallel` at once (0: as many as Slurm gives).
    pub fn new(
        cube: Arc<Cube>,
        out: &str,
        run: &str,
        max_parallel: u32,
        opts: SlurmOptions,
    ) -> Result<SlurmExecutor, ExecutorError> {
        let io =
            |what: &str, e: std::io::Error| ExecutorError::Engine { executor: "slurm", reason: format!("{what}: {e}") };
        let workdir = std::env::current_dir().map_err(|e| io("the current directory", e))?;
        let bin = match &opts.worker_bin {
            Some(b) => b.clone(),
            None => std::env::current_exe().map_err(|e| io("this program's path (set `worker-bin`)", e))?,
        };
        let log_dir = match &opts.log_dir {
            Some(d) => workdir.join(d),
            None => workdir.join("eocube-slurm").join(run),
        };
        let command =
            vec![bin.display().to_string(), "worker".into(), out.to_string(), "--run".into(), run.to_string()];
        Ok(SlurmExecutor {
            inner: Arc::new(Inner {
                opts,
                cube,
                run: run.to_string(),
                command,
                max_parallel,
                log_dir,
                workdir,
                state: Mutex::default(),
            }),
        })
    }

    /// The arrays submitted so far (`--detach` prints them).
    pub fn submitted(&self) -> Vec<Submitted> {
        self.inner.state().arrays.clone()
    }

    /// Where the task logs are.
    pub fn log_dir(&self) -> &Path {
        &self.inner.log_dir
    }
}

/// Starts a Slurm command and waits for it.
async fn output(program: &str, args: &[String]) -> Result<std::process::Output, ExecutorError> {
    Command::new(program).args(args).stdin(std::process::Stdio::null()).output().await.map_err(|e| {
        ExecutorError::Engine {
            executor: "slurm",
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                format!("`{program}` is not on PATH: run eocube on a Slurm login node, or use the local executor")
            } else {
                format!("`{program}` could not start: {e}")
            },
        }
    })
}

/// Runs a Slurm command; its stdout, or an error with its stderr.
async fn slurm(program: &str, args: &[String]) -> Result<String, ExecutorError> {
    let out = output(program, args).await?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(ExecutorError::Engine {
            executor: "slurm",
            reason: format!(
                "`{program} {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// The live tasks of the arrays `job_ids`. Slurm answers "Invalid job id" when it knows none of
/// them (all ended and purged): an empty queue, whose tasks are then looked up one by one.
async fn queue(job_ids: &[String]) -> Result<Queue, ExecutorError> {
    let args = ["-h".to_string(), "-j".into(), job_ids.join(","), "-o".into(), "%F|%K|%T".into()];
    let out = output("squeue", &args).await?;
    if out.status.success() {
        return Ok(parse_queue(&String::from_utf8_lossy(&out.stdout)));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Invalid job id") {
        return Ok(Queue::default());
    }
    Err(ExecutorError::Engine { executor: "slurm", reason: format!("squeue: {}", stderr.trim()) })
}

/// What `scontrol show job` says of one array or one task of it (`ID_INDEX`): its records, or
/// that the controller no longer knows it (`None`). Slurm's commands tell that only in words (`Invalid job id specified`);
/// any other failure (a busy or restarting controller) is an error, and the array is looked at
/// again next time.
async fn show_job(job_id: &str) -> Result<Option<Vec<Record>>, ExecutorError> {
    let args = ["-o".to_string(), "show".into(), "job".into(), job_id.to_string()];
    let out = output("scontrol", &args).await?;
    if out.status.success() {
        return Ok(Some(parse_records(&String::from_utf8_lossy(&out.stdout))));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Invalid job id") {
        return Ok(None);
    }
    Err(ExecutorError::Engine { executor: "slurm", reason: format!("scontrol show job {job_id}: {}", stderr.trim()) })
}

/// The cluster's `MaxArraySize`.
pub async fn max_array_size() -> Result<u32, ExecutorError> {
    let text = slurm("scontrol", &["show".into(), "config".into()]).await?;
    Ok(text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "MaxArraySize").then(|| v.trim().parse().ok()).flatten()
        })
        // Slurm's documented default.
        .unwrap_or(1001))
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log_path(&self, array: &Submitted, index: u32) -> PathBuf {
        self.log_dir.join(format!("{}_{}.log", array.job_id, index - array.offset))
    }

    /// Looks at every live task once; sends what changed.
    async fn poll_once(&self, events: &mpsc::UnboundedSender<TaskEvent>) {
        let arrays: Vec<Submitted> = {
            let st = self.state();
            let live: HashSet<&String> = st.live.values().collect();
            st.arrays.iter().filter(|a| live.contains(&a.job_id)).cloned().collect()
        };
        if arrays.is_empty() {
            return;
        }
        let ids: Vec<String> = arrays.iter().map(|a| a.job_id.clone()).collect();
        // A busy or restarting controller: look again next time.
        let Ok(queue) = queue(&ids).await else { return };
        for array in arrays {
            for &index in &array.indices {
                if self.state().live.get(&index) != Some(&array.job_id) {
                    continue;
                }
                let task = index - array.offset;
                let queued = queue.state(&array.job_id, task).map(|state| {
                    seen(&Record {
                        array_index: Some(task),
                        state: state.into(),
                        exit_code: 0,
                        signal: 0,
                        reason: "".into(),
                    })
                });
                let now = match queued {
                    Some(live @ (Seen::Running | Seen::Waiting)) => Some(live),
                    // Left the queue (or is leaving it): its record says how it ended.
                    _ => match show_job(&format!("{}_{task}", array.job_id)).await {
                        Ok(Some(records)) => records.iter().find(|r| r.array_index == Some(task)).map(seen),
                        Ok(None) => None,
                        Err(_) => continue,
                    },
                };
                match now {
                    Some(Seen::Running) => {
                        if self.state().started.insert(index) {
                            let _ = events.send(TaskEvent::Started { index });
                        }
                    }
                    Some(Seen::Waiting) => {}
                    ended => self.end(index, &array, ended, events).await,
                }
            }
        }
    }

    /// Task `index` of `array` has ended (`None`: Slurm no longer knows it).
    async fn end(&self, index: u32, array: &Submitted, seen: Option<Seen>, events: &mpsc::UnboundedSender<TaskEvent>) {
        {
            let mut st = self.state();
            st.live.remove(&index);
            if st.started.insert(index) {
                let _ = events.send(TaskEvent::Started { index });
            }
            st.started.remove(&index);
        }
        let log = self.log_path(array, index);
        let end = match seen {
            Some(Seen::Ended { exited: true, exit_code, what }) => {
                match worker::read_result(&self.cube, &self.run, index).await {
                    Ok(Some(result)) => TaskEnd::Result(result),
                    Ok(None) => TaskEnd::Lost {
                        reason: format!(
                            "Slurm task {}_{} {what} without a result (log: {})",
                            array.job_id,
                            index - array.offset,
                            log.display()
                        ),
                        transient: exit_code != EXIT_PERMANENT,
                    },
                    Err(e) => TaskEnd::Lost { reason: format!("its result cannot be read: {e}"), transient: true },
                }
            }
            Some(Seen::Ended { what, .. }) => TaskEnd::Lost {
                reason: format!(
                    "Slurm task {}_{} ended {what} (log: {})",
                    array.job_id,
                    index - array.offset,
                    log.display()
                ),
                transient: true,
            },
            _ => TaskEnd::Lost {
                reason: format!(
                    "Slurm forgot task {}_{} before it was seen to end (log: {})",
                    array.job_id,
                    index - array.offset,
                    log.display()
                ),
                transient: true,
            },
        };
        let _ = events.send(TaskEvent::Ended { index, end });
    }
}

#[async_trait]
impl Executor for SlurmExecutor {
    fn name(&self) -> &'static str {
        "slurm"
    }

    async fn launch(&self, mut tasks: Vec<u32>, events: mpsc::UnboundedSender<TaskEvent>) -> Result<(), ExecutorError> {
        let inner = &self.inner;
        tasks.sort_unstable();
        tasks.dedup();
        let cached = inner.state().max_array_size;
        let max = match cached {
            Some(m) => m,
            None => {
                let m = max_array_size().await?;
                inner.state().max_array_size = Some(m);
                m
            }
        };
        let io = |what: String, e: std::io::Error| ExecutorError::Engine {
            executor: "slurm",
            reason: format!("{what}: {e}"),
        };
        tokio::fs::create_dir_all(&inner.log_dir)
            .await
            .map_err(|e| io(format!("cannot create the log folder {}", inner.log_dir.display()), e))?;
        let job = ArrayJob {
            name: format!("eocube-{}", inner.run),
            command: inner.command.clone(),
            indices: tasks.clone(),
            max_parallel: inner.max_parallel,
            env: Vec::new(),
        };
        for part in split(&job.indices, max) {
            let n = {
                let mut st = inner.state();
                st.submissions += 1;
                st.submissions
            };
            let script = inner.log_dir.join(format!("submit-{n}.sbatch"));
            let text = batch_script(&job, &part, &inner.opts, &inner.log_dir, &inner.workdir);
            tokio::fs::write(&script, text).await.map_err(|e| io(format!("cannot write {}", script.display()), e))?;
            let mut args = vec!["--parsable".to_string()];
            args.extend(inner.opts.sbatch_args.iter().cloned());
            args.push(script.display().to_string());
            let out = slurm("sbatch", &args).await?;
            // `--parsable`: `<job id>` or `<job id>;<cluster>`.
            let job_id = out.trim().split(';').next().unwrap_or("").to_string();
            if job_id.is_empty() || !job_id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ExecutorError::Engine {
                    executor: "slurm",
                    reason: format!("sbatch answered {:?}, not a job id", out.trim()),
                });
            }
            let mut st = inner.state();
            for &i in &part.indices {
                st.live.insert(i, job_id.clone());
                st.started.remove(&i);
            }
            st.arrays.push(Submitted { job_id, offset: part.offset, indices: part.indices, script });
        }
        let mut st = inner.state();
        if st.poller.is_none() {
            let me = Arc::clone(inner);
            st.poller = Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(me.opts.poll);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    me.poll_once(&events).await;
                    if events.is_closed() {
                        break;
                    }
                }
            }));
        }
        Ok(())
    }

    async fn cancel(&self, index: u32) -> Result<(), ExecutorError> {
        let target = {
            let st = self.inner.state();
            st.live.get(&index).and_then(|id| st.arrays.iter().rev().find(|a| &a.job_id == id)).cloned()
        };
        if let Some(array) = target {
            slurm("scancel", &[format!("{}_{}", array.job_id, index - array.offset)]).await?;
        }
        Ok(())
    }

    async fn shutdown(&self) {
        let (ids, poller) = {
            let mut st = self.inner.state();
            let ids: Vec<String> = st.live.values().cloned().collect::<HashSet<_>>().into_iter().collect();
            st.live.clear();
            (ids, st.poller.take())
        };
        if let Some(p) = poller {
            p.abort();
        }
        if !ids.is_empty() {
            let _ = slurm("scancel", &ids).await;
        }
    }
}

impl Drop for SlurmExecutor {
    fn drop(&mut self) {
        if let Some(p) = self.inner.state().poller.take() {
            p.abort();
        }
    }
}

#[cfg(test)]
mod tests;
