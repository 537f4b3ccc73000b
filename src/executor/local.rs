//! The local executor: every pending job of the plan on this machine, `workers` at a time, on
//! the async runtime (I/O) and rayon's pool (CPU, sized to the cores).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use super::{JobRecord, Outcome, Progress, RunOptions, Summary, jitter};
use crate::job::{self, JobContext};
use crate::plan::Job;
use crate::store::{Cube, StoreError};

/// Runs every job of `ctx.plan` that `cube`'s ledger does not list as done, until all have
/// ended or `stop` completes (Ctrl-C): then in-flight jobs are dropped unfinished (their chunks
/// are either whole or not written; they stay pending) and the summary says `interrupted`.
///
/// Each ended job gets a line in the run report; a done job also gets its ledger record, written
/// after its chunk, so the ledger never claims a chunk that is not there.
pub async fn run_local(
    ctx: &JobContext,
    cube: &Arc<Cube>,
    opts: &RunOptions,
    progress: &mut Progress,
    stop: impl Future<Output = ()>,
) -> Result<Summary, StoreError> {
    let t0 = Instant::now();
    let done_before = cube.done_jobs()?;
    let all: Vec<Job> = ctx.plan.jobs().collect();
    let pending: Vec<Job> = all.iter().copied().filter(|j| !done_before.contains(&(j.t, j.iy, j.ix))).collect();
    let mut summary = Summary {
        jobs: all.len(),
        already_done: all.len() - pending.len(),
        not_run: pending.len(),
        ..Default::default()
    };
    progress.start(&summary);

    let mut runs = futures::stream::iter(pending.into_iter().map(|job| attempt(ctx, cube, opts, job)))
        .buffer_unordered(opts.workers.max(1));
    let mut stop = std::pin::pin!(stop);
    loop {
        let record = tokio::select! {
            biased;
            () = &mut stop => {
                summary.interrupted = true;
                break;
            }
            next = runs.next() => match next {
                Some(r) => r,
                None => break,
            },
        };
        let line = serde_json::to_value(&record).unwrap_or_default();
        if record.outcome == Outcome::Done {
            cube.mark_done((record.job.t, record.job.iy, record.job.ix), &line)?;
        }
        cube.append_report(&line)?;
        summary.not_run -= 1;
        summary.scenes += record.stats.scenes;
        summary.requests += record.stats.requests;
        summary.bytes += record.stats.bytes;
        summary.retries += u64::from(record.retries);
        match record.outcome {
            Outcome::Done => summary.done += 1,
            Outcome::Failed => {
                summary.failed += 1;
                summary.failures.push(record.clone());
            }
        }
        summary.seconds = t0.elapsed().as_secs_f64();
        progress.job_ended(&summary, &record);
    }
    summary.seconds = t0.elapsed().as_secs_f64();
    progress.finish(&summary);
    Ok(summary)
}

/// One job with its retries and timeout, always ending in a record.
async fn attempt(ctx: &JobContext, cube: &Arc<Cube>, opts: &RunOptions, job: Job) -> JobRecord {
    let t0 = Instant::now();
    let mut retried_errors = Vec::new();
    let mut retries = 0;
    loop {
        let (error, transient) = match tokio::time::timeout(opts.timeout, job::run(ctx, cube, job)).await {
            Ok(Ok(stats)) => {
                return JobRecord {
                    job,
                    outcome: Outcome::Done,
                    retries,
                    seconds: t0.elapsed().as_secs_f64(),
                    stats,
                    error: None,
                    retried_errors,
                };
            }
            Ok(Err(e)) => (e.to_string(), e.is_transient()),
            Err(_) => (
                format!(
                    "timed out after {} s; raise --timeout if jobs are slow rather than stuck",
                    opts.timeout.as_secs_f64()
                ),
                true,
            ),
        };
        if !transient || retries >= opts.retries {
            return JobRecord {
                job,
                outcome: Outcome::Failed,
                retries,
                seconds: t0.elapsed().as_secs_f64(),
                stats: Default::default(),
                error: Some(error),
                retried_errors,
            };
        }
        retried_errors.push(error);
        tokio::time::sleep(opts.delay(retries, jitter())).await;
        retries += 1;
    }
}
