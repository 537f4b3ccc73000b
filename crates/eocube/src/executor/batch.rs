//! The AWS Batch executor: a run's tasks as Batch array jobs, submitted and watched through the
//! AWS SDK.
//!
//! ```text
//! ArrayJob ─requests─▶ per contiguous range, arrays of 2..=10,000 children (one index: a plain job)
//!     launch: SubmitJob each ─▶ poller (every 5 s): DescribeJobs of the parents (status counts),
//!     ListJobs(arrayJobId, RUNNING | SUCCEEDED | FAILED) when a count moved
//!     ─▶ child index + offset = task index ─▶ its result file ─▶ TaskEvent
//! ```
//!
//! Each child runs the job definition's container with the command overridden to `eocube worker
//! ... --run ID` (plus `--index-offset K` for an array starting at K, or `--index N` for a plain
//! job) and finds its index in `AWS_BATCH_JOB_ARRAY_INDEX`. Batch retries a child itself, per
//! [`retry_strategy`]; when it gives up, the child's last result goes to the scheduler, which may
//! submit the task again under its own retry budget. `ArrayJob::max_parallel` has no Batch
//! counterpart: the compute environment's `maxvCpus` bounds how many children run at once.
//!
//! Job definitions of type `container` (EC2, Spot or Fargate) only: the command and environment
//! go in `containerOverrides`.
//!
//! Owns: the submit requests, their validation and the `--cli-input-json` form, and driving the
//! Batch API. Must not touch: retries across launches, time bounds and records (the scheduler's),
//! or what a task computes (the worker's).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_batch::Client;
use aws_sdk_batch::error::DisplayErrorContext;
use aws_sdk_batch::operation::submit_job::SubmitJobInput;
use aws_sdk_batch::types::{
    ArrayProperties, ContainerOverrides, EvaluateOnExit, JobStatus, JobSummary, JobTimeout, KeyValuePair, RetryAction,
    RetryStrategy,
};
use serde::Serialize;
use tokio::sync::mpsc;

use super::array::{ArrayJob, EXIT_PERMANENT, EXIT_RETRY};
use super::remote::{self, ResultReader};
use super::scheduler::{Executor, ExecutorError, TaskEnd, TaskEvent};

/// Most children of one array job (and the fewest: 2; one index is a plain job).
pub const MAX_ARRAY_SIZE: u32 = 10_000;
/// Batch takes 1..=10 attempts per job.
pub const MAX_ATTEMPTS: i32 = 10;
/// Batch's shortest attempt timeout.
pub const MIN_TIMEOUT_SECONDS: i32 = 60;
/// Longest job name.
const MAX_NAME: usize = 128;
/// How often the jobs are looked at.
pub const POLL: Duration = Duration::from_secs(5);
/// Consecutive failed looks (about a minute) before the poller gives the tasks up as lost.
const POLL_FAILURES: u32 = 12;
/// Looks in which a submitted job is missing from DescribeJobs before its tasks are lost.
const MISSING_POLLS: u32 = 3;
/// DescribeJobs takes at most this many ids per call.
const DESCRIBE_BATCH: usize = 100;

/// Where and how the jobs of a run are submitted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchOptions {
    /// Job queue name or ARN.
    pub job_queue: String,
    /// Job definition (`name`, `name:revision` or ARN) of type `container`, whose image has eocube.
    pub job_definition: String,
    /// Attempts of each child, 1..=10 (the first included).
    pub attempts: i32,
    /// Environment of every child besides `ArrayJob::env` (a name in both takes this value).
    /// Settings only: credentials come from the job role.
    pub env: Vec<(String, String)>,
    /// Bound of one attempt (`attemptDurationSeconds`, at least 60); Batch does not retry an
    /// attempt it stopped for this.
    pub timeout_seconds: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(
        "AWS Batch job name {name:?} is not valid: {problem}. A job name is letters, digits, '-' and '_', starts \
         with a letter or digit and has at most {MAX_NAME} characters, the `-<first index>` suffix included"
    )]
    BadName { name: String, problem: String },
    #[error("AWS Batch option {option}: {problem}")]
    BadOption { option: &'static str, problem: String },
    #[error(
        "no AWS credentials for AWS Batch ({reason}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
         AWS_PROFILE, or run with a role; or write the requests to a file (`emit`) and submit them with \
         `aws batch submit-job --cli-input-json` where credentials are"
    )]
    Credentials { reason: String },
    #[error(
        "no AWS region for AWS Batch: set AWS_REGION (or a region in the AWS profile), or write the requests to \
         a file (`emit`) and submit them with `aws batch submit-job --cli-input-json`"
    )]
    NoRegion,
    #[error("AWS Batch {operation} failed: {reason}")]
    Api { operation: &'static str, reason: String },
}

/// The retry strategy of every job. Batch tries the entries in order and the first that matches
/// decides (at most 5 entries); when none matches, it retries. AWS's own example ends on an
/// `onReason: "*"` catch-all for "exit for any other reason", which this follows:
///
/// 1. exit [`EXIT_PERMANENT`]: the worker says no attempt can help → EXIT;
/// 2. exit [`EXIT_RETRY`]: the worker says another attempt may help → RETRY;
/// 3. status reason `Host EC2*` (its instance was terminated, e.g. a Spot reclaim) → RETRY;
/// 4. anything else (a crash, an out-of-memory kill) → EXIT: another attempt of a crash is
///    the scheduler's call, which sees the task's result or its loss.
pub fn retry_strategy(attempts: i32) -> RetryStrategy {
    let rule = |action: RetryAction| EvaluateOnExit::builder().action(action);
    RetryStrategy::builder()
        .attempts(attempts)
        .evaluate_on_exit(rule(RetryAction::Exit).on_exit_code(EXIT_PERMANENT.to_string()).build())
        .evaluate_on_exit(rule(RetryAction::Retry).on_exit_code(EXIT_RETRY.to_string()).build())
        .evaluate_on_exit(rule(RetryAction::Retry).on_status_reason("Host EC2*").build())
        .evaluate_on_exit(rule(RetryAction::Exit).on_reason("*").build())
        .build()
}

/// The SubmitJob requests for `job`: per contiguous range of indices, array jobs of at most
/// [`MAX_ARRAY_SIZE`] children named `<job.name>-<first index>`, each with `--index-offset` of
/// its first index (when not 0); a part of exactly one index is a plain job with `--index N`.
pub fn requests(job: &ArrayJob, opts: &BatchOptions) -> Result<Vec<SubmitJobInput>, BatchError> {
    Ok(parts(job, opts)?.into_iter().map(|(_, r)| r).collect())
}

/// The requests of [`requests`] with the first index of each.
fn parts(job: &ArrayJob, opts: &BatchOptions) -> Result<Vec<(u32, SubmitJobInput)>, BatchError> {
    check_options(opts)?;
    let env = remote::merge_env(&job.env, &opts.env);
    if let Some((name, _)) = env.iter().find(|(n, _)| n.starts_with("AWS_BATCH")) {
        return Err(BatchError::BadOption {
            option: "env",
            problem: format!("{name}: names starting with AWS_BATCH are reserved by Batch"),
        });
    }
    let environment: Vec<KeyValuePair> =
        env.iter().map(|(n, v)| KeyValuePair::builder().name(n).value(v).build()).collect();
    let retry = retry_strategy(opts.attempts);
    let mut out = Vec::new();
    for (first, last) in job.ranges() {
        let mut start = first;
        loop {
            let end = last.min(start.saturating_add(MAX_ARRAY_SIZE - 1));
            let size = end - start + 1;
            let name = format!("{}-{start}", job.name);
            check_name(&name)?;
            let mut command = job.command.clone();
            if size == 1 {
                command.extend(["--index".to_string(), start.to_string()]);
            } else if start > 0 {
                command.extend(["--index-offset".to_string(), start.to_string()]);
            }
            let overrides = ContainerOverrides::builder()
                .set_command(Some(command))
                .set_environment((!environment.is_empty()).then(|| environment.clone()))
                .build();
            let request = SubmitJobInput::builder()
                .job_name(name)
                .job_queue(&opts.job_queue)
                .job_definition(&opts.job_definition)
                .set_array_properties((size > 1).then(|| ArrayProperties::builder().size(size as i32).build()))
                .container_overrides(overrides)
                .retry_strategy(retry.clone())
                .set_timeout(opts.timeout_seconds.map(|t| JobTimeout::builder().attempt_duration_seconds(t).build()))
                .build()
                .map_err(|e| BatchError::BadOption { option: "request", problem: e.to_string() })?;
            out.push((start, request));
            if end == last {
                break;
            }
            start = end + 1;
        }
    }
    Ok(out)
}

fn check_options(opts: &BatchOptions) -> Result<(), BatchError> {
    let bad = |option, problem: String| Err(BatchError::BadOption { option, problem });
    if opts.job_queue.trim().is_empty() {
        return bad("job_queue", "no job queue given".into());
    }
    if opts.job_definition.trim().is_empty() {
        return bad("job_definition", "no job definition given (of type container, with eocube in its image)".into());
    }
    if !(1..=MAX_ATTEMPTS).contains(&opts.attempts) {
        return bad("attempts", format!("{}: Batch takes 1 to {MAX_ATTEMPTS} attempts", opts.attempts));
    }
    if let Some(t) = opts.timeout_seconds
        && t < MIN_TIMEOUT_SECONDS
    {
        return bad("timeout_seconds", format!("{t} s: Batch's shortest attempt timeout is {MIN_TIMEOUT_SECONDS} s"));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), BatchError> {
    let problem = if name.len() > MAX_NAME {
        format!("it has {} characters", name.len())
    } else if let Some(c) = name.chars().find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
        format!("it has {c:?}")
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        "it starts with '-' or '_'".to_string()
    } else {
        return Ok(());
    };
    Err(BatchError::BadName { name: name.to_string(), problem })
}

/// The requests as a JSON array of `aws batch submit-job --cli-input-json` documents, one per
/// request: `jq -c '.[]' FILE | while read -r j; do aws batch submit-job --cli-input-json "$j"; done`.
pub fn to_json(requests: &[SubmitJobInput]) -> String {
    let items: Vec<CliJob<'_>> = requests.iter().map(CliJob::of).collect();
    // Structs of strings and numbers only: serializing cannot fail.
    let mut out = serde_json::to_string_pretty(&items).unwrap_or_default();
    out.push('\n');
    out
}

/// The SDK types are not `Serialize`: the CLI's shape, field by field, in a fixed order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CliJob<'a> {
    job_name: Option<&'a str>,
    job_queue: Option<&'a str>,
    job_definition: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    array_properties: Option<CliArray>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_strategy: Option<CliRetry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_overrides: Option<CliOverrides<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<CliTimeout>,
}

#[derive(Serialize)]
struct CliArray {
    size: Option<i32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CliRetry<'a> {
    attempts: Option<i32>,
    evaluate_on_exit: Vec<CliEvaluate<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CliEvaluate<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    on_exit_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_status_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_reason: Option<&'a str>,
    action: Option<&'a str>,
}

#[derive(Serialize)]
struct CliOverrides<'a> {
    command: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    environment: Vec<CliPair<'a>>,
}

#[derive(Serialize)]
struct CliPair<'a> {
    name: Option<&'a str>,
    value: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CliTimeout {
    attempt_duration_seconds: Option<i32>,
}

impl<'a> CliJob<'a> {
    fn of(r: &'a SubmitJobInput) -> CliJob<'a> {
        CliJob {
            job_name: r.job_name(),
            job_queue: r.job_queue(),
            job_definition: r.job_definition(),
            array_properties: r.array_properties().map(|a| CliArray { size: a.size() }),
            retry_strategy: r.retry_strategy().map(|s| CliRetry {
                attempts: s.attempts(),
                evaluate_on_exit: s
                    .evaluate_on_exit()
                    .iter()
                    .map(|e| CliEvaluate {
                        on_exit_code: e.on_exit_code(),
                        on_status_reason: e.on_status_reason(),
                        on_reason: e.on_reason(),
                        action: e.action().map(RetryAction::as_str),
                    })
                    .collect(),
            }),
            container_overrides: r.container_overrides().map(|o| CliOverrides {
                command: o.command(),
                environment: o.environment().iter().map(|p| CliPair { name: p.name(), value: p.value() }).collect(),
            }),
            timeout: r.timeout().map(|t| CliTimeout { attempt_duration_seconds: t.attempt_duration_seconds() }),
        }
    }
}

/// Runs tasks as AWS Batch jobs.
pub struct BatchExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    job: ArrayJob,
    opts: BatchOptions,
    results: ResultReader,
    poll: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    launches: u32,
    jobs: Vec<Submitted>,
    events: Option<mpsc::UnboundedSender<TaskEvent>>,
    polling: bool,
    stopped: bool,
}

/// A submitted job (an array parent, or a plain job of one index) and what has been reported
/// of its children (by child index, 0..size).
struct Submitted {
    id: String,
    start: u32,
    size: u32,
    array: bool,
    started: BTreeSet<u32>,
    ended: BTreeSet<u32>,
    /// Children seen SUCCEEDED and FAILED so far, to list again only when the counts move.
    succeeded: u32,
    failed: u32,
    missing: u32,
    /// The array parent's own end (SUCCEEDED or FAILED, with its reason), once seen.
    parent_ended: Option<String>,
}

#[derive(Debug, PartialEq)]
enum Change {
    Started(u32),
    Ended(u32, Ending),
}

#[derive(Debug, PartialEq)]
enum Ending {
    Succeeded,
    /// The status reason and the container's exit code and reason, as far as known.
    Failed(String),
    /// DescribeJobs no longer knows the job.
    Gone,
}

/// What a look at one job asks to list next.
#[derive(Debug, Default, PartialEq)]
struct Lists {
    running: bool,
    succeeded: bool,
    failed: bool,
}

impl Submitted {
    fn done(&self) -> bool {
        self.ended.len() as u32 >= self.size
    }

    /// The id of child `local` (`parent:index`), or of the plain job.
    fn child_id(&self, local: u32) -> String {
        if self.array { format!("{}:{local}", self.id) } else { self.id.clone() }
    }

    /// A plain job's status (changes), or which children of an array to list (from its status
    /// counts); `None` when DescribeJobs did not return the job.
    fn observe(
        &mut self,
        detail: Option<(&JobStatus, &std::collections::HashMap<String, i32>, String)>,
    ) -> (Vec<Change>, Lists) {
        let mut changes = Vec::new();
        let Some((status, counts, why)) = detail else {
            self.missing += 1;
            if self.missing >= MISSING_POLLS {
                for local in 0..self.size {
                    if self.ended.insert(local) {
                        changes.push(Change::Ended(local, Ending::Gone));
                    }
                }
            }
            return (changes, Lists::default());
        };
        self.missing = 0;
        if !self.array {
            let ended = match status {
                JobStatus::Succeeded => Some(Ending::Succeeded),
                JobStatus::Failed => Some(Ending::Failed(why)),
                _ => None,
            };
            if (*status == JobStatus::Running || ended.is_some()) && self.started.insert(0) {
                changes.push(Change::Started(0));
            }
            if let Some(how) = ended
                && self.ended.insert(0)
            {
                changes.push(Change::Ended(0, how));
            }
            return (changes, Lists::default());
        }
        // A parent ends after all its children: list both ends once more, whatever the counts say.
        let terminal = matches!(status, JobStatus::Succeeded | JobStatus::Failed);
        if terminal {
            self.parent_ended = Some(why);
        }
        let count = |s: &str| counts.get(s).copied().unwrap_or(0).max(0) as u32;
        let lists = Lists {
            running: count("RUNNING") > 0,
            succeeded: terminal || count("SUCCEEDED") > self.succeeded,
            failed: terminal || count("FAILED") > self.failed,
        };
        (changes, lists)
    }

    /// Once the parent has ended and its children are listed: children still not seen ending
    /// (none, unless Batch never ran them) end with the parent.
    fn finish(&mut self) -> Vec<Change> {
        let Some(why) = self.parent_ended.take() else { return Vec::new() };
        (0..self.size)
            .filter(|&local| self.ended.insert(local))
            .map(|local| Change::Ended(local, Ending::Failed(format!("its array job ended ({why}) without it"))))
            .collect()
    }

    /// Children listed with `status` (RUNNING, SUCCEEDED or FAILED): what is new among them.
    fn children(&mut self, status: &JobStatus, children: &[JobSummary]) -> Vec<Change> {
        let mut changes = Vec::new();
        for child in children {
            let Some(local) = child.array_properties().and_then(|a| a.index()).and_then(|i| u32::try_from(i).ok())
            else {
                continue;
            };
            if local >= self.size || self.ended.contains(&local) {
                continue;
            }
            let ended = match status {
                JobStatus::Succeeded => Some(Ending::Succeeded),
                JobStatus::Failed => Some(Ending::Failed(failure(
                    child.status_reason(),
                    child.container().and_then(|c| c.exit_code()),
                    child.container().and_then(|c| c.reason()),
                ))),
                _ => None,
            };
            if self.started.insert(local) {
                changes.push(Change::Started(local));
            }
            if let Some(how) = ended {
                self.ended.insert(local);
                match how {
                    Ending::Succeeded => self.succeeded += 1,
                    _ => self.failed += 1,
                }
                changes.push(Change::Ended(local, how));
            }
        }
        changes
    }
}

/// "status reason, exit N, container reason" of a failed job, as far as Batch tells.
fn failure(status_reason: Option<&str>, exit: Option<i32>, reason: Option<&str>) -> String {
    let exit = exit.map(|c| format!("exit {c}"));
    let parts: Vec<&str> = [status_reason, exit.as_deref(), reason].into_iter().flatten().collect();
    if parts.is_empty() { "no reason given".to_string() } else { parts.join(", ") }
}

fn api<E>(operation: &'static str, e: E) -> BatchError
where
    E: std::error::Error + 'static,
{
    BatchError::Api { operation, reason: DisplayErrorContext(&e).to_string() }
}

fn engine(e: BatchError) -> ExecutorError {
    ExecutorError::Engine { executor: "batch", reason: e.to_string() }
}

impl BatchExecutor {
    /// An executor for the tasks of `job` through a client configured from the standard AWS
    /// environment (variables, profile, role; `AWS_ENDPOINT_URL_BATCH` or `AWS_ENDPOINT_URL` for
    /// a stand-in). Checks the requests, the region and that credentials resolve, so none of
    /// these fails after the build has started.
    pub async fn connect(
        job: ArrayJob,
        opts: BatchOptions,
        results: ResultReader,
    ) -> Result<BatchExecutor, BatchError> {
        let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        BatchExecutor::connect_with(loader, job, opts, results).await
    }

    /// [`BatchExecutor::connect`] with the configuration `loader` gives.
    pub async fn connect_with(
        loader: aws_config::ConfigLoader,
        job: ArrayJob,
        opts: BatchOptions,
        results: ResultReader,
    ) -> Result<BatchExecutor, BatchError> {
        requests(&job, &opts)?;
        let config = super::aws::load(loader).await.map_err(|e| match e {
            super::aws::AwsConfigError::NoRegion => BatchError::NoRegion,
            super::aws::AwsConfigError::Credentials { reason } => BatchError::Credentials { reason },
        })?;
        BatchExecutor::new(Client::new(&config), job, opts, results)
    }

    /// An executor submitting through `client`.
    pub fn new(
        client: Client,
        job: ArrayJob,
        opts: BatchOptions,
        results: ResultReader,
    ) -> Result<BatchExecutor, BatchError> {
        requests(&job, &opts)?;
        Ok(BatchExecutor { inner: Arc::new(Inner { client, job, opts, results, poll: POLL, state: Mutex::default() }) })
    }

    /// Looks at the jobs this often instead of every [`POLL`].
    pub fn with_poll_interval(self, poll: Duration) -> BatchExecutor {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.poll = poll;
                BatchExecutor { inner: Arc::new(inner) }
            }
            Err(inner) => BatchExecutor { inner },
        }
    }
}

/// The SDK takes a request as a builder: `r`'s fields, all of them, back into one.
fn resubmit(r: &SubmitJobInput) -> aws_sdk_batch::operation::submit_job::builders::SubmitJobInputBuilder {
    SubmitJobInput::builder()
        .set_job_name(r.job_name.clone())
        .set_job_queue(r.job_queue.clone())
        .set_share_identifier(r.share_identifier.clone())
        .set_scheduling_priority_override(r.scheduling_priority_override)
        .set_array_properties(r.array_properties.clone())
        .set_depends_on(r.depends_on.clone())
        .set_job_definition(r.job_definition.clone())
        .set_parameters(r.parameters.clone())
        .set_container_overrides(r.container_overrides.clone())
        .set_node_overrides(r.node_overrides.clone())
        .set_retry_strategy(r.retry_strategy.clone())
        .set_propagate_tags(r.propagate_tags)
        .set_timeout(r.timeout.clone())
        .set_tags(r.tags.clone())
        .set_eks_properties_override(r.eks_properties_override.clone())
        .set_ecs_properties_override(r.ecs_properties_override.clone())
        .set_consumable_resource_properties_override(r.consumable_resource_properties_override.clone())
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn terminate(&self, id: &str, reason: &str) -> Result<(), BatchError> {
        self.client.terminate_job().job_id(id).reason(reason).send().await.map_err(|e| api("TerminateJob", e))?;
        Ok(())
    }

    /// Children of array `id` in `status`, every page.
    async fn list(&self, id: &str, status: JobStatus) -> Result<Vec<JobSummary>, BatchError> {
        let mut pages =
            self.client.list_jobs().array_job_id(id).job_status(status).max_results(1000).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            out.extend(page.map_err(|e| api("ListJobs", e))?.job_summary_list.unwrap_or_default());
        }
        Ok(out)
    }

    /// One look at every job not done: (job id, start, change) of what is new.
    async fn look(&self) -> Result<Vec<(String, u32, Change)>, BatchError> {
        let ids: Vec<String> = self.state().jobs.iter().filter(|j| !j.done()).map(|j| j.id.clone()).collect();
        let mut details = std::collections::HashMap::new();
        for chunk in ids.chunks(DESCRIBE_BATCH) {
            let out = self
                .client
                .describe_jobs()
                .set_jobs(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| api("DescribeJobs", e))?;
            for d in out.jobs.unwrap_or_default() {
                if let (Some(id), Some(status)) = (d.job_id.clone(), d.status.clone()) {
                    let counts = d.array_properties().and_then(|a| a.status_summary()).cloned().unwrap_or_default();
                    let why = failure(
                        d.status_reason(),
                        d.container().and_then(|c| c.exit_code()),
                        d.container().and_then(|c| c.reason()),
                    );
                    details.insert(id, (status, counts, why));
                }
            }
        }
        let mut changes = Vec::new();
        let mut to_list = Vec::new();
        {
            let mut st = self.state();
            for j in st.jobs.iter_mut().filter(|j| ids.contains(&j.id)) {
                let detail = details.get(&j.id).map(|(s, c, w)| (s, c, w.clone()));
                let (new, lists) = j.observe(detail);
                changes.extend(new.into_iter().map(|c| (j.id.clone(), j.start, c)));
                for (wanted, status) in [
                    (lists.running, JobStatus::Running),
                    (lists.succeeded, JobStatus::Succeeded),
                    (lists.failed, JobStatus::Failed),
                ] {
                    if wanted {
                        to_list.push((j.id.clone(), status));
                    }
                }
            }
        }
        for (id, status) in to_list {
            let children = self.list(&id, status.clone()).await?;
            let mut st = self.state();
            if let Some(j) = st.jobs.iter_mut().find(|j| j.id == id) {
                let start = j.start;
                changes.extend(j.children(&status, &children).into_iter().map(|c| (id.clone(), start, c)));
            }
        }
        for j in self.state().jobs.iter_mut().filter(|j| ids.contains(&j.id)) {
            changes.extend(j.finish().into_iter().map(|c| (j.id.clone(), j.start, c)));
        }
        Ok(changes)
    }

    /// Looks at the jobs until every submitted task has ended (or the executor is shut down).
    async fn poll(self: Arc<Self>) {
        let mut failures = 0;
        loop {
            tokio::time::sleep(self.poll).await;
            {
                let mut st = self.state();
                if st.stopped || st.jobs.iter().all(Submitted::done) {
                    st.polling = false;
                    return;
                }
            }
            let changes = match self.look().await {
                Ok(c) => {
                    failures = 0;
                    c
                }
                Err(e) => {
                    failures += 1;
                    if failures < POLL_FAILURES {
                        continue;
                    }
                    self.give_up(&e);
                    return;
                }
            };
            let Some(events) = self.state().events.clone() else { continue };
            for (id, start, change) in changes {
                let event = match change {
                    Change::Started(local) => TaskEvent::Started { index: start + local },
                    Change::Ended(local, how) => {
                        let index = start + local;
                        TaskEvent::Ended { index, end: self.end(&id, index, local, how).await }
                    }
                };
                let _ = events.send(event);
            }
        }
    }

    async fn end(&self, id: &str, index: u32, local: u32, how: Ending) -> TaskEnd {
        let child = self.state().jobs.iter().find(|j| j.id == id).map(|j| j.child_id(local)).unwrap_or_default();
        let attempts = self.opts.attempts;
        let (reason, transient) = match how {
            Ending::Succeeded => (
                format!(
                    "task {index} succeeded on AWS Batch (job {child}) but wrote no result file: does the job write \
                     to the same cube?"
                ),
                false,
            ),
            Ending::Failed(why) => (
                format!(
                    "task {index} failed on AWS Batch (job {child}, {why}; up to {attempts} attempts) and wrote no \
                     result; `aws batch describe-jobs --jobs {child}` names its CloudWatch log stream"
                ),
                false,
            ),
            Ending::Gone => (format!("AWS Batch no longer knows job {child}: task {index} is lost"), true),
        };
        remote::task_end(&self.results, index, reason, transient).await
    }

    /// Batch could not be looked at for a minute: every task not ended is lost.
    fn give_up(&self, e: &BatchError) {
        let mut st = self.state();
        st.polling = false;
        let mut lost = Vec::new();
        for j in st.jobs.iter_mut() {
            for local in 0..j.size {
                if j.ended.insert(local) {
                    lost.push(j.start + local);
                }
            }
        }
        if let Some(events) = &st.events {
            for index in lost {
                let reason = format!("task {index}: the AWS Batch jobs could not be looked at for a minute ({e})");
                let _ = events.send(TaskEvent::Ended { index, end: TaskEnd::Lost { reason, transient: true } });
            }
        }
    }
}

#[async_trait]
impl Executor for BatchExecutor {
    fn name(&self) -> &'static str {
        "batch"
    }

    /// Submits the requests of `tasks`: named `<name>-<first index>` the first time and
    /// `<name>-r<launch>-<first index>` for later launches (retries). When a submission fails,
    /// the jobs this launch already submitted are terminated before the error is returned.
    async fn launch(&self, tasks: Vec<u32>, events: mpsc::UnboundedSender<TaskEvent>) -> Result<(), ExecutorError> {
        let round = {
            let mut st = self.inner.state();
            if st.stopped {
                return Ok(());
            }
            st.launches += 1;
            st.launches - 1
        };
        let job = self.inner.job.launch(round, tasks);
        let parts = parts(&job, &self.inner.opts).map_err(engine)?;
        let mut submitted = Vec::new();
        for (start, r) in &parts {
            let id = resubmit(r).send_with(&self.inner.client).await.map_err(|e| api("SubmitJob", e)).and_then(|out| {
                out.job_id.ok_or_else(|| BatchError::Api {
                    operation: "SubmitJob",
                    reason: "the answer has no job id".into(),
                })
            });
            match id {
                Ok(id) => submitted.push(Submitted {
                    id,
                    start: *start,
                    size: r.array_properties().and_then(|a| a.size()).unwrap_or(1).max(1) as u32,
                    array: r.array_properties().is_some(),
                    started: BTreeSet::new(),
                    ended: BTreeSet::new(),
                    succeeded: 0,
                    failed: 0,
                    missing: 0,
                    parent_ended: None,
                }),
                Err(e) => {
                    for s in &submitted {
                        let _ = self.inner.terminate(&s.id, "eocube: the rest of this launch was not submitted").await;
                    }
                    return Err(engine(e));
                }
            }
        }
        let spawn = {
            let mut st = self.inner.state();
            st.jobs.extend(submitted);
            st.events = Some(events);
            !std::mem::replace(&mut st.polling, true)
        };
        if spawn {
            tokio::spawn(Arc::clone(&self.inner).poll());
        }
        Ok(())
    }

    /// Terminates the child `parent:index` (or the plain job) of task `index`; Batch does not
    /// retry a terminated job, which then ends FAILED.
    async fn cancel(&self, index: u32) -> Result<(), ExecutorError> {
        let target = self.inner.state().jobs.iter().find_map(|j| {
            let local = index.checked_sub(j.start).filter(|&l| l < j.size && !j.ended.contains(&l))?;
            Some(j.child_id(local))
        });
        let Some(id) = target else { return Ok(()) };
        self.inner.terminate(&id, "eocube: the task ran longer than its bound").await.map_err(engine)
    }

    /// Terminates every job not done (an array parent takes its children with it).
    async fn shutdown(&self) {
        let ids: Vec<String> = {
            let mut st = self.inner.state();
            st.stopped = true;
            st.jobs.iter().filter(|j| !j.done()).map(|j| j.id.clone()).collect()
        };
        for id in ids {
            if let Err(e) = self.inner.terminate(&id, "eocube: the build was interrupted").await {
                eprintln!(
                    "AWS Batch job {id} was not terminated ({e}); `aws batch terminate-job --job-id {id}` does it"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
