//! AWS Lambda: the function's event and answer, the function body, and the executor that invokes
//! it. The function is this same binary (`provided.al2023`, `bootstrap`): the CLI runs the
//! Runtime API loop and calls [`handle`]; nothing is serialized but a location, a run id and
//! task indices, because the run itself is stored in the cube (`worker`).
//!
//! Owns: [`Invocation`] and [`Answer`], what a function error or an SDK error means for a task
//! (throttling: wait and invoke again, not an attempt; a function timeout or crash: transient;
//! a handled permanent failure: permanent), and keeping at most `max_parallel` invocations in
//! flight. Must not touch: retries across attempts, timeouts, recording (the scheduler does
//! those) or what a task computes (the worker).
//!
//! ```text
//! scheduler ──launch──▶ pool (≤ max_parallel) ──Invoke {out, run, tasks}──▶ Lambda ─▶ handle()
//!     ◀── TaskEnd::Result (inline, or results/<i>.json past the 6 MB answer limit) ───────┘
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::config::http::HttpResponse;
use aws_sdk_lambda::config::retry::RetryConfig;
use aws_sdk_lambda::config::timeout::TimeoutConfig;
use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_smithy_types::error::display::DisplayErrorContext;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub mod package;

use super::pool::Pool;
use super::remote::{self, ResultReader};
use super::scheduler::{Executor, ExecutorError, TaskEnd, TaskEvent};
use crate::store::OutLocation;
use crate::worker::{self, TaskExit, TaskResult, WorkerOptions};

/// Invocations in flight at most, by default (`--max-parallel`): half of a new account's
/// concurrency (1,000), so a build leaves room for other functions.
pub const DEFAULT_MAX_PARALLEL: u32 = 500;
/// Lambda answers a synchronous invocation with at most 6 MB; a result past this stays in the
/// run folder and the answer says so.
const INLINE_RESULT_MAX: usize = 5 * 1024 * 1024;
/// Throttled invocations wait this long first, doubling up to [`THROTTLE_MAX_WAIT`].
const THROTTLE_FIRST_WAIT: Duration = Duration::from_millis(200);
const THROTTLE_MAX_WAIT: Duration = Duration::from_secs(20);
/// A task throttled for this long in all ends as lost (transient): the account is busy.
const THROTTLE_GIVE_UP: Duration = Duration::from_secs(900);
/// Beyond Lambda's own 15-minute bound: the answer of a function that ran to its timeout.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(15 * 60 + 60);

/// The event of one invocation: run `run` of the cube at `out`, tasks `tasks` in order.
/// Credentials never travel here: the function uses its role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invocation {
    pub out: String,
    pub run: String,
    pub tasks: Vec<u32>,
}

/// The function's answer: one outcome per task of the event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub tasks: Vec<TaskOutcome>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskOutcome {
    pub index: u32,
    pub exit: TaskExit,
    /// The worker's result (with Icechunk change sets); `None` when it would not fit in the
    /// answer (read `results/<index>.json` of the run) or the task never ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
    /// Why the task did not run (its run could not be read, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The function body: every task of `event` through the worker. Never fails as a function:
/// each task's outcome is in the answer, so a permanent failure is told as such and not
/// mistaken for a crash that Lambda would retry.
pub async fn handle(event: Invocation, opts: &WorkerOptions) -> Answer {
    let mut tasks = Vec::with_capacity(event.tasks.len());
    let loc = OutLocation::parse(&event.out);
    for &index in &event.tasks {
        let outcome = match &loc {
            Err(e) => failed(index, e.to_string(), false),
            Ok(loc) => match worker::run_stored_task(loc, &event.run, index, opts).await {
                Ok(result) => {
                    let fits = serde_json::to_vec(&result).is_ok_and(|b| b.len() <= INLINE_RESULT_MAX);
                    TaskOutcome { index, exit: result.exit, result: fits.then_some(result), error: None }
                }
                Err(e) => failed(index, crate::error_chain(&e), e.is_transient()),
            },
        };
        tasks.push(outcome);
    }
    Answer { tasks }
}

fn failed(index: u32, error: String, transient: bool) -> TaskOutcome {
    let exit = if transient { TaskExit::Retry } else { TaskExit::Permanent };
    TaskOutcome { index, exit, result: None, error: Some(error) }
}

/// Which function and how many at once.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaOptions {
    /// Name, ARN or partial ARN (`--function`), optionally `NAME:ALIAS`.
    pub function: String,
    /// Invocations in flight at most (0: [`DEFAULT_MAX_PARALLEL`]).
    pub max_parallel: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    #[error("AWS Lambda: {0}; or run with another executor")]
    Config(#[from] super::aws::AwsConfigError),
    #[error("AWS Lambda option {option}: {problem}")]
    BadOption { option: &'static str, problem: String },
}

/// Counts of what the invoker did, for the run's summary.
#[derive(Debug, Default)]
struct Counts {
    invocations: AtomicU64,
    throttled: AtomicU64,
}

/// Invokes the function once per task attempt.
pub struct LambdaExecutor {
    pool: Pool,
    counts: Arc<Counts>,
    started: Instant,
}

/// What one invocation needs; shared by the pool's attempts.
struct Invoker {
    client: Client,
    function: String,
    out: String,
    run: String,
    results: ResultReader,
    counts: Arc<Counts>,
}

impl LambdaExecutor {
    /// An executor for run `run` of the cube at `out` through a client configured from the
    /// standard AWS environment (`AWS_ENDPOINT_URL_LAMBDA` or `AWS_ENDPOINT_URL` for a stand-in
    /// such as the local emulator); checks the region and that credentials resolve first.
    pub async fn connect(
        out: &str,
        run: &str,
        opts: LambdaOptions,
        results: ResultReader,
    ) -> Result<LambdaExecutor, LambdaError> {
        let config = super::aws::load(aws_config::defaults(aws_config::BehaviorVersion::latest())).await?;
        // One place retries (the scheduler, across attempts; throttling here): none in the SDK.
        let conf = aws_sdk_lambda::config::Builder::from(&config)
            .retry_config(RetryConfig::disabled())
            .timeout_config(TimeoutConfig::builder().operation_attempt_timeout(INVOKE_TIMEOUT).build())
            .build();
        LambdaExecutor::new(Client::from_conf(conf), out, run, opts, results)
    }

    /// An executor invoking through `client`.
    pub fn new(
        client: Client,
        out: &str,
        run: &str,
        opts: LambdaOptions,
        results: ResultReader,
    ) -> Result<LambdaExecutor, LambdaError> {
        if opts.function.trim().is_empty() {
            return Err(LambdaError::BadOption {
                option: "function",
                problem: "is empty; give the function's name or ARN (see `eocube lambda package`)".into(),
            });
        }
        let counts = Arc::new(Counts::default());
        let invoker = Arc::new(Invoker {
            client,
            function: opts.function.clone(),
            out: out.to_string(),
            run: run.to_string(),
            results,
            counts: Arc::clone(&counts),
        });
        let max = if opts.max_parallel == 0 { DEFAULT_MAX_PARALLEL } else { opts.max_parallel };
        let attempt = move |index: u32| {
            let invoker = Arc::clone(&invoker);
            Box::pin(async move { invoker.task(index).await }) as futures::future::BoxFuture<'static, TaskEnd>
        };
        Ok(LambdaExecutor { pool: Pool::new(max as usize, Arc::new(attempt)), counts, started: Instant::now() })
    }

    /// Invocations sent so far (throttled ones included) and how many were throttled.
    pub fn invocations(&self) -> (u64, u64) {
        (self.counts.invocations.load(Ordering::Relaxed), self.counts.throttled.load(Ordering::Relaxed))
    }
}

/// What an SDK error means for the invocation that met it.
#[derive(Debug, PartialEq)]
enum Failure {
    /// Too many at once for the account or the function: wait and send it again.
    Throttled,
    Transient(String),
    Permanent(String),
}

fn classify(e: &SdkError<InvokeError, HttpResponse>) -> Failure {
    let text = || DisplayErrorContext(e).to_string();
    match e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let err = se.err();
            if status == 429 || err.is_too_many_requests_exception() || err.is_ec2_throttled_exception() {
                Failure::Throttled
            } else if err.is_resource_not_found_exception() {
                Failure::Permanent(format!(
                    "{}; create the function first (`eocube lambda package` prints the command) or fix `function`",
                    text()
                ))
            } else if status == 401 || status == 403 {
                Failure::Permanent(format!(
                    "{}; the credentials may not invoke this function: allow lambda:InvokeFunction on it",
                    text()
                ))
            } else if status >= 500
                || err.is_resource_not_ready_exception()
                || err.is_service_exception()
                || err.is_eni_limit_reached_exception()
                || err.is_ec2_unexpected_exception()
            {
                Failure::Transient(text())
            } else {
                Failure::Permanent(text())
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::Transient(text())
        }
        _ => Failure::Permanent(text()),
    }
}

impl Invoker {
    /// One attempt of task `index`: invocations until one is not throttled.
    async fn task(&self, index: u32) -> TaskEnd {
        let event = Invocation { out: self.out.clone(), run: self.run.clone(), tasks: vec![index] };
        let payload = match serde_json::to_vec(&event) {
            Ok(p) => p,
            Err(e) => return TaskEnd::Lost { reason: format!("the event cannot be written: {e}"), transient: false },
        };
        let t0 = Instant::now();
        let mut wait = THROTTLE_FIRST_WAIT;
        loop {
            self.counts.invocations.fetch_add(1, Ordering::Relaxed);
            let sent =
                self.client.invoke().function_name(&self.function).payload(Blob::new(payload.clone())).send().await;
            let failure = match sent {
                Ok(out) => return self.ended(index, out.function_error(), out.payload().map(|b| b.as_ref())).await,
                Err(e) => classify(&e),
            };
            match failure {
                Failure::Throttled if t0.elapsed() < THROTTLE_GIVE_UP => {
                    self.counts.throttled.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait.mul_f64(0.5 + 0.5 * super::jitter())).await;
                    wait = (wait * 2).min(THROTTLE_MAX_WAIT);
                }
                Failure::Throttled => {
                    let reason = format!("Lambda throttled every invocation for {} s", THROTTLE_GIVE_UP.as_secs());
                    return TaskEnd::Lost { reason, transient: true };
                }
                Failure::Transient(reason) => {
                    return TaskEnd::Lost { reason: format!("invoking {}: {reason}", self.function), transient: true };
                }
                Failure::Permanent(reason) => {
                    return TaskEnd::Lost { reason: format!("invoking {}: {reason}", self.function), transient: false };
                }
            }
        }
    }

    /// How task `index` ended, from what the function answered.
    async fn ended(&self, index: u32, function_error: Option<&str>, payload: Option<&[u8]>) -> TaskEnd {
        let payload = payload.unwrap_or_default();
        if let Some(kind) = function_error {
            // A crash, an out-of-memory kill or the function's timeout: Lambda's own words.
            #[derive(Deserialize, Default)]
            #[serde(rename_all = "camelCase", default)]
            struct Failed {
                error_type: String,
                error_message: String,
            }
            let f: Failed = serde_json::from_slice(payload).unwrap_or_default();
            let reason = format!("the function failed ({kind}, {}): {}", f.error_type, f.error_message);
            return TaskEnd::Lost { reason, transient: true };
        }
        let answer: Answer = match serde_json::from_slice(payload) {
            Ok(a) => a,
            Err(e) => {
                let reason = format!(
                    "function {} answered something that is not an eocube answer ({e}); is it this version of eocube?",
                    self.function
                );
                return TaskEnd::Lost { reason, transient: false };
            }
        };
        match answer.tasks.into_iter().find(|t| t.index == index) {
            Some(TaskOutcome { result: Some(result), .. }) => TaskEnd::Result(result),
            Some(TaskOutcome { error: Some(reason), exit, .. }) => {
                TaskEnd::Lost { reason, transient: exit != TaskExit::Permanent }
            }
            // Ran, but the result was too large for the answer: the run folder holds it.
            Some(_) => remote::task_end(&self.results, index, format!("task {index} left no result"), true).await,
            None => TaskEnd::Lost { reason: format!("the function's answer has no task {index}"), transient: true },
        }
    }
}

#[async_trait]
impl Executor for LambdaExecutor {
    fn name(&self) -> &'static str {
        "lambda"
    }

    async fn launch(&self, tasks: Vec<u32>, events: mpsc::UnboundedSender<TaskEvent>) -> Result<(), ExecutorError> {
        self.pool.launch(tasks, &events);
        Ok(())
    }

    /// The invocation is abandoned; Lambda runs it to its end, which rewrites the same chunks.
    async fn cancel(&self, index: u32) -> Result<(), ExecutorError> {
        self.pool.cancel(index);
        Ok(())
    }

    async fn shutdown(&self) {
        self.pool.shutdown();
    }

    fn summary(&self) -> Option<String> {
        let (n, throttled) = self.invocations();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        Some(format!(
            "lambda: {n} invocations in {secs:.1} s ({:.1}/s), {throttled} throttled, {} in flight at the end",
            n as f64 / secs,
            self.pool.running()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_answers_round_trip() {
        let e = Invocation { out: "s3://b/cube.zarr".into(), run: "r1".into(), tasks: vec![3, 4] };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, r#"{"out":"s3://b/cube.zarr","run":"r1","tasks":[3,4]}"#);
        assert_eq!(serde_json::from_str::<Invocation>(&text).unwrap(), e);
        let a = Answer { tasks: vec![failed(3, "no run r1".into(), false)] };
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(text, r#"{"tasks":[{"index":3,"exit":"permanent","error":"no run r1"}]}"#);
        let back = serde_json::from_str::<Answer>(&text).unwrap();
        assert_eq!((back.tasks[0].index, back.tasks[0].exit), (3, TaskExit::Permanent));
    }

    /// An invoker whose client is never used (only [`Invoker::ended`] is called) and whose run
    /// folder holds `stored` for task 7.
    fn invoker(stored: Option<TaskResult>) -> Invoker {
        let conf = aws_sdk_lambda::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_lambda::config::Region::new("us-east-1"))
            .build();
        let stored = Arc::new(stored);
        let results: ResultReader = Arc::new(move |_| {
            let stored = Arc::clone(&stored);
            Box::pin(async move { Ok((*stored).clone()) })
        });
        Invoker {
            client: Client::from_conf(conf),
            function: "eocube".into(),
            out: "/c".into(),
            run: "r".into(),
            results,
            counts: Arc::default(),
        }
    }

    fn result(index: u32) -> TaskResult {
        let job = crate::plan::Job { t: 0, iy: 1, ix: 2 };
        TaskResult::failed_before_jobs(index, &[job], "x", true)
    }

    #[tokio::test]
    async fn answers_become_task_ends() {
        let inv = invoker(Some(result(7)));
        let answer = |o: TaskOutcome| serde_json::to_vec(&Answer { tasks: vec![o] }).unwrap();
        // Inline result.
        let a = answer(TaskOutcome { index: 7, exit: TaskExit::Retry, result: Some(result(7)), error: None });
        assert!(matches!(inv.ended(7, None, Some(&a)).await, TaskEnd::Result(r) if r.index == 7));
        // Too large for the answer: read from the run folder; missing there: lost, transient.
        let a = answer(TaskOutcome { index: 7, exit: TaskExit::Done, result: None, error: None });
        assert!(matches!(inv.ended(7, None, Some(&a)).await, TaskEnd::Result(r) if r.index == 7));
        let a = answer(TaskOutcome { index: 7, exit: TaskExit::Done, result: None, error: None });
        assert!(matches!(invoker(None).ended(7, None, Some(&a)).await, TaskEnd::Lost { transient: true, .. }));
        // A handled permanent failure is not retried; a retry outcome is.
        let a = answer(failed(7, "no run r".into(), false));
        assert!(
            matches!(inv.ended(7, None, Some(&a)).await, TaskEnd::Lost { transient: false, reason } if reason == "no run r")
        );
        let a = answer(failed(7, "S3 503".into(), true));
        assert!(matches!(inv.ended(7, None, Some(&a)).await, TaskEnd::Lost { transient: true, .. }));
        // A function error (crash, timeout) is transient and keeps Lambda's words.
        let crash = br#"{"errorType":"Sandbox.Timedout","errorMessage":"Task timed out after 300.00 seconds"}"#;
        match inv.ended(7, Some("Unhandled"), Some(crash)).await {
            TaskEnd::Lost { transient: true, reason } => assert!(reason.contains("timed out after 300"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // Not an eocube answer (another function): permanent; an answer without the task: transient.
        assert!(matches!(inv.ended(7, None, Some(b"{\"ok\":1}")).await, TaskEnd::Lost { transient: false, .. }));
        let a = answer(failed(8, "x".into(), false));
        assert!(matches!(inv.ended(7, None, Some(&a)).await, TaskEnd::Lost { transient: true, .. }));
    }

    #[tokio::test]
    async fn a_bad_location_is_a_permanent_outcome_not_a_function_error() {
        let e = Invocation { out: "ftp://x/y".into(), run: "r".into(), tasks: vec![0, 1] };
        let a = handle(e, &WorkerOptions::default()).await;
        assert_eq!(a.tasks.len(), 2);
        assert!(
            a.tasks
                .iter()
                .all(|t| t.exit == TaskExit::Permanent && t.error.as_deref().is_some_and(|m| m.contains("ftp")))
        );
    }
}
