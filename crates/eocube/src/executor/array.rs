//! What every array-job engine (Slurm, Kubernetes Indexed Jobs, AWS Batch array jobs) is given:
//! one command run once per task index, the indices, how many at once, and the environment.
//!
//! Owns: the engine-neutral description of a task array and the worker's exit codes. Must not
//! touch: what a task computes (`eocube worker` does that) or how an engine is driven (one module
//! per engine).

/// `eocube worker` finished its task: every job done (or skipped as already done).
pub const EXIT_DONE: i32 = 0;
/// `eocube worker` failed in a way another attempt may fix (a timeout, a 503, a reset
/// connection): engines retry it. sysexits' EX_TEMPFAIL.
pub const EXIT_RETRY: i32 = 75;
/// `eocube worker` failed in a way no retry can fix (a 404 scene, a corrupt TIFF, refused
/// credentials, a run that does not exist): engines must not retry it. sysexits' EX_DATAERR.
pub const EXIT_PERMANENT: i32 = 65;

/// One run's tasks as an array job.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayJob {
    /// The job's name on the engine, e.g. `eocube-<run id>`.
    pub name: String,
    /// The worker command of every task, without its index: e.g. `["/usr/local/bin/eocube",
    /// "worker", "s3://bucket/cube.zarr", "--run", "<run id>"]`. Each task finds its index in the
    /// engine's environment variable (`SLURM_ARRAY_TASK_ID`, `JOB_COMPLETION_INDEX`,
    /// `AWS_BATCH_JOB_ARRAY_INDEX`); an engine that must split an array appends
    /// `--index-offset K` for the part that starts at index K.
    pub command: Vec<String>,
    /// The task indices to run: sorted, unique, 0-based; a resubmission may have gaps.
    pub indices: Vec<u32>,
    /// At most this many tasks at once.
    pub max_parallel: u32,
    /// Environment of every task: settings only (region, endpoint), never a secret.
    pub env: Vec<(String, String)>,
}

impl ArrayJob {
    /// The indices in contiguous runs `start..=end`, for engines that take ranges.
    pub fn ranges(&self) -> Vec<(u32, u32)> {
        ranges(&self.indices)
    }

    /// The array of launch `round` (0 = the first) of `tasks`: indices sorted and unique, and
    /// from round 1 on named `<name>-r<round>`, so a retry's engine jobs never clash with the
    /// first launch's.
    pub fn launch(&self, round: u32, mut tasks: Vec<u32>) -> ArrayJob {
        tasks.sort_unstable();
        tasks.dedup();
        let name = if round == 0 { self.name.clone() } else { format!("{}-r{round}", self.name) };
        ArrayJob { name, indices: tasks, ..self.clone() }
    }
}

/// Sorted `indices` in contiguous runs `start..=end`.
pub fn ranges(indices: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &i in indices {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => out.push((i, i)),
        }
    }
    out
}

/// Sorted `indices` as text, the way Slurm writes arrays: `0-3,7,9-12`.
pub fn ranges_text(indices: &[u32]) -> String {
    let parts: Vec<String> =
        ranges(indices).into_iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_join_contiguous_indices() {
        let job = ArrayJob {
            name: "eocube-x".into(),
            command: vec!["eocube".into(), "worker".into()],
            indices: vec![0, 1, 2, 5, 7, 8],
            max_parallel: 2,
            env: vec![],
        };
        assert_eq!(job.ranges(), vec![(0, 2), (5, 5), (7, 8)]);
        assert_eq!(ranges_text(&job.indices), "0-2,5,7-8");
        assert_eq!(ranges_text(&[]), "");
        let again = job.launch(2, vec![8, 1, 1]);
        assert_eq!((again.name.as_str(), again.indices.as_slice()), ("eocube-x-r2", &[1, 8][..]));
        assert_eq!(job.launch(0, vec![3]).name, "eocube-x");
    }
}
