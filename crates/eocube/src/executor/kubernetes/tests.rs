//! The manifests read back with the real API types, the golden file, the index-set parser, the
//! status bookkeeping, and the executor against an absent and a fake `kubectl`.

use std::path::PathBuf;

use super::*;
use crate::worker::{TaskExit, TaskResult};

fn array(indices: Vec<u32>) -> ArrayJob {
    ArrayJob {
        name: "eocube-20261101t073000-ab12".into(),
        command: ["/usr/local/bin/eocube", "worker", "s3://bucket/cube.zarr", "--run", "20261101T073000-ab12"]
            .map(String::from)
            .to_vec(),
        indices,
        max_parallel: 4,
        env: vec![("AWS_REGION".into(), "eu-central-1".into()), ("EOCUBE_LOG".into(), "info".into())],
    }
}

fn options() -> KubernetesOptions {
    KubernetesOptions {
        image: "ghcr.io/eocube/eocube:0.1.0".into(),
        namespace: Some("eo".into()),
        secret: Some("eocube-aws".into()),
        service_account: Some("eocube-worker".into()),
        cpu: Some("1".into()),
        memory: Some("2Gi".into()),
        backoff_limit_per_index: 3,
        max_failed_indexes: Some(5),
        env: vec![("EOCUBE_LOG".into(), "debug".into())],
    }
}

/// The manifests as kubectl would read them: through JSON, back into `Job`s.
fn round_trip(job: &ArrayJob, opts: &KubernetesOptions) -> Vec<Job> {
    let json = to_json(&manifests(job, opts).unwrap());
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["kind"], "List");
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            assert_eq!(item["apiVersion"], "batch/v1");
            assert_eq!(item["kind"], "Job");
            serde_json::from_value::<Job>(item.clone()).unwrap()
        })
        .collect()
}

/// Checks one Job field by field: `(name, first index, length)`.
fn check_job(job: &Job, name: &str, start: u32, len: i32) {
    assert_eq!(job.metadata.name.as_deref(), Some(name));
    assert_eq!(job.metadata.namespace.as_deref(), Some("eo"));
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[LABEL_APP], "eocube");
    assert_eq!(labels[LABEL_RUN], "20261101T073000-ab12");
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!(spec.completions, Some(len));
    assert_eq!(spec.parallelism, Some(len.min(4)));
    assert_eq!(spec.backoff_limit_per_index, Some(3));
    assert_eq!(spec.max_failed_indexes, Some(len.min(5)));
    assert_eq!(spec.backoff_limit, None, "per-index retries only");
    assert_eq!(spec.ttl_seconds_after_finished, Some(TTL_AFTER_FINISHED));
    let rules = &spec.pod_failure_policy.as_ref().unwrap().rules;
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].action, "Ignore");
    let conditions = rules[0].on_pod_conditions.as_ref().unwrap();
    assert_eq!((conditions[0].type_.as_str(), conditions[0].status.as_deref()), ("DisruptionTarget", Some("True")));
    assert!(rules[0].on_exit_codes.is_none());
    assert_eq!(rules[1].action, "FailIndex");
    let codes = rules[1].on_exit_codes.as_ref().unwrap();
    assert_eq!(codes.container_name.as_deref(), Some(CONTAINER));
    assert_eq!(codes.operator, "In");
    assert_eq!(codes.values, vec![EXIT_PERMANENT]);
    assert!(rules[1].on_pod_conditions.is_none());

    let template = &spec.template;
    assert_eq!(template.metadata.as_ref().unwrap().labels, job.metadata.labels, "pods carry the run label too");
    let pod = template.spec.as_ref().unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.service_account_name.as_deref(), Some("eocube-worker"));
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    assert_eq!(c.name, CONTAINER);
    assert_eq!(c.image.as_deref(), Some("ghcr.io/eocube/eocube:0.1.0"));
    let mut command: Vec<String> = array(vec![]).command;
    if start > 0 {
        command.extend(["--index-offset".to_string(), start.to_string()]);
    }
    assert_eq!(c.command.as_ref(), Some(&command));
    assert!(c.args.is_none());
    let env: Vec<(&str, Option<&str>)> =
        c.env.as_ref().unwrap().iter().map(|e| (e.name.as_str(), e.value.as_deref())).collect();
    assert_eq!(env, vec![("AWS_REGION", Some("eu-central-1")), ("EOCUBE_LOG", Some("debug"))]);
    let from = c.env_from.as_ref().unwrap();
    assert_eq!(from.len(), 1);
    assert_eq!(from[0].secret_ref.as_ref().map(|s| s.name.as_str()), Some("eocube-aws"));
    assert!(from[0].config_map_ref.is_none());
    let res = c.resources.as_ref().unwrap();
    let requests = res.requests.as_ref().unwrap();
    assert_eq!(requests["cpu"].0, "1");
    assert_eq!(requests["memory"].0, "2Gi");
    let limits = res.limits.as_ref().unwrap();
    assert_eq!(limits.len(), 1, "memory is limited, CPU is not");
    assert_eq!(limits["memory"].0, "2Gi");
}

#[test]
fn contiguous_indices_make_one_indexed_job() {
    let jobs = round_trip(&array((0..8).collect()), &options());
    assert_eq!(jobs.len(), 1);
    check_job(&jobs[0], "eocube-20261101t073000-ab12-0", 0, 8);
}

#[test]
fn gaps_make_one_job_per_range_with_its_offset() {
    let jobs = round_trip(&array(vec![0, 1, 2, 5, 7, 8]), &options());
    assert_eq!(jobs.len(), 3);
    check_job(&jobs[0], "eocube-20261101t073000-ab12-0", 0, 3);
    check_job(&jobs[1], "eocube-20261101t073000-ab12-5", 5, 1);
    check_job(&jobs[2], "eocube-20261101t073000-ab12-7", 7, 2);
}

#[test]
fn minimal_options_leave_optional_fields_out() {
    let opts = KubernetesOptions { image: "eocube:dev".into(), ..Default::default() };
    let mut job = array(vec![3, 4]);
    job.env.clear();
    let jobs = round_trip(&job, &opts);
    let spec = jobs[0].spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit_per_index, Some(0));
    assert_eq!(spec.max_failed_indexes, None);
    let c = &spec.template.spec.as_ref().unwrap().containers[0];
    assert!(c.env.is_none() && c.env_from.is_none() && c.resources.is_none());
    assert!(jobs[0].metadata.namespace.is_none());
}

#[test]
fn more_than_100000_completions_get_max_failed_indexes() {
    let opts = KubernetesOptions { image: "eocube:dev".into(), ..Default::default() };
    let jobs = manifests(&array((0..100_001).collect()), &opts).unwrap();
    assert_eq!(jobs[0].spec.as_ref().unwrap().max_failed_indexes, Some(MAX_FAILED_INDEXES_CAP));
    let opts = KubernetesOptions { max_failed_indexes: Some(50_000), ..opts };
    let jobs = manifests(&array((0..100_001).collect()), &opts).unwrap();
    assert_eq!(jobs[0].spec.as_ref().unwrap().max_failed_indexes, Some(MAX_FAILED_INDEXES_CAP));
}

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/kubernetes").join(name)
}

/// `EOCUBE_BLESS=1 cargo test --lib executor::kubernetes` rewrites the file after a deliberate change.
#[test]
fn manifests_match_the_golden_file() {
    let json = to_json(&manifests(&array(vec![0, 1, 2, 5, 7, 8]), &options()).unwrap());
    let path = golden("gaps.json");
    if std::env::var_os("EOCUBE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &json).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert!(json == want, "{} differs from the manifests; EOCUBE_BLESS=1 rewrites it\n{json}", path.display());
}

#[test]
fn names_must_be_dns_labels_and_the_error_says_what_to_use() {
    let opts = options();
    let mut job = array(vec![0]);
    job.name = "eocube-20261101T073000-ab12".into();
    let e = manifests(&job, &opts).unwrap_err().to_string();
    assert!(e.contains("capital letters") && e.contains("\"eocube-20261101t073000-ab12\""), "{e}");

    job.name = format!("eocube-{}", "x".repeat(60));
    let e = manifests(&job, &opts).unwrap_err().to_string();
    assert!(e.contains("at most 61"), "{e}");

    job.name = "eocube_run.1-".into();
    let e = manifests(&job, &opts).unwrap_err().to_string();
    assert!(e.contains("\"eocube-run-1\""), "{e}");

    let mut job = array(vec![0]);
    job.command.truncate(3);
    assert!(matches!(manifests(&job, &opts), Err(KubernetesError::NoRun { .. })));

    let bad = KubernetesOptions { secret: Some("AWS Keys".into()), ..options() };
    assert!(matches!(manifests(&array(vec![0]), &bad), Err(KubernetesError::BadOption { option: "secret", .. })));
    let bad = KubernetesOptions { image: String::new(), ..options() };
    assert!(matches!(manifests(&array(vec![0]), &bad), Err(KubernetesError::BadOption { option: "image", .. })));
}

#[test]
fn run_id_is_found_in_either_spelling() {
    let cmd = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(run_id(&cmd(&["eocube", "worker", "out", "--run", "r1"])), Some("r1"));
    assert_eq!(run_id(&cmd(&["eocube", "worker", "--run=r2", "out"])), Some("r2"));
    assert_eq!(run_id(&cmd(&["eocube", "worker", "out"])), None);
}

#[test]
fn index_sets_parse_ranges_and_lists() {
    assert_eq!(parse_index_set("").unwrap(), Vec::<u32>::new());
    assert_eq!(parse_index_set("4").unwrap(), vec![4]);
    assert_eq!(parse_index_set("1,3-5").unwrap(), vec![1, 3, 4, 5]);
    assert_eq!(parse_index_set("0-2,7,9-10").unwrap(), vec![0, 1, 2, 7, 9, 10]);
    assert_eq!(parse_index_set(" 2 , 6-6 ").unwrap(), vec![2, 6]);
    for bad in ["x", "1-", "-1", "5-3", "1,,a", "1-2-3"] {
        let e = parse_index_set(bad).unwrap_err();
        assert!(matches!(e, KubernetesError::IndexSet { .. }), "{bad}: {e}");
    }
}

fn listing(json: serde_json::Value) -> Listing {
    Listing::parse(&json.to_string()).unwrap()
}

fn job_item(name: &str, completed: &str, failed: &str, failed_condition: bool) -> serde_json::Value {
    let mut status = serde_json::json!({"completedIndexes": completed, "failedIndexes": failed});
    if failed_condition {
        status["conditions"] = serde_json::json!([{
            "type": "Failed", "status": "True", "reason": "MaxFailedIndexesExceeded", "message": "too many"
        }]);
    }
    serde_json::json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "status": status})
}

fn pod_item(job: &str, index: u32, phase: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{job}-{index}-abcde"), "labels": {LABEL_JOB: job, LABEL_INDEX: index.to_string()}},
        "status": {"phase": phase}
    })
}

fn tracked(name: &str, start: u32, len: u32) -> Tracked {
    Tracked { name: name.into(), start, len, started: BTreeSet::new(), ended: BTreeSet::new(), missing: 0 }
}

#[test]
fn status_changes_are_reported_once_started_before_ended() {
    let mut t = tracked("j-5", 5, 4);
    let l = listing(serde_json::json!({"kind": "List", "items": [
        job_item("j-5", "", "", false), pod_item("j-5", 1, "Running"), pod_item("j-5", 2, "Pending"),
        pod_item("other-0", 0, "Running"),
    ]}));
    assert_eq!(t.observe(&l), vec![Change::Started(1)]);
    assert_eq!(t.observe(&l), vec![], "nothing new");
    let l = listing(serde_json::json!({"items": [job_item("j-5", "0-1", "3", false)]}));
    assert_eq!(
        t.observe(&l),
        vec![
            Change::Started(0),
            Change::Ended(0, Ending::Completed),
            Change::Ended(1, Ending::Completed),
            Change::Started(3),
            Change::Ended(3, Ending::Failed),
        ]
    );
    assert!(!t.done());
    let l = listing(serde_json::json!({"items": [job_item("j-5", "0-1", "3", true)]}));
    assert_eq!(t.observe(&l), vec![Change::Ended(2, Ending::JobFailed("MaxFailedIndexesExceeded: too many".into()))]);
    assert!(t.done());

    let mut t = tracked("gone-0", 0, 2);
    let empty = listing(serde_json::json!({"items": []}));
    for _ in 1..MISSING_POLLS {
        assert_eq!(t.observe(&empty), vec![]);
    }
    assert_eq!(t.observe(&empty), vec![Change::Ended(0, Ending::Gone), Change::Ended(1, Ending::Gone)]);
}

fn temp_dir(name: &str) -> crate::scratch::ScratchDir {
    crate::scratch::ScratchDir::new(&format!("kubernetes-{name}"))
}

fn no_results() -> ResultReader {
    Arc::new(|_| Box::pin(async { Ok(None) }))
}

#[tokio::test]
async fn without_kubectl_the_error_says_to_emit_and_apply() {
    let empty = temp_dir("no-kubectl");
    let exec = KubernetesExecutor::new(array(vec![0, 1]), options(), no_results()).unwrap().with_path(&*empty);
    let (tx, _rx) = mpsc::unbounded_channel();
    let e = exec.launch(vec![0, 1], tx).await.unwrap_err().to_string();
    assert!(e.starts_with("kubernetes: kubectl was not found"), "{e}");
    assert!(e.contains("(`emit`)") && e.contains("kubectl apply -f FILE"), "{e}");
    let e = Kubectl { program: "kubectl".into(), namespace: None, path: Some(empty.to_path_buf().into()) }
        .run(&["version"], None)
        .await
        .unwrap_err();
    assert!(matches!(e, KubernetesError::NoKubectl { .. }), "{e}");
}

/// A stand-in kubectl: logs its arguments, keeps what `apply` is given, answers `get` with
/// `state.json` and a refused connection when `refuse` exists.
const FAKE_KUBECTL: &str = r#"#!/bin/sh
d="${0%/*}"
echo "$*" >> "$d/calls.log"
if [ -e "$d/refuse" ]; then
  echo "The connection to the server localhost:8080 was refused - did you specify the right host or port?" >&2
  exit 1
fi
case "$*" in
  *" apply "*) /bin/cat > "$d/applied.json"; echo "job.batch/x created" ;;
  *" get "*) /bin/cat "$d/state.json" ;;
esac
"#;

fn fake_kubectl(name: &str) -> crate::scratch::ScratchDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir(name);
    let path = dir.join("kubectl");
    std::fs::write(&path, FAKE_KUBECTL).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("state.json"), r#"{"kind": "List", "items": []}"#).unwrap();
    dir
}

async fn next(rx: &mut mpsc::UnboundedReceiver<TaskEvent>) -> TaskEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_fake_cluster_is_applied_polled_cancelled_and_deleted() {
    let dir = fake_kubectl("fake");
    let results: ResultReader = Arc::new(|index| {
        Box::pin(async move { Ok((index != 2).then_some(TaskResult { index, exit: TaskExit::Done, jobs: vec![] })) })
    });
    let exec = KubernetesExecutor::new(array(vec![0, 1, 2, 3]), options(), results)
        .unwrap()
        .with_path(&dir)
        .with_poll_interval(Duration::from_millis(20));
    let (tx, mut rx) = mpsc::unbounded_channel();
    exec.launch(vec![0, 1, 2, 3], tx).await.unwrap();

    let applied: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("applied.json")).unwrap()).unwrap();
    let job: Job = serde_json::from_value(applied["items"][0].clone()).unwrap();
    let name = "eocube-20261101t073000-ab12-0";
    assert_eq!(job.metadata.name.as_deref(), Some(name));

    let state = |items: Vec<serde_json::Value>| {
        std::fs::write(dir.join("state.json"), serde_json::json!({"kind": "List", "items": items}).to_string()).unwrap()
    };
    state(vec![job_item(name, "0-1", "2", false), pod_item(name, 3, "Running")]);
    let mut seen = Vec::new();
    while seen.len() < 7 {
        seen.push(match next(&mut rx).await {
            TaskEvent::Started { index } => format!("started {index}"),
            TaskEvent::Ended { index, end: TaskEnd::Result(r) } => format!("ended {index} {:?}", r.exit),
            TaskEvent::Ended { index, end: TaskEnd::Lost { reason, transient } } => {
                assert!(
                    reason.contains("kubectl logs -n eo -l") && reason.contains("job-completion-index=2"),
                    "{reason}"
                );
                format!("lost {index} transient={transient}")
            }
        });
    }
    seen.sort();
    assert_eq!(
        seen,
        ["ended 0 Done", "ended 1 Done", "lost 2 transient=false", "started 0", "started 1", "started 2", "started 3",]
            .map(String::from)
    );
    exec.cancel(3).await.unwrap();
    let calls = std::fs::read_to_string(dir.join("calls.log")).unwrap();
    assert!(calls.contains(&format!("delete pod -l {LABEL_JOB}={name},{LABEL_INDEX}=3 --wait=false")), "{calls}");
    assert!(
        calls.contains(
            "--namespace eo --request-timeout=30s get jobs,pods -l eocube.dev/run=20261101T073000-ab12 -o json"
        ),
        "{calls}"
    );

    // A retry is a new Job with a name of its own.
    let retry = "eocube-20261101t073000-ab12-r1-2";
    state(vec![job_item(name, "0-1", "2", false), pod_item(name, 3, "Running"), job_item(retry, "", "", false)]);
    exec.launch(vec![2], mpsc::unbounded_channel().0).await.unwrap();
    let applied: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("applied.json")).unwrap()).unwrap();
    assert_eq!(applied["items"][0]["metadata"]["name"], retry);

    exec.shutdown().await;
    let calls = std::fs::read_to_string(dir.join("calls.log")).unwrap();
    assert!(calls.contains(&format!("delete job {name} {retry} --cascade=background")), "{calls}");
}

#[tokio::test]
async fn a_refused_connection_is_unreachable_and_says_to_emit() {
    let dir = fake_kubectl("refused");
    std::fs::write(dir.join("refuse"), "").unwrap();
    let exec = KubernetesExecutor::new(array(vec![0]), options(), no_results()).unwrap().with_path(&dir);
    let e = exec.launch(vec![0], mpsc::unbounded_channel().0).await.unwrap_err().to_string();
    assert!(e.contains("cannot be reached") && e.contains("was refused") && e.contains("(`emit`)"), "{e}");
}
