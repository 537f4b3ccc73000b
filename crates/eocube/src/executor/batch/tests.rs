//! The requests read back through the SDK's own getters, their CLI JSON read back with serde,
//! the golden file, the status bookkeeping, and missing credentials.

use std::collections::HashMap;
use std::path::PathBuf;

use aws_sdk_batch::types::{ArrayPropertiesSummary, ContainerSummary};

use super::*;

fn array(indices: Vec<u32>) -> ArrayJob {
    ArrayJob {
        name: "eocube-20261101T073000-ab12".into(),
        command: ["eocube", "worker", "s3://bucket/cube.zarr", "--run", "20261101T073000-ab12"]
            .map(String::from)
            .to_vec(),
        indices,
        max_parallel: 4,
        env: vec![("AWS_REGION".into(), "eu-central-1".into()), ("EOCUBE_LOG".into(), "info".into())],
    }
}

fn options() -> BatchOptions {
    BatchOptions {
        job_queue: "eocube-spot".into(),
        job_definition: "eocube-worker:3".into(),
        attempts: 3,
        env: vec![("EOCUBE_LOG".into(), "debug".into())],
        timeout_seconds: Some(3600),
    }
}

fn command(extra: &[&str]) -> Vec<String> {
    let mut c = array(vec![]).command;
    c.extend(extra.iter().map(|s| s.to_string()));
    c
}

/// An evaluateOnExit entry: (onExitCode, onStatusReason, onReason, action).
type Rule<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, Option<&'a str>);

/// Checks one request through the SDK's getters: `(name, array size or None, command tail)`.
fn check(r: &SubmitJobInput, name: &str, size: Option<i32>, tail: &[&str]) {
    assert_eq!(r.job_name(), Some(name));
    assert_eq!(r.job_queue(), Some("eocube-spot"));
    assert_eq!(r.job_definition(), Some("eocube-worker:3"));
    assert_eq!(r.array_properties().and_then(|a| a.size()), size);
    assert_eq!(r.array_properties().is_some(), size.is_some());
    let o = r.container_overrides().unwrap();
    assert_eq!(o.command(), command(tail).as_slice());
    let env: Vec<(Option<&str>, Option<&str>)> = o.environment().iter().map(|p| (p.name(), p.value())).collect();
    assert_eq!(env, vec![(Some("AWS_REGION"), Some("eu-central-1")), (Some("EOCUBE_LOG"), Some("debug"))]);
    assert!(o.resource_requirements().is_empty() && o.instance_type().is_none());
    let retry = r.retry_strategy().unwrap();
    assert_eq!(retry.attempts(), Some(3));
    let rules: Vec<Rule<'_>> = retry
        .evaluate_on_exit()
        .iter()
        .map(|e| (e.on_exit_code(), e.on_status_reason(), e.on_reason(), e.action().map(RetryAction::as_str)))
        .collect();
    assert_eq!(
        rules,
        vec![
            (Some("65"), None, None, Some("EXIT")),
            (Some("75"), None, None, Some("RETRY")),
            (None, Some("Host EC2*"), None, Some("RETRY")),
            (None, None, Some("*"), Some("EXIT")),
        ]
    );
    assert!(rules.len() <= 5, "Batch takes at most 5");
    assert_eq!(r.timeout().and_then(|t| t.attempt_duration_seconds()), Some(3600));
    assert!(r.depends_on().is_empty() && r.tags().is_none() && r.parameters().is_none());
}

#[test]
fn twenty_five_thousand_indices_make_three_arrays_with_offsets() {
    let parts = parts(&array((0..25_000).collect()), &options()).unwrap();
    assert_eq!(parts.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![0, 10_000, 20_000]);
    let reqs: Vec<SubmitJobInput> = parts.into_iter().map(|(_, r)| r).collect();
    assert_eq!(reqs, requests(&array((0..25_000).collect()), &options()).unwrap());
    check(&reqs[0], "eocube-20261101T073000-ab12-0", Some(10_000), &[]);
    check(&reqs[1], "eocube-20261101T073000-ab12-10000", Some(10_000), &["--index-offset", "10000"]);
    check(&reqs[2], "eocube-20261101T073000-ab12-20000", Some(5_000), &["--index-offset", "20000"]);
}

#[test]
fn gaps_make_one_request_per_range_and_a_lone_index_a_plain_job() {
    let reqs = requests(&array(vec![0, 1, 2, 5, 7, 8]), &options()).unwrap();
    assert_eq!(reqs.len(), 3);
    check(&reqs[0], "eocube-20261101T073000-ab12-0", Some(3), &[]);
    check(&reqs[1], "eocube-20261101T073000-ab12-5", None, &["--index", "5"]);
    check(&reqs[2], "eocube-20261101T073000-ab12-7", Some(2), &["--index-offset", "7"]);
}

#[test]
fn a_single_index_is_a_plain_job_with_its_index() {
    let reqs = requests(&array(vec![42]), &options()).unwrap();
    assert_eq!(reqs.len(), 1);
    check(&reqs[0], "eocube-20261101T073000-ab12-42", None, &["--index", "42"]);
    let reqs = requests(&array(vec![0]), &options()).unwrap();
    check(&reqs[0], "eocube-20261101T073000-ab12-0", None, &["--index", "0"]);
}

#[test]
fn a_range_one_past_the_limit_ends_in_a_plain_job() {
    let reqs = requests(&array((0..10_001).collect()), &options()).unwrap();
    assert_eq!(reqs.len(), 2);
    check(&reqs[0], "eocube-20261101T073000-ab12-0", Some(10_000), &[]);
    check(&reqs[1], "eocube-20261101T073000-ab12-10000", None, &["--index", "10000"]);
}

#[test]
fn cli_json_has_the_submit_job_shape() {
    let json = to_json(&requests(&array(vec![0, 1, 2, 5]), &options()).unwrap());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 2);
    let a = &items[0];
    assert_eq!(a["jobName"], "eocube-20261101T073000-ab12-0");
    assert_eq!(a["jobQueue"], "eocube-spot");
    assert_eq!(a["jobDefinition"], "eocube-worker:3");
    assert_eq!(a["arrayProperties"]["size"], 3);
    assert_eq!(a["retryStrategy"]["attempts"], 3);
    assert_eq!(
        a["retryStrategy"]["evaluateOnExit"],
        serde_json::json!([
            {"onExitCode": "65", "action": "EXIT"},
            {"onExitCode": "75", "action": "RETRY"},
            {"onStatusReason": "Host EC2*", "action": "RETRY"},
            {"onReason": "*", "action": "EXIT"},
        ])
    );
    assert_eq!(a["containerOverrides"]["command"], serde_json::json!(command(&[])));
    assert_eq!(
        a["containerOverrides"]["environment"],
        serde_json::json!([{"name": "AWS_REGION", "value": "eu-central-1"}, {"name": "EOCUBE_LOG", "value": "debug"}])
    );
    assert_eq!(a["timeout"]["attemptDurationSeconds"], 3600);
    let keys: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect::<Vec<_>>();
    for k in keys {
        assert!(
            [
                "jobName",
                "jobQueue",
                "jobDefinition",
                "arrayProperties",
                "retryStrategy",
                "containerOverrides",
                "timeout"
            ]
            .contains(&k),
            "{k}"
        );
    }
    let b = &items[1];
    assert!(b.get("arrayProperties").is_none(), "one index: a plain job");
    assert_eq!(b["containerOverrides"]["command"], serde_json::json!(command(&["--index", "5"])));

    let plain = BatchOptions { env: vec![], timeout_seconds: None, ..options() };
    let mut job = array(vec![3, 4]);
    job.env.clear();
    let v: serde_json::Value = serde_json::from_str(&to_json(&requests(&job, &plain).unwrap())).unwrap();
    assert!(v[0].get("timeout").is_none());
    assert!(v[0]["containerOverrides"].get("environment").is_none());
}

/// `EOCUBE_BLESS=1 cargo test --lib executor::batch` rewrites the file after a deliberate change.
#[test]
fn requests_match_the_golden_file() {
    let json = to_json(&requests(&array(vec![0, 1, 2, 5, 7, 8]), &options()).unwrap());
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/batch/gaps.json");
    if std::env::var_os("EOCUBE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &json).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert!(json == want, "{} differs from the requests; EOCUBE_BLESS=1 rewrites it\n{json}", path.display());
}

#[test]
fn bad_options_and_names_say_what_is_wrong() {
    let job = array(vec![0, 1]);
    for (opts, option) in [
        (BatchOptions { attempts: 0, ..options() }, "attempts"),
        (BatchOptions { attempts: 11, ..options() }, "attempts"),
        (BatchOptions { timeout_seconds: Some(30), ..options() }, "timeout_seconds"),
        (BatchOptions { job_queue: String::new(), ..options() }, "job_queue"),
        (BatchOptions { env: vec![("AWS_BATCH_JOB_ID".into(), "x".into())], ..options() }, "env"),
    ] {
        match requests(&job, &opts) {
            Err(BatchError::BadOption { option: o, .. }) => assert_eq!(o, option),
            other => panic!("{option}: {other:?}"),
        }
    }
    let mut bad = array(vec![0]);
    bad.name = "eocube run".into();
    assert!(matches!(requests(&bad, &options()), Err(BatchError::BadName { .. })));
    bad.name = "x".repeat(127);
    let e = requests(&bad, &options()).unwrap_err().to_string();
    assert!(e.contains("129 characters"), "{e}");
    bad.name = "_eocube".into();
    assert!(matches!(requests(&bad, &options()), Err(BatchError::BadName { .. })));
}

fn child(index: i32, reason: Option<&str>, exit: Option<i32>) -> JobSummary {
    let mut c = ContainerSummary::builder();
    if let Some(code) = exit {
        c = c.exit_code(code);
    }
    JobSummary::builder()
        .job_id(format!("parent:{index}"))
        .job_name("eocube-x-10000")
        .array_properties(ArrayPropertiesSummary::builder().index(index).build())
        .set_status_reason(reason.map(String::from))
        .container(c.build())
        .build()
}

fn submitted(start: u32, size: u32, array: bool) -> Submitted {
    Submitted {
        id: "parent".into(),
        start,
        size,
        array,
        started: BTreeSet::new(),
        ended: BTreeSet::new(),
        succeeded: 0,
        failed: 0,
        missing: 0,
        parent_ended: None,
    }
}

#[test]
fn array_counts_decide_what_to_list_and_children_are_reported_once() {
    let mut j = submitted(10_000, 4, true);
    assert_eq!(j.child_id(3), "parent:3");
    let counts = HashMap::from([("RUNNING".to_string(), 1), ("SUCCEEDED".to_string(), 1)]);
    let (changes, lists) = j.observe(Some((&JobStatus::Running, &counts, String::new())));
    assert!(changes.is_empty());
    assert_eq!(lists, Lists { running: true, succeeded: true, failed: false });

    assert_eq!(j.children(&JobStatus::Running, &[child(1, None, None)]), vec![Change::Started(1)]);
    assert_eq!(j.children(&JobStatus::Running, &[child(1, None, None)]), vec![]);
    assert_eq!(
        j.children(&JobStatus::Succeeded, &[child(3, None, Some(0))]),
        vec![Change::Started(3), Change::Ended(3, Ending::Succeeded)]
    );
    let (_, lists) = j.observe(Some((&JobStatus::Running, &counts, String::new())));
    assert!(!lists.succeeded, "the one success is already reported");
    assert_eq!(
        j.children(
            &JobStatus::Failed,
            &[child(1, Some("Essential container in task exited"), Some(65)), child(9, None, None)]
        ),
        vec![Change::Ended(1, Ending::Failed("Essential container in task exited, exit 65".into()))],
        "index 9 is not a child of this array"
    );
    assert_eq!(j.succeeded + j.failed, 2);
    assert!(j.finish().is_empty(), "the parent has not ended");
    let (_, lists) = j.observe(Some((&JobStatus::Failed, &counts, "Array Child Job failed".into())));
    assert_eq!(lists, Lists { running: true, succeeded: true, failed: true }, "a parent's end lists both ends");
    assert_eq!(j.children(&JobStatus::Succeeded, &[child(0, None, Some(0))]).len(), 2);
    assert_eq!(
        j.finish(),
        vec![Change::Ended(2, Ending::Failed("its array job ended (Array Child Job failed) without it".into()))]
    );
    assert!(j.done());

    let mut plain = submitted(42, 1, false);
    assert_eq!(plain.child_id(0), "parent");
    let none = HashMap::new();
    assert_eq!(plain.observe(Some((&JobStatus::Runnable, &none, String::new()))).0, vec![]);
    assert_eq!(
        plain.observe(Some((&JobStatus::Failed, &none, "Host EC2 (instance i-1) terminated.".into()))).0,
        vec![Change::Started(0), Change::Ended(0, Ending::Failed("Host EC2 (instance i-1) terminated.".into()))]
    );
    assert!(plain.done());

    let mut gone = submitted(0, 2, true);
    for _ in 1..MISSING_POLLS {
        assert!(gone.observe(None).0.is_empty());
    }
    assert_eq!(gone.observe(None).0, vec![Change::Ended(0, Ending::Gone), Change::Ended(1, Ending::Gone)]);
}

fn no_results() -> ResultReader {
    Arc::new(|_| Box::pin(async { Ok(None) }))
}

#[tokio::test]
async fn missing_credentials_say_to_set_them_or_emit() {
    let region = aws_config::Region::new("eu-central-1");
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(region.clone()).no_credentials();
    let e = BatchExecutor::connect_with(loader, array(vec![0, 1]), options(), no_results()).await.err().unwrap();
    assert!(matches!(e, BatchError::Credentials { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("AWS_ACCESS_KEY_ID") && msg.contains("(`emit`)"), "{msg}");

    // A provider that finds nothing (no container credentials in this environment).
    let ecs = aws_config::ecs::EcsCredentialsProvider::builder().build();
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(region).credentials_provider(ecs);
    let e = BatchExecutor::connect_with(loader, array(vec![0, 1]), options(), no_results()).await.err().unwrap();
    assert!(matches!(e, BatchError::Credentials { .. }), "{e}");

    // Bad options fail before any configuration is loaded.
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    let bad = BatchOptions { attempts: 0, ..options() };
    let e = BatchExecutor::connect_with(loader, array(vec![0]), bad, no_results()).await.err().unwrap();
    assert!(matches!(e, BatchError::BadOption { option: "attempts", .. }), "{e}");
}

/// A stand-in for the Batch API (REST-JSON over HTTP): records what it is sent and answers from
/// a fixed picture of three jobs.
mod fake {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use serde_json::{Value, json};

    #[derive(Default)]
    pub struct Seen {
        pub submitted: Vec<Value>,
        pub terminated: Vec<String>,
        pub calls: Vec<String>,
    }

    /// Starts the stand-in on a free local port: its URL and what it has seen.
    pub async fn start() -> (String, Arc<Mutex<Seen>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let s = Arc::clone(&s);
                        async move { Ok::<_, Infallible>(answer(&s, req).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        (url, seen)
    }

    fn detail(id: &str, status: &str, counts: Option<Value>) -> Value {
        let mut d = json!({
            "jobName": "eocube-x", "jobId": id, "jobQueue": "eocube-spot", "jobDefinition": "eocube-worker:3",
            "status": status, "startedAt": 1, "statusReason": "Essential container in task exited"
        });
        if let Some(c) = counts {
            d["arrayProperties"] = json!({"statusSummary": c, "size": 3});
        }
        d
    }

    fn child(parent: &str, index: u32, status: &str) -> Value {
        json!({
            "jobId": format!("{parent}:{index}"), "jobName": "eocube-x", "status": status,
            "arrayProperties": {"index": index},
            "statusReason": "Essential container in task exited", "container": {"exitCode": 65}
        })
    }

    async fn answer(seen: &Mutex<Seen>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let body: Value = serde_json::from_slice(&req.into_body().collect().await.unwrap().to_bytes()).unwrap();
        let mut seen = seen.lock().unwrap();
        seen.calls.push(path.clone());
        let out = match path.as_str() {
            "/v1/submitjob" => {
                let id = format!("job-{}", seen.submitted.len());
                seen.submitted.push(body.clone());
                json!({"jobArn": format!("arn:aws:batch:eu-central-1:1:job/{id}"), "jobName": body["jobName"], "jobId": id})
            }
            // job-0: array of 3, children 0 and 1 succeeded, 2 failed; job-1: a plain job that
            // succeeded; job-2: array of 2, child 0 running, child 1 succeeded.
            "/v1/describejobs" => {
                let jobs: Vec<Value> = body["jobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|id| match id.as_str().unwrap() {
                        "job-0" => Some(detail("job-0", "FAILED", Some(json!({"SUCCEEDED": 2, "FAILED": 1})))),
                        "job-1" => Some(detail("job-1", "SUCCEEDED", None)),
                        "job-2" => Some(detail("job-2", "RUNNING", Some(json!({"RUNNING": 1, "SUCCEEDED": 1})))),
                        _ => None,
                    })
                    .collect();
                json!({ "jobs": jobs })
            }
            "/v1/listjobs" => {
                let list = match (body["arrayJobId"].as_str().unwrap(), body["jobStatus"].as_str().unwrap()) {
                    ("job-0", "SUCCEEDED") => vec![child("job-0", 0, "SUCCEEDED"), child("job-0", 1, "SUCCEEDED")],
                    ("job-0", "FAILED") => vec![child("job-0", 2, "FAILED")],
                    ("job-2", "RUNNING") => vec![child("job-2", 0, "RUNNING")],
                    ("job-2", "SUCCEEDED") => vec![child("job-2", 1, "SUCCEEDED")],
                    _ => vec![],
                };
                json!({ "jobSummaryList": list })
            }
            "/v1/terminatejob" => {
                seen.terminated.push(body["jobId"].as_str().unwrap().to_string());
                json!({})
            }
            _ => json!({}),
        };
        Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(out.to_string())))
            .unwrap()
    }
}

#[tokio::test]
async fn a_fake_batch_api_is_submitted_polled_cancelled_and_terminated() {
    use aws_sdk_batch::config::{BehaviorVersion, Credentials, Region};

    let (url, seen) = fake::start().await;
    let conf = aws_sdk_batch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-central-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(url)
        .build();
    let results: ResultReader = Arc::new(|index| {
        Box::pin(async move {
            Ok((index != 2).then_some(crate::worker::TaskResult {
                index,
                exit: crate::worker::TaskExit::Done,
                jobs: vec![],
            }))
        })
    });
    let indices = vec![0, 1, 2, 5, 7, 8];
    let exec = BatchExecutor::new(Client::from_conf(conf), array(indices.clone()), options(), results)
        .unwrap()
        .with_poll_interval(Duration::from_millis(20));
    let (tx, mut rx) = mpsc::unbounded_channel();
    exec.launch(indices.clone(), tx).await.unwrap();

    // What went over the wire is what `to_json` writes for `aws batch submit-job --cli-input-json`.
    let sent = seen.lock().unwrap().submitted.clone();
    let ours: serde_json::Value =
        serde_json::from_str(&to_json(&requests(&array(indices), &options()).unwrap())).unwrap();
    assert_eq!(serde_json::Value::Array(sent), ours);

    let mut events = Vec::new();
    while events.len() < 11 {
        let event = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        events.push(match event {
            TaskEvent::Started { index } => format!("started {index}"),
            TaskEvent::Ended { index, end: TaskEnd::Result(r) } => format!("ended {index} {:?}", r.exit),
            TaskEvent::Ended { index, end: TaskEnd::Lost { reason, transient } } => {
                assert!(reason.contains("describe-jobs --jobs job-0:2") && reason.contains("exit 65"), "{reason}");
                format!("lost {index} transient={transient}")
            }
        });
    }
    events.sort();
    let want = [
        "ended 0 Done",
        "ended 1 Done",
        "ended 5 Done",
        "ended 8 Done",
        "lost 2 transient=false",
        "started 0",
        "started 1",
        "started 2",
        "started 5",
        "started 7",
        "started 8",
    ];
    assert_eq!(events, want.map(String::from));

    exec.cancel(7).await.unwrap();
    exec.cancel(0).await.unwrap(); // already ended: nothing to stop
    exec.shutdown().await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.terminated, vec!["job-2:0".to_string(), "job-2".to_string()], "{:?}", seen.calls);
}
