//! The run report: what a run did, when, where and at what cost (`eocube report`), and what a
//! run would cost before it starts (`eocube plan --estimate`).
//!
//! ```text
//! cube report lines (JobRecord, stamped with their run) + run.json ─▶ RunReport ─▶ render::html
//!                                                   cost::Prices ─▶ cost::Cost ─┘
//! plan + cost::MEASURED (per-job figures of the synthetic archive) ─▶ cost::estimate
//! ```
//!
//! Owns: the [`RunReport`] model (tasks with their spans, workers, attempts and outcome; the
//! jobs; retries and failures; bytes and requests), the page drawn from it ([`render`]), the
//! price constants and the pre-run estimate ([`cost`]). Must not touch: the records themselves
//! (the scheduler writes them) or the store's layout (it reads through [`Cube::report`]). Only
//! [`read`] does I/O; everything else is pure.

pub mod cost;
pub mod render;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::executor::{JobRecord, Outcome};
use crate::plan::Job;
use crate::store::{Cube, StoreError};
use crate::worker::{self, StoredRun, WorkerError};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{location} has no runs: build into it first (`eocube build ... --out {location}`)")]
    NoRuns { location: String },
    #[error(transparent)]
    Run(#[from] WorkerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a task ended, over all its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOutcome {
    /// Every job done in the first attempt.
    Done,
    /// Every job done, after at least one retry.
    Retried,
    /// At least one job failed for good.
    Failed,
}

impl TaskOutcome {
    pub fn label(self) -> &'static str {
        match self {
            TaskOutcome::Done => "done",
            TaskOutcome::Retried => "done after retries",
            TaskOutcome::Failed => "failed",
        }
    }
}

/// One attempt of a task as its records show it: the span of its jobs' last runs.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptSpan {
    /// From 1 (0: a line written before attempts were stamped).
    pub attempt: u32,
    /// Unix seconds.
    pub start: f64,
    pub end: f64,
    pub failed: bool,
}

/// One task of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskLine {
    pub index: u32,
    /// Attempts with recorded times, oldest first (an attempt retried wholesale leaves only its
    /// errors: its jobs are recorded by the attempt that finished them).
    pub attempts: Vec<AttemptSpan>,
    /// Attempts made (the highest recorded), at least 1.
    pub attempts_made: u32,
    pub workers: Vec<String>,
    pub outcome: TaskOutcome,
    pub jobs: usize,
    pub failed_jobs: usize,
    pub peak_rss_mb: Option<f64>,
}

impl TaskLine {
    /// First start and last end, Unix seconds.
    pub fn span(&self) -> Option<(f64, f64)> {
        let start = self.attempts.iter().map(|a| a.start).reduce(f64::min)?;
        let end = self.attempts.iter().map(|a| a.end).reduce(f64::max)?;
        Some((start, end))
    }

    /// Seconds the task's attempts ran (what Lambda bills), waits between attempts left out.
    pub fn busy_seconds(&self) -> f64 {
        self.attempts.iter().map(|a| a.end - a.start).sum()
    }
}

/// A run, from its records.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub run: String,
    pub executor: String,
    /// When the run was written, RFC 3339.
    pub created: String,
    /// Memory per task the engine fixed (Lambda), from the run record.
    pub memory_mb: Option<u32>,
    /// Tasks in the run.
    pub planned_tasks: u32,
    /// Tasks with at least one record, by index.
    pub tasks: Vec<TaskLine>,
    /// The run's job records, in recorded order.
    pub jobs: Vec<JobRecord>,
    /// Report lines of this run that did not parse or name a job outside it.
    pub unreadable: usize,
}

impl RunReport {
    /// The report of `run` from `lines` (every report line of the cube): those stamped with its
    /// id, grouped by task.
    pub fn from_lines(run: &StoredRun, lines: &[Value]) -> RunReport {
        let id = &run.record.id;
        let task_of: BTreeMap<Job, u32> =
            run.jobs.iter().enumerate().map(|(i, &j)| (j, (i / run.record.jobs_per_task.max(1)) as u32)).collect();
        let mut jobs = Vec::new();
        let mut unreadable = 0;
        let mut by_task: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for line in lines.iter().filter(|l| l.get("run").and_then(Value::as_str) == Some(id.as_str())) {
            match serde_json::from_value::<JobRecord>(line.clone()) {
                Ok(r) => match task_of.get(&r.job) {
                    Some(&t) => {
                        by_task.entry(t).or_default().push(jobs.len());
                        jobs.push(r);
                    }
                    None => unreadable += 1,
                },
                Err(_) => unreadable += 1,
            }
        }
        let tasks = by_task.into_iter().map(|(index, rows)| task_line(index, rows.iter().map(|&i| &jobs[i]))).collect();
        RunReport {
            run: id.clone(),
            executor: run.record.executor.clone(),
            created: run.record.created.clone(),
            memory_mb: run.record.memory_mb,
            planned_tasks: run.record.tasks,
            tasks,
            jobs,
            unreadable,
        }
    }

    /// First task start and last task end, Unix seconds.
    pub fn span(&self) -> Option<(f64, f64)> {
        let spans = || self.tasks.iter().filter_map(TaskLine::span);
        Some((spans().map(|s| s.0).reduce(f64::min)?, spans().map(|s| s.1).reduce(f64::max)?))
    }

    /// Wall time from the first start to the last end.
    pub fn wall_seconds(&self) -> f64 {
        self.span().map_or(0.0, |(a, b)| b - a)
    }

    /// Task attempts made: what an engine that bills per invocation counts.
    pub fn attempts(&self) -> u64 {
        self.tasks.iter().map(|t| u64::from(t.attempts_made)).sum()
    }

    pub fn retries(&self) -> u64 {
        self.jobs.iter().map(|j| u64::from(j.retries)).sum()
    }

    /// Failed request attempts sent again, over all jobs ([`JobRecord::request_retries`]).
    pub fn request_retries(&self) -> u64 {
        self.jobs.iter().map(|j| j.request_retries).sum()
    }

    pub fn failures(&self) -> impl Iterator<Item = &JobRecord> {
        self.jobs.iter().filter(|j| j.outcome == Outcome::Failed)
    }

    pub fn bytes(&self) -> u64 {
        self.jobs.iter().map(|j| j.stats.bytes).sum()
    }

    pub fn requests(&self) -> u64 {
        self.jobs.iter().map(|j| j.stats.requests).sum()
    }

    /// Each job's duration in seconds: its recorded span, else its `seconds`.
    pub fn job_seconds(&self) -> Vec<f64> {
        self.jobs.iter().map(|j| j.span().map_or(j.seconds, |(a, b)| b - a)).collect()
    }

    /// Tasks running at once over time: `(seconds since the run's start, tasks)` at every change,
    /// starting at `(0, 0)` (an end and a start at one instant: the end counts first).
    pub fn concurrency(&self) -> Vec<(f64, usize)> {
        let Some((t0, _)) = self.span() else { return Vec::new() };
        let mut events: Vec<(f64, i32)> = Vec::new();
        for a in self.tasks.iter().flat_map(|t| &t.attempts) {
            events.push((a.start - t0, 1));
            events.push((a.end - t0, -1));
        }
        events.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        let mut steps = vec![(0.0, 0usize)];
        let mut n: i64 = 0;
        for (t, d) in events {
            n = (n + i64::from(d)).max(0);
            match steps.last_mut() {
                Some(last) if last.0 == t => last.1 = n as usize,
                _ => steps.push((t, n as usize)),
            }
        }
        steps
    }

    /// The most tasks that ran at once.
    pub fn peak_concurrency(&self) -> usize {
        self.concurrency().iter().map(|s| s.1).max().unwrap_or(0)
    }
}

fn task_line<'a>(index: u32, records: impl Iterator<Item = &'a JobRecord>) -> TaskLine {
    let mut by_attempt: BTreeMap<u32, AttemptSpan> = BTreeMap::new();
    let (mut jobs, mut failed_jobs, mut retried, mut attempts_made) = (0, 0, false, 1);
    let mut workers: Vec<String> = Vec::new();
    let mut peak: Option<f64> = None;
    for r in records {
        jobs += 1;
        let failed = r.outcome == Outcome::Failed;
        failed_jobs += usize::from(failed);
        retried |= r.retries > 0;
        // Older lines have no attempt: the retries before the recorded one say which it was.
        let attempt = if r.attempt > 0 { r.attempt } else { r.retries + 1 };
        attempts_made = attempts_made.max(attempt);
        if let Some(w) = &r.worker
            && !workers.contains(w)
        {
            workers.push(w.clone());
        }
        peak = match (peak, r.peak_rss_mb) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some((start, end)) = r.span() {
            let span = by_attempt.entry(attempt).or_insert(AttemptSpan { attempt, start, end, failed });
            span.start = span.start.min(start);
            span.end = span.end.max(end);
            span.failed |= failed;
        }
    }
    let outcome = if failed_jobs > 0 {
        TaskOutcome::Failed
    } else if retried {
        TaskOutcome::Retried
    } else {
        TaskOutcome::Done
    };
    TaskLine {
        index,
        attempts: by_attempt.into_values().collect(),
        attempts_made,
        workers,
        outcome,
        jobs,
        failed_jobs,
        peak_rss_mb: peak,
    }
}

/// Reads run `run` of `cube` (default: the newest) and its report lines.
pub async fn read(cube: &Cube, run: Option<&str>) -> Result<RunReport, ReportError> {
    let id = match run {
        Some(r) => r.to_string(),
        None => worker::list_runs(cube)
            .await?
            .pop()
            .ok_or_else(|| ReportError::NoRuns { location: cube.location().to_string() })?,
    };
    let stored = worker::read_run(cube, &id).await?;
    let lines = cube.report().await?;
    Ok(RunReport::from_lines(&stored, &lines))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::job::JobStats;
    use crate::worker::RunRecord;

    /// A run of `tasks` tasks of `per_task` jobs each.
    pub(crate) fn stored(tasks: u32, per_task: usize) -> StoredRun {
        let jobs: Vec<Job> = (0..tasks as usize * per_task).map(|i| Job { t: i, iy: 0, ix: 0 }).collect();
        StoredRun {
            record: RunRecord {
                id: "r1".into(),
                created: "2026-12-01T10:00:00Z".into(),
                executor: "local".into(),
                spec: serde_json::json!({}),
                jobs: jobs.len(),
                jobs_per_task: per_task,
                tasks,
                job_timeout_seconds: 90.0,
                request_timeout_seconds: None,
                skip_bad_scenes: false,
                allow_empty: false,
                memory_mb: None,
            },
            jobs,
        }
    }

    /// A done record of job `t` in run `run`, attempt 1, from `start` to `end` (Unix seconds).
    pub(crate) fn line(run: &str, t: usize, start: f64, end: f64) -> JobRecord {
        let stats = JobStats { requests: 10, bytes: 1000, ..Default::default() };
        let mut r = JobRecord::done(Job { t, iy: 0, ix: 0 }, stats, end - start);
        r.run = Some(run.into());
        r.attempt = 1;
        r.worker = Some("host:1".into());
        (r.started, r.ended) = (Some(start), Some(end));
        r
    }

    pub(crate) fn values(records: &[JobRecord]) -> Vec<Value> {
        records.iter().map(|r| serde_json::to_value(r).unwrap()).collect()
    }

    #[test]
    fn lines_of_other_runs_are_left_out_and_jobs_group_into_their_tasks() {
        let run = stored(3, 2);
        let mut failed = line("r1", 5, 104.0, 105.0);
        failed.outcome = Outcome::Failed;
        failed.retries = 2;
        failed.attempt = 3;
        failed.error = Some("boom".into());
        let mut retried = line("r1", 2, 101.0, 103.0);
        retried.retries = 1;
        retried.attempt = 2;
        let records = [
            line("r1", 0, 100.0, 101.0),
            line("r1", 1, 101.0, 102.0),
            retried,
            line("r1", 3, 103.0, 104.5),
            line("r1", 4, 100.5, 102.0),
            failed,
            line("r0", 0, 50.0, 60.0),
        ];
        let mut lines = values(&records);
        lines.push(serde_json::json!({"run": "r1", "job": "garbled"}));
        let r = RunReport::from_lines(&run, &lines);
        assert_eq!(r.jobs.len(), 6);
        assert_eq!(r.unreadable, 1);
        let outcomes: Vec<TaskOutcome> = r.tasks.iter().map(|t| t.outcome).collect();
        assert_eq!(outcomes, [TaskOutcome::Done, TaskOutcome::Retried, TaskOutcome::Failed]);
        assert_eq!(r.tasks[0].span(), Some((100.0, 102.0)));
        assert_eq!(r.tasks[1].attempts.len(), 2, "attempts 1 and 2 of task 1");
        assert_eq!(r.attempts(), 1 + 2 + 3);
        assert_eq!(r.retries(), 3);
        assert_eq!(r.failures().count(), 1);
        assert_eq!((r.bytes(), r.requests()), (6000, 60));
        assert_eq!(r.span(), Some((100.0, 105.0)));
        assert_eq!(r.wall_seconds(), 5.0);
        assert_eq!(r.tasks[0].busy_seconds(), 2.0);
    }

    #[test]
    fn concurrency_steps_up_and_down_and_ends_count_before_starts() {
        let run = stored(3, 1);
        let lines = values(&[line("r1", 0, 0.0, 2.0), line("r1", 1, 1.0, 3.0), line("r1", 2, 2.0, 4.0)]);
        let r = RunReport::from_lines(&run, &lines);
        assert_eq!(r.concurrency(), [(0.0, 1), (1.0, 2), (2.0, 2), (3.0, 1), (4.0, 0)]);
        assert_eq!(r.peak_concurrency(), 2);
    }

    #[test]
    fn an_empty_run_has_no_span_and_no_steps() {
        let r = RunReport::from_lines(&stored(4, 1), &[]);
        assert!(r.tasks.is_empty());
        assert_eq!((r.span(), r.wall_seconds(), r.concurrency().len()), (None, 0.0, 0));
    }
}
