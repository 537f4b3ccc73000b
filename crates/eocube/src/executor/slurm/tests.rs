use std::path::Path;

use super::*;

fn job(indices: Vec<u32>, max_parallel: u32) -> ArrayJob {
    ArrayJob {
        name: "eocube-r1".into(),
        command: vec!["/opt/eocube".into(), "worker".into(), "s3://b/cube's.zarr".into(), "--run".into(), "r1".into()],
        indices,
        max_parallel,
        env: vec![("AWS_REGION".into(), "us-west-2".into())],
    }
}

#[test]
fn split_keeps_array_indices_below_max_array_size() {
    let indices: Vec<u32> = (0..25).collect();
    let parts = split(&indices, 10);
    assert_eq!(parts.iter().map(|p| p.offset).collect::<Vec<_>>(), vec![0, 10, 20]);
    assert_eq!(parts[2].indices, vec![20, 21, 22, 23, 24]);
    for p in &parts {
        assert!(p.indices.iter().all(|&i| i >= p.offset && i - p.offset < 10));
    }
    // A resubmission with gaps: only the parts that hold indices.
    let parts = split(&[3, 4, 31], 10);
    assert_eq!(parts, vec![Part { offset: 0, indices: vec![3, 4] }, Part { offset: 30, indices: vec![31] }]);
}

#[test]
fn array_spec_joins_ranges_relative_to_the_offset() {
    let part = Part { offset: 0, indices: (0..8).collect() };
    assert_eq!(array_spec(&part, 2), "0-7%2");
    let part = Part { offset: 100, indices: vec![100, 101, 102, 105, 107, 108] };
    assert_eq!(array_spec(&part, 0), "0-2,5,7-8");
}

#[test]
fn batch_script_runs_the_worker_with_quoted_arguments_and_the_offset() {
    let opts = SlurmOptions {
        partition: Some("debug".into()),
        time: Some("30".into()),
        mem: Some("4G".into()),
        ..SlurmOptions::default()
    };
    let part = Part { offset: 10, indices: vec![10, 11, 12] };
    let s = batch_script(&job(vec![10, 11, 12], 2), &part, &opts, Path::new("/logs"), Path::new("/home/u"));
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[0], "#!/bin/bash");
    for want in [
        "#SBATCH --job-name=eocube-r1",
        "#SBATCH --array=0-2%2",
        "#SBATCH --output=/logs/%A_%a.log",
        "#SBATCH --chdir=/home/u",
        "#SBATCH --partition=debug",
        "#SBATCH --time=30",
        "#SBATCH --mem=4G",
        "export AWS_REGION='us-west-2'",
        r"exec '/opt/eocube' 'worker' 's3://b/cube'\''s.zarr' '--run' 'r1' --index-offset 10",
    ] {
        assert!(lines.contains(&want), "{want:?} missing from\n{s}");
    }
    // No offset option for the first part; no empty options.
    let part = Part { offset: 0, indices: vec![0] };
    let s = batch_script(&job(vec![0], 0), &part, &SlurmOptions::default(), Path::new("/l"), Path::new("/w"));
    assert!(!s.contains("--index-offset") && !s.contains("--partition") && s.contains("--array=0\n"), "{s}");
}

/// Real `scontrol -o show job` output of this machine's Slurm 22.05: an array of 6 with %2,
/// one task exiting 75, one cancelled.
#[test]
fn records_of_a_finished_array() {
    let text = include_str!("../../../tests/data/slurm/scontrol-show-job.txt");
    let records = parse_records(text);
    assert_eq!(records.len(), 6);
    let by: BTreeMap<u32, &Record> = records.iter().map(|r| (r.array_index.unwrap(), r)).collect();
    assert_eq!(seen(by[&0]), Seen::Ended { exited: true, exit_code: 0, what: "exited with code 0".into() });
    assert_eq!(seen(by[&1]), Seen::Ended { exited: true, exit_code: 75, what: "exited with code 75".into() });
    assert_eq!(by[&2].state, "CANCELLED");
    assert_eq!(seen(by[&2]), Seen::Ended { exited: false, exit_code: 0, what: "CANCELLED (signal 15)".into() });
}

#[test]
fn records_of_a_running_array() {
    let text = include_str!("../../../tests/data/slurm/scontrol-show-job-running.txt");
    let records = parse_records(text);
    assert_eq!(records.len(), 4);
    // The pending tasks 3-5 are one record without an index.
    let pending: Vec<&Record> = records.iter().filter(|r| r.array_index.is_none()).collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(seen(pending[0]), Seen::Waiting);
    assert_eq!(pending[0].reason, "JobArrayTaskLimit");
    let running = records.iter().filter(|r| seen(r) == Seen::Running).count();
    assert_eq!(running, 2);
    let permanent = records.iter().find(|r| r.array_index == Some(1)).unwrap();
    assert_eq!(
        seen(permanent),
        Seen::Ended { exited: true, exit_code: EXIT_PERMANENT, what: "exited with code 65".into() }
    );
}

#[test]
fn states_that_are_not_the_workers_word() {
    let r = |state: &str, code: i32, signal: i32| Record {
        array_index: Some(0),
        state: state.into(),
        exit_code: code,
        signal,
        reason: "None".into(),
    };
    assert!(matches!(seen(&r("TIMEOUT", 0, 0)), Seen::Ended { exited: false, .. }));
    assert!(matches!(seen(&r("OUT_OF_MEMORY", 0, 0)), Seen::Ended { exited: false, .. }));
    assert!(matches!(seen(&r("NODE_FAIL", 0, 0)), Seen::Ended { exited: false, .. }));
    // SIGKILL of the worker: FAILED with a signal, not an exit code of its own.
    assert!(matches!(seen(&r("FAILED", 0, 9)), Seen::Ended { exited: false, .. }));
    assert_eq!(seen(&r("COMPLETING", 0, 0)), Seen::Running);
    assert_eq!(seen(&r("REQUEUED", 0, 0)), Seen::Waiting);
    assert!(parse_records("").is_empty());
}

/// Real `squeue -h -o "%F|%K|%T"` output of this machine's Slurm: an array of 10 with %2, two
/// running and the rest one pending range.
#[test]
fn the_queue_lists_running_tasks_and_pending_ranges() {
    let q = parse_queue(include_str!("../../../tests/data/slurm/squeue.txt"));
    assert_eq!(q.state("9", 0), Some("RUNNING"));
    assert_eq!(q.state("9", 1), Some("RUNNING"));
    assert_eq!(q.state("9", 2), Some("PENDING"));
    assert_eq!(q.state("9", 9), Some("PENDING"));
    assert_eq!(q.state("9", 10), None, "past the range");
    assert_eq!(q.state("8", 0), None, "another array");
    // Bracketed lists, several arrays, and lines that are not records.
    let q = parse_queue("12|[3,5-7%4]|PENDING\n13|0|COMPLETING\n\ngarbage\n13|x-y|PENDING\n");
    assert_eq!(q.state("12", 3), Some("PENDING"));
    assert_eq!(q.state("12", 4), None);
    assert_eq!(q.state("12", 6), Some("PENDING"));
    assert_eq!(q.state("13", 0), Some("COMPLETING"));
    assert_eq!(q.state("13", 1), None);
}
