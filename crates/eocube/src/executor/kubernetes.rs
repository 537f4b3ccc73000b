//! The Kubernetes executor: a run's tasks as Indexed Jobs, applied and watched through `kubectl`.
//!
//! ```text
//! ArrayJob ─manifests─▶ one Indexed Job per contiguous range of indices ─to_json─▶ v1 List
//!     launch: kubectl apply -f - ─▶ poller (every 2 s): kubectl get jobs,pods -l eocube.dev/run=RUN
//!     status.completedIndexes / failedIndexes ─▶ result file of each newly ended index ─▶ TaskEvent
//! ```
//!
//! Each pod runs `eocube worker ... --run ID` and finds its index in `JOB_COMPLETION_INDEX`; a
//! Job for the range starting at K adds `--index-offset K`. Kubernetes retries an index itself,
//! up to `backoffLimitPerIndex` times, except when the worker exits [`EXIT_PERMANENT`] (the
//! `FailIndex` rule) and without counting evictions (the `Ignore` rule on `DisruptionTarget`).
//! When Kubernetes gives up on an index, its last result goes to the scheduler, which may launch
//! it again (as a new Job) under its own retry budget.
//!
//! Why `kubectl` and not an API client: it brings the user's kubeconfig, contexts and auth
//! plugins as they are, and no second HTTP/TLS stack into the build. The manifests are built
//! with the real API types (`k8s-openapi`), so what is applied is what the tests check.
//!
//! Owns: the manifests, their validation, and driving `kubectl`. Must not touch: retries across
//! launches, time bounds and records (the scheduler's), or what a task computes (the worker's).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, JobStatus, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, EnvVar, Pod, PodSpec, PodTemplateSpec, ResourceRequirements, SecretEnvSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::array::{ArrayJob, EXIT_PERMANENT};
use super::remote::{self, ResultReader};
use super::scheduler::{Executor, ExecutorError, TaskEnd, TaskEvent};

/// The worker container's name in every pod (the `FailIndex` rule names it).
pub const CONTAINER: &str = "worker";
/// Label of every Job and pod: `eocube`.
pub const LABEL_APP: &str = "app.kubernetes.io/name";
/// Label of every Job and pod: the run id.
pub const LABEL_RUN: &str = "eocube.dev/run";
/// Set by Kubernetes on the pods of an Indexed Job (1.28 and later).
const LABEL_INDEX: &str = "batch.kubernetes.io/job-completion-index";
const LABEL_JOB: &str = "batch.kubernetes.io/job-name";
/// Finished Jobs (and their pods, with the logs of failed indices) are kept a day, then
/// Kubernetes deletes them: long enough to look at a failure, short enough not to pile up.
pub const TTL_AFTER_FINISHED: i32 = 86_400;
/// Longest Job name: the value of the pods' `job-name` label.
const MAX_NAME: usize = 63;
/// Above this many completions Kubernetes requires `maxFailedIndexes`, at most 10^4.
const MANY_COMPLETIONS: i32 = 100_000;
const MAX_FAILED_INDEXES_CAP: i32 = 10_000;
/// How often the Jobs are looked at.
pub const POLL: Duration = Duration::from_secs(2);
/// Consecutive failed looks (about a minute) before the poller gives the tasks up as lost.
const POLL_FAILURES: u32 = 30;
/// Looks in which a launched Job is missing before its tasks are lost (deleted by someone).
const MISSING_POLLS: u32 = 3;
/// Bound of every kubectl call, so an unreachable cluster is an error and not a hang.
const REQUEST_TIMEOUT: &str = "--request-timeout=30s";

/// What every pod of a run is given besides the worker command.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KubernetesOptions {
    /// Container image with `eocube` on its PATH (or at the command's first argument).
    pub image: String,
    /// Namespace of the Jobs; kubectl's current one when `None`.
    pub namespace: Option<String>,
    /// A Secret whose keys become environment variables (`envFrom.secretRef`): credentials go
    /// there, never inline in a manifest.
    pub secret: Option<String>,
    pub service_account: Option<String>,
    /// CPU request of each pod, e.g. `"1"` or `"500m"` (no CPU limit: throttling only slows).
    pub cpu: Option<String>,
    /// Memory request and limit of each pod, e.g. `"2Gi"`.
    pub memory: Option<String>,
    /// Retries of an index after its first pod fails (`backoffLimitPerIndex`).
    pub backoff_limit_per_index: i32,
    /// Failed indices after which a Job stops (`maxFailedIndexes`); all are tried when `None`.
    pub max_failed_indexes: Option<i32>,
    /// Environment of every pod besides `ArrayJob::env` (a name in both takes this value).
    pub env: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error(
        "Kubernetes Job name {name:?} is not valid: {problem}. A Job name is lowercase letters, digits and '-', \
         starts and ends with a letter or digit and has at most {MAX_NAME} characters, the `-<first index>` suffix \
         included; name the job e.g. {suggestion:?}"
    )]
    BadName { name: String, problem: String, suggestion: String },
    #[error(
        "run id {run:?} cannot be the value of the label {LABEL_RUN}: at most 63 letters, digits, '-', '_' or '.', \
         starting and ending with a letter or digit"
    )]
    BadRun { run: String },
    #[error("the worker command {command:?} has no `--run ID`: every pod must know its run")]
    NoRun { command: Vec<String> },
    #[error("Kubernetes option {option}: {problem}")]
    BadOption { option: &'static str, problem: String },
    #[error(
        "kubectl was not found ({program}): install kubectl and configure it for the cluster, or write the \
         manifests to a file (`emit`) and apply them with `kubectl apply -f FILE` where kubectl works"
    )]
    NoKubectl { program: String },
    #[error(
        "the Kubernetes cluster cannot be reached through kubectl ({reason}); check `kubectl cluster-info`, or \
         write the manifests to a file (`emit`) and apply them with `kubectl apply -f FILE` where the cluster is \
         reachable"
    )]
    Unreachable { reason: String },
    #[error("`kubectl {args}` failed: {reason}")]
    Kubectl { args: String, reason: String },
    #[error("`kubectl {args}` printed what is not a Kubernetes list of Jobs and Pods: {reason}")]
    BadOutput { args: String, reason: String },
    #[error("Kubernetes index set {text:?} is malformed: {reason}")]
    IndexSet { text: String, reason: String },
}

/// One Indexed Job per contiguous range of `job.indices`, named `<job.name>-<first index>`.
pub fn manifests(job: &ArrayJob, opts: &KubernetesOptions) -> Result<Vec<Job>, KubernetesError> {
    check_options(opts)?;
    let run = run_id(&job.command).ok_or_else(|| KubernetesError::NoRun { command: job.command.clone() })?;
    if !is_label_value(run) {
        return Err(KubernetesError::BadRun { run: run.to_string() });
    }
    let labels: BTreeMap<String, String> =
        [(LABEL_APP, "eocube"), (LABEL_RUN, run)].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let env: Vec<EnvVar> = remote::merge_env(&job.env, &opts.env)
        .into_iter()
        .map(|(name, value)| EnvVar { name, value: Some(value), value_from: None })
        .collect();
    job.ranges()
        .into_iter()
        .map(|(start, end)| {
            let name = format!("{}-{start}", job.name);
            check_name(&job.name, &name, start)?;
            let len = i32::try_from(end - start + 1).map_err(|_| KubernetesError::BadOption {
                option: "indices",
                problem: format!("the range {start}..={end} has more than {} indices", i32::MAX),
            })?;
            let mut command = job.command.clone();
            if start > 0 {
                command.extend(["--index-offset".to_string(), start.to_string()]);
            }
            let container = Container {
                name: CONTAINER.to_string(),
                image: Some(opts.image.clone()),
                command: Some(command),
                env: (!env.is_empty()).then(|| env.clone()),
                env_from: opts.secret.as_ref().map(|name| {
                    vec![EnvFromSource {
                        secret_ref: Some(SecretEnvSource { name: name.clone(), optional: Some(false) }),
                        ..Default::default()
                    }]
                }),
                resources: resources(opts),
                ..Default::default()
            };
            let pod = PodSpec {
                // Required by backoffLimitPerIndex and by podFailurePolicy: a failed container
                // fails its pod, and the Job controller (not the kubelet) decides what follows.
                restart_policy: Some("Never".to_string()),
                service_account_name: opts.service_account.clone(),
                containers: vec![container],
                ..Default::default()
            };
            let parallelism = i32::try_from(job.max_parallel.max(1)).unwrap_or(i32::MAX).min(len);
            let max_failed_indexes = match opts.max_failed_indexes.map(|m| m.min(len)) {
                Some(m) if len > MANY_COMPLETIONS => Some(m.min(MAX_FAILED_INDEXES_CAP)),
                None if len > MANY_COMPLETIONS => Some(MAX_FAILED_INDEXES_CAP),
                m => m,
            };
            Ok(Job {
                metadata: ObjectMeta {
                    name: Some(name),
                    namespace: opts.namespace.clone(),
                    labels: Some(labels.clone()),
                    ..Default::default()
                },
                spec: Some(JobSpec {
                    completion_mode: Some("Indexed".to_string()),
                    completions: Some(len),
                    parallelism: Some(parallelism),
                    backoff_limit_per_index: Some(opts.backoff_limit_per_index),
                    max_failed_indexes,
                    pod_failure_policy: Some(pod_failure_policy()),
                    ttl_seconds_after_finished: Some(TTL_AFTER_FINISHED),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta { labels: Some(labels.clone()), ..Default::default() }),
                        spec: Some(pod),
                    },
                    ..Default::default()
                }),
                status: None,
            })
        })
        .collect()
}

/// The rules, first match first: an evicted or preempted pod (`DisruptionTarget`) is replaced
/// without counting against the index's retries, whatever it exited with; a worker exiting
/// [`EXIT_PERMANENT`] fails its index at once (`FailIndex` needs `backoffLimitPerIndex`, which
/// every Job here sets); anything else counts as a failure and is retried per index.
fn pod_failure_policy() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "Ignore".to_string(),
                on_exit_codes: None,
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".to_string(),
                    status: Some("True".to_string()),
                }]),
            },
            PodFailurePolicyRule {
                action: "FailIndex".to_string(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(CONTAINER.to_string()),
                    operator: "In".to_string(),
                    values: vec![EXIT_PERMANENT],
                }),
                on_pod_conditions: None,
            },
        ],
    }
}

fn resources(opts: &KubernetesOptions) -> Option<ResourceRequirements> {
    let q = |v: &Option<String>| v.clone().map(Quantity);
    let requests: BTreeMap<String, Quantity> = [("cpu", q(&opts.cpu)), ("memory", q(&opts.memory))]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v?)))
        .collect();
    let limits: BTreeMap<String, Quantity> = q(&opts.memory).map(|m| ("memory".to_string(), m)).into_iter().collect();
    (!requests.is_empty()).then(|| ResourceRequirements {
        requests: Some(requests),
        limits: (!limits.is_empty()).then_some(limits),
        claims: None,
    })
}

fn check_options(opts: &KubernetesOptions) -> Result<(), KubernetesError> {
    let bad = |option, problem: &str| Err(KubernetesError::BadOption { option, problem: problem.to_string() });
    if opts.image.trim().is_empty() {
        return bad("image", "no container image given: an image with eocube in it");
    }
    if opts.backoff_limit_per_index < 0 {
        return bad("backoff_limit_per_index", "retries per index cannot be negative");
    }
    if opts.max_failed_indexes.is_some_and(|m| m < 0) {
        return bad("max_failed_indexes", "cannot be negative");
    }
    for (option, v) in [("cpu", &opts.cpu), ("memory", &opts.memory)] {
        if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return bad(option, "empty quantity: give e.g. cpu \"1\" or memory \"2Gi\"");
        }
    }
    for (option, v) in
        [("namespace", &opts.namespace), ("secret", &opts.secret), ("service_account", &opts.service_account)]
    {
        if let Some(v) = v
            && !is_dns_label(v, 253, true)
        {
            return bad(
                option,
                &format!("{v:?} is not a Kubernetes object name (lowercase letters, digits, '-', '.')"),
            );
        }
    }
    Ok(())
}

/// DNS-1123: lowercase letters, digits and '-' (and '.' for subdomains), alphanumeric at both ends.
fn is_dns_label(s: &str, max: usize, dots: bool) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !s.is_empty()
        && s.len() <= max
        && s.chars().all(|c| ok(c) || c == '-' || (dots && c == '.'))
        && s.starts_with(ok)
        && s.ends_with(ok)
}

fn is_label_value(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric();
    s.is_empty()
        || (s.len() <= 63
            && s.chars().all(|c| ok(c) || matches!(c, '-' | '_' | '.'))
            && s.starts_with(ok)
            && s.ends_with(ok))
}

fn check_name(base: &str, name: &str, start: u32) -> Result<(), KubernetesError> {
    if is_dns_label(name, MAX_NAME, false) {
        return Ok(());
    }
    let suffix = format!("-{start}").len();
    let problem = if name.len() > MAX_NAME {
        format!("it has {} characters; shorten the job name to at most {}", name.len(), MAX_NAME - suffix)
    } else if name.chars().any(|c| c.is_ascii_uppercase()) {
        "it has capital letters".to_string()
    } else {
        "it has a character other than a-z, 0-9 and '-', or starts or ends with '-'".to_string()
    };
    let mut suggestion: String =
        base.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    suggestion.truncate(MAX_NAME - suffix);
    let suggestion = suggestion.trim_matches('-').to_string();
    let suggestion = if suggestion.is_empty() { "eocube".to_string() } else { suggestion };
    Err(KubernetesError::BadName { name: name.to_string(), problem, suggestion })
}

/// The run id of a worker command (`... --run ID ...` or `--run=ID`).
fn run_id(command: &[String]) -> Option<&str> {
    let mut args = command.iter();
    while let Some(a) = args.next() {
        if a == "--run" {
            return args.next().map(String::as_str);
        }
        if let Some(id) = a.strip_prefix("--run=") {
            return Some(id);
        }
    }
    None
}

/// The Jobs as one `v1 List` document, which `kubectl apply -f` takes.
pub fn to_json(jobs: &[Job]) -> String {
    #[derive(Serialize)]
    struct List<'a> {
        #[serde(rename = "apiVersion")]
        api_version: &'static str,
        kind: &'static str,
        items: &'a [Job],
    }
    // Structs and string-keyed maps only: serializing cannot fail.
    let mut out =
        serde_json::to_string_pretty(&List { api_version: "v1", kind: "List", items: jobs }).unwrap_or_default();
    out.push('\n');
    out
}

/// The indices of a Job status field such as `completedIndexes`: `"1,3-5"` is 1, 3, 4, 5.
pub fn parse_index_set(text: &str) -> Result<Vec<u32>, KubernetesError> {
    let bad = |reason: String| KubernetesError::IndexSet { text: text.to_string(), reason };
    let num = |s: &str| s.trim().parse::<u32>().map_err(|e| bad(format!("{s:?}: {e}")));
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(bad(format!("the range {part} runs backwards")));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    Ok(out)
}

/// Runs tasks as Indexed Jobs through `kubectl`.
pub struct KubernetesExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    job: ArrayJob,
    opts: KubernetesOptions,
    results: ResultReader,
    kubectl: Kubectl,
    poll: Duration,
    state: Mutex<State>,
}

#[derive(Clone)]
struct Kubectl {
    program: OsString,
    namespace: Option<String>,
    /// PATH of the kubectl process (tests).
    path: Option<OsString>,
}

#[derive(Default)]
struct State {
    launches: u32,
    jobs: Vec<Tracked>,
    events: Option<mpsc::UnboundedSender<TaskEvent>>,
    polling: bool,
    stopped: bool,
}

/// A launched Job and what has been reported of its indices (local to the Job: 0..len).
struct Tracked {
    name: String,
    start: u32,
    len: u32,
    started: BTreeSet<u32>,
    ended: BTreeSet<u32>,
    missing: u32,
}

/// What one look at the cluster showed.
#[derive(Default)]
struct Listing {
    jobs: HashMap<String, JobStatus>,
    /// Per Job, the local indices with a running pod.
    running: HashMap<String, BTreeSet<u32>>,
}

#[derive(Debug, PartialEq)]
enum Change {
    Started(u32),
    Ended(u32, Ending),
}

#[derive(Debug, PartialEq)]
enum Ending {
    Completed,
    Failed,
    /// The whole Job failed (e.g. `MaxFailedIndexesExceeded`) before the index ended.
    JobFailed(String),
    /// The Job is no longer in the cluster.
    Gone,
}

impl KubernetesExecutor {
    /// An executor for the tasks of `job` (its indices are those `launch` may be given); each
    /// ended task's result is read with `results` (see [`remote::cube_results`]). Checks the
    /// manifests now, so a bad name or option fails before anything is launched.
    pub fn new(
        job: ArrayJob,
        opts: KubernetesOptions,
        results: ResultReader,
    ) -> Result<KubernetesExecutor, KubernetesError> {
        manifests(&job, &opts)?;
        let kubectl = Kubectl { program: "kubectl".into(), namespace: opts.namespace.clone(), path: None };
        Ok(KubernetesExecutor {
            inner: Arc::new(Inner { job, opts, results, kubectl, poll: POLL, state: Mutex::default() }),
        })
    }

    /// Runs this kubectl instead of the one on PATH.
    pub fn with_kubectl(self, program: impl Into<OsString>) -> KubernetesExecutor {
        self.map_inner(|i| i.kubectl.program = program.into())
    }

    /// Looks at the Jobs this often instead of every [`POLL`].
    pub fn with_poll_interval(self, poll: Duration) -> KubernetesExecutor {
        self.map_inner(|i| i.poll = poll)
    }

    #[cfg(test)]
    fn with_path(self, path: impl Into<OsString>) -> KubernetesExecutor {
        self.map_inner(|i| i.kubectl.path = Some(path.into()))
    }

    fn map_inner(self, f: impl FnOnce(&mut Inner)) -> KubernetesExecutor {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                f(&mut inner);
                KubernetesExecutor { inner: Arc::new(inner) }
            }
            // Only before the first launch does anyone call the builders; later, keep as is.
            Err(inner) => KubernetesExecutor { inner },
        }
    }
}

impl Kubectl {
    /// Runs `kubectl [--namespace NS] --request-timeout=30s ARGS` with `stdin`; its stdout.
    async fn run(&self, args: &[&str], stdin: Option<String>) -> Result<String, KubernetesError> {
        let mut cmd = tokio::process::Command::new(&self.program);
        if let Some(ns) = &self.namespace {
            cmd.arg("--namespace").arg(ns);
        }
        cmd.arg(REQUEST_TIMEOUT)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(path) = &self.path {
            cmd.env("PATH", path);
        }
        let shown = args.join(" ");
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                KubernetesError::NoKubectl { program: self.program.to_string_lossy().into_owned() }
            }
            _ => KubernetesError::Kubectl { args: shown.clone(), reason: e.to_string() },
        })?;
        // Written while the output is read: neither pipe can fill up and stall the other.
        let writer = match (stdin, child.stdin.take()) {
            (Some(text), Some(mut pipe)) => Some(tokio::spawn(async move {
                let _ = pipe.write_all(text.as_bytes()).await;
            })),
            _ => None,
        };
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| KubernetesError::Kubectl { args: shown.clone(), reason: e.to_string() })?;
        if let Some(w) = writer {
            let _ = w.await;
        }
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let reason = if stderr.is_empty() { format!("exit status {}", out.status) } else { stderr };
        Err(if unreachable(&reason) {
            KubernetesError::Unreachable { reason }
        } else {
            KubernetesError::Kubectl { args: shown, reason }
        })
    }
}

/// kubectl's words for "no cluster there" (no kubeconfig, refused, unresolvable, timed out).
fn unreachable(stderr: &str) -> bool {
    [
        "Unable to connect to the server",
        "The connection to the server",
        "connection refused",
        "no such host",
        "i/o timeout",
        "no configuration has been provided",
        "couldn't get current server API group list",
    ]
    .iter()
    .any(|m| stderr.contains(m))
}

impl Listing {
    fn parse(json: &str) -> Result<Listing, String> {
        let list: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let items = list.get("items").and_then(|i| i.as_array()).ok_or("no `items`")?;
        let mut out = Listing::default();
        for item in items {
            match item.get("kind").and_then(|k| k.as_str()) {
                Some("Job") => {
                    let job: Job = serde_json::from_value(item.clone()).map_err(|e| format!("a Job: {e}"))?;
                    if let Some(name) = job.metadata.name {
                        out.jobs.insert(name, job.status.unwrap_or_default());
                    }
                }
                Some("Pod") => {
                    let pod: Pod = serde_json::from_value(item.clone()).map_err(|e| format!("a Pod: {e}"))?;
                    let running = pod.status.and_then(|s| s.phase).is_some_and(|p| p == "Running");
                    let labels = pod.metadata.labels.unwrap_or_default();
                    let job = labels.get(LABEL_JOB).or_else(|| labels.get("job-name"));
                    let index = labels.get(LABEL_INDEX).and_then(|i| i.parse::<u32>().ok());
                    if let (true, Some(job), Some(index)) = (running, job, index) {
                        out.running.entry(job.clone()).or_default().insert(index);
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

impl Tracked {
    fn done(&self) -> bool {
        self.ended.len() as u32 >= self.len
    }

    /// What changed for this Job's indices since the last look; indices in the changes are
    /// local. An index that ends unseen is reported started first.
    fn observe(&mut self, listing: &Listing) -> Vec<Change> {
        let mut changes = Vec::new();
        let Some(status) = listing.jobs.get(&self.name) else {
            self.missing += 1;
            if self.missing >= MISSING_POLLS {
                self.end_rest(&mut changes, || Ending::Gone);
            }
            return changes;
        };
        self.missing = 0;
        let set = |s: &Option<String>| parse_index_set(s.as_deref().unwrap_or_default()).unwrap_or_default();
        for local in listing.running.get(&self.name).into_iter().flatten() {
            if *local < self.len && !self.ended.contains(local) && self.started.insert(*local) {
                changes.push(Change::Started(*local));
            }
        }
        for (indices, how) in [(set(&status.completed_indexes), true), (set(&status.failed_indexes), false)] {
            for local in indices.into_iter().filter(|&l| l < self.len) {
                if self.ended.insert(local) {
                    if self.started.insert(local) {
                        changes.push(Change::Started(local));
                    }
                    changes.push(Change::Ended(local, if how { Ending::Completed } else { Ending::Failed }));
                }
            }
        }
        let failed = status.conditions.iter().flatten().find(|c| c.type_ == "Failed" && c.status == "True");
        if let Some(c) = failed {
            let why = [c.reason.as_deref(), c.message.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(": ");
            self.end_rest(&mut changes, || Ending::JobFailed(why.clone()));
        }
        changes
    }

    fn end_rest(&mut self, changes: &mut Vec<Change>, how: impl Fn() -> Ending) {
        for local in 0..self.len {
            if self.ended.insert(local) {
                changes.push(Change::Ended(local, how()));
            }
        }
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn selector(&self) -> String {
        format!("{LABEL_RUN}={}", run_id(&self.job.command).unwrap_or_default())
    }

    fn logs_hint(&self, job: &str, local: u32) -> String {
        let ns = self.opts.namespace.as_ref().map(|n| format!(" -n {n}")).unwrap_or_default();
        format!("`kubectl logs{ns} -l {LABEL_JOB}={job},{LABEL_INDEX}={local}`")
    }

    /// Looks at the Jobs until every launched index has ended (or the executor is shut down).
    async fn poll(self: Arc<Self>) {
        let mut failures = 0;
        loop {
            tokio::time::sleep(self.poll).await;
            {
                let mut st = self.state();
                if st.stopped || st.jobs.iter().all(Tracked::done) {
                    st.polling = false;
                    return;
                }
            }
            let selector = self.selector();
            let args = ["get", "jobs,pods", "-l", selector.as_str(), "-o", "json"];
            let look = self.kubectl.run(&args, None).await.and_then(|out| {
                Listing::parse(&out).map_err(|reason| KubernetesError::BadOutput { args: args.join(" "), reason })
            });
            let listing = match look {
                Ok(l) => {
                    failures = 0;
                    l
                }
                Err(e) => {
                    failures += 1;
                    if failures < POLL_FAILURES {
                        continue;
                    }
                    self.give_up(&e).await;
                    return;
                }
            };
            let (changes, events) = {
                let mut st = self.state();
                let changes: Vec<(String, u32, Change)> = st
                    .jobs
                    .iter_mut()
                    .flat_map(|t| {
                        let (name, start) = (t.name.clone(), t.start);
                        t.observe(&listing).into_iter().map(move |c| (name.clone(), start, c))
                    })
                    .collect();
                (changes, st.events.clone())
            };
            let Some(events) = events else { continue };
            for (job, start, change) in changes {
                let event = match change {
                    Change::Started(local) => TaskEvent::Started { index: start + local },
                    Change::Ended(local, how) => {
                        let index = start + local;
                        TaskEvent::Ended { index, end: self.end(&job, index, local, how).await }
                    }
                };
                let _ = events.send(event);
            }
        }
    }

    async fn end(&self, job: &str, index: u32, local: u32, how: Ending) -> TaskEnd {
        let logs = self.logs_hint(job, local);
        let retries = self.opts.backoff_limit_per_index;
        let (reason, transient) = match how {
            Ending::Completed => (
                format!(
                    "task {index} exited 0 on Kubernetes (Job {job}) but wrote no result file: does the pod write \
                     to the same cube? See {logs}"
                ),
                false,
            ),
            Ending::Failed => (
                format!(
                    "task {index} failed on Kubernetes (Job {job}, up to {retries} retries) and wrote no result; \
                     see {logs}"
                ),
                false,
            ),
            Ending::JobFailed(why) => {
                (format!("Kubernetes Job {job} failed ({why}) before task {index} ended; see {logs}"), false)
            }
            Ending::Gone => (format!("Kubernetes Job {job} was deleted before task {index} ended"), true),
        };
        remote::task_end(&self.results, index, reason, transient).await
    }

    /// The cluster could not be looked at for a minute: every task not ended is lost.
    async fn give_up(&self, e: &KubernetesError) {
        let (lost, events) = {
            let mut st = self.state();
            st.polling = false;
            let mut lost = Vec::new();
            for t in st.jobs.iter_mut() {
                let mut changes = Vec::new();
                t.end_rest(&mut changes, || Ending::Gone);
                lost.extend(changes.into_iter().filter_map(|c| match c {
                    Change::Ended(l, _) => Some(t.start + l),
                    Change::Started(_) => None,
                }));
            }
            (lost, st.events.clone())
        };
        let Some(events) = events else { return };
        for index in lost {
            let reason = format!("task {index}: the Kubernetes Jobs could not be looked at for a minute ({e})");
            let _ = events.send(TaskEvent::Ended { index, end: TaskEnd::Lost { reason, transient: true } });
        }
    }
}

fn engine(e: KubernetesError) -> ExecutorError {
    ExecutorError::Engine { executor: "kubernetes", reason: e.to_string() }
}

#[async_trait]
impl Executor for KubernetesExecutor {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    /// Applies one Indexed Job per contiguous range of `tasks`: `<name>-<first index>` the first
    /// time, `<name>-r<launch>-<first index>` for later launches (retries), so names never clash.
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
        let jobs = manifests(&job, &self.inner.opts).map_err(engine)?;
        if jobs.is_empty() {
            return Ok(());
        }
        self.inner.kubectl.run(&["apply", "-f", "-"], Some(to_json(&jobs))).await.map_err(engine)?;
        let spawn = {
            let mut st = self.inner.state();
            for (start, end) in job.ranges() {
                st.jobs.push(Tracked {
                    name: format!("{}-{start}", job.name),
                    start,
                    len: end - start + 1,
                    started: BTreeSet::new(),
                    ended: BTreeSet::new(),
                    missing: 0,
                });
            }
            st.events = Some(events);
            !std::mem::replace(&mut st.polling, true)
        };
        if spawn {
            tokio::spawn(Arc::clone(&self.inner).poll());
        }
        Ok(())
    }

    /// One index of an Indexed Job cannot be stopped alone: its running pod is deleted, which
    /// fails the attempt. Kubernetes counts it against `backoffLimitPerIndex` and starts a new
    /// pod while retries remain; the index ends (and is reported) when Kubernetes is done with it.
    async fn cancel(&self, index: u32) -> Result<(), ExecutorError> {
        let target = self.inner.state().jobs.iter().find_map(|t| {
            let local = index.checked_sub(t.start).filter(|&l| l < t.len && !t.ended.contains(&l))?;
            Some((t.name.clone(), local))
        });
        let Some((job, local)) = target else { return Ok(()) };
        let selector = format!("{LABEL_JOB}={job},{LABEL_INDEX}={local}");
        self.inner
            .kubectl
            .run(&["delete", "pod", "-l", &selector, "--wait=false", "--ignore-not-found"], None)
            .await
            .map_err(engine)?;
        Ok(())
    }

    /// Deletes every Job launched (their pods with them, in the background).
    async fn shutdown(&self) {
        let names: Vec<String> = {
            let mut st = self.inner.state();
            st.stopped = true;
            st.jobs.iter().filter(|t| !t.done()).map(|t| t.name.clone()).collect()
        };
        if names.is_empty() {
            return;
        }
        let mut args = vec!["delete", "job"];
        args.extend(names.iter().map(String::as_str));
        args.extend(["--cascade=background", "--wait=false", "--ignore-not-found"]);
        if let Err(e) = self.inner.kubectl.run(&args, None).await {
            eprintln!(
                "the Kubernetes Jobs were not deleted ({e}); delete them with `kubectl delete job -l {}`",
                self.inner.selector()
            );
        }
    }
}

#[cfg(test)]
mod tests;
