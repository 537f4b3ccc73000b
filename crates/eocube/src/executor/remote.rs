//! What the executors of remote array engines (Kubernetes, AWS Batch) share: once the engine
//! says a task ended, its worker's result file says how.
//!
//! Owns: the result reader those executors are given and how a read result (or its absence)
//! becomes a [`TaskEnd`]. Must not touch: how an engine is driven (one module per engine).

use std::sync::Arc;

use futures::future::BoxFuture;

use super::scheduler::TaskEnd;
use crate::store::Cube;
use crate::worker::{self, TaskResult, WorkerError};

/// Reads the result file task `index` wrote, if it wrote one. [`cube_results`] reads it from the
/// cube; tests hand in their own.
pub type ResultReader = Arc<dyn Fn(u32) -> BoxFuture<'static, Result<Option<TaskResult>, WorkerError>> + Send + Sync>;

/// The results of run `run` in `cube` (`_eocube/runs/<run>/results/<index>.json`).
pub fn cube_results(cube: Arc<Cube>, run: String) -> ResultReader {
    Arc::new(move |index| {
        let cube = Arc::clone(&cube);
        let run = run.clone();
        Box::pin(async move { worker::read_result(&cube, &run, index).await })
    })
}

/// How task `index` ended, once its engine says it did: its result when the worker wrote one,
/// else lost for `no_result` (with `transient` saying whether another launch may help).
pub(crate) async fn task_end(results: &ResultReader, index: u32, no_result: String, transient: bool) -> TaskEnd {
    match results(index).await {
        Ok(Some(result)) => TaskEnd::Result(result),
        Ok(None) => TaskEnd::Lost { reason: no_result, transient },
        Err(e) => TaskEnd::Lost {
            reason: format!("task {index} ended but its result could not be read: {}", crate::error_chain(&e)),
            transient: e.is_transient(),
        },
    }
}

/// `job.env` then `extra`, a name given twice taking its last value at its first place.
pub(crate) fn merge_env(job: &[(String, String)], extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in job.iter().chain(extra) {
        match out.iter_mut().find(|(n, _)| n == k) {
            Some(slot) => slot.1 = v.clone(),
            None => out.push((k.clone(), v.clone())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_environment_wins_in_place() {
        let p = |a: &str, b: &str| (a.to_string(), b.to_string());
        let merged = merge_env(&[p("A", "1"), p("B", "2")], &[p("C", "3"), p("A", "9")]);
        assert_eq!(merged, vec![p("A", "9"), p("B", "2"), p("C", "3")]);
    }
}
