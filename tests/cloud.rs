//! Cloud locations beyond plain S3 keys (issue 4): AWS shared config/credentials profiles and
//! unsigned requests against real S3 stand-ins (moto, one of them checking signatures), and
//! `az://` cubes on Azurite (Microsoft's Azure Blob emulator): byte-identical to a local build,
//! SIGKILL and resume, xarray reading through adlfs, refusals. `gs://` is covered by parsing and
//! refusals only: neither GCS emulator installable here (fake-gcs-server, gcp-storage-emulator)
//! speaks the XML API object_store's GCS client writes and lists with.
//!
//! Every build runs the real `eocube` binary in a scrubbed environment: no `AWS_*`, `AZURE_*` or
//! `GOOGLE_*` variable of the test runner and an empty `HOME`, so only what a test sets counts.
//! Needs the environment of `scripts/test.sh` (`scripts/servers.sh start`: moto, Azurite, the e2e
//! fixtures, the venv); without it the tests fail, they never skip.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eocube::store::OutLocation;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::Value;
const FLAGS: [&str; 6] = ["--resampling", "nearest", "--chunk-size", "64", "--workers", "2"];

// ---------------------------------------------------------------------------------------------
// Running eocube
// ---------------------------------------------------------------------------------------------

/// `eocube build` of the e2e archive (local item file, no STAC server) into `out`.
fn build_args(out: &str, extra: &[&str]) -> Vec<String> {
    let items = common::e2e_dir().join("items-local.json");
    let mut flags = vec!["--quiet"];
    flags.extend_from_slice(extra);
    common::e2e_items_build_args(Path::new(out), &items, &flags)
}

/// An empty directory to serve as `HOME` (no `~/.aws` of the machine leaks in).
fn empty_home(tag: &str) -> PathBuf {
    let dir = common::scratch_dir(&format!("cloud-home-{tag}"));
    std::fs::create_dir_all(&dir).expect("home");
    dir
}

/// The eocube binary with every cloud variable of the runner removed, `HOME` = `home`, then `env`.
fn eocube(args: &[String], home: &Path, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eocube"));
    c.args(args);
    for (k, _) in std::env::vars() {
        if ["AWS_", "AZURE_", "AZURITE_", "GOOGLE_"].iter().any(|p| k.starts_with(p)) {
            c.env_remove(k);
        }
    }
    c.env("HOME", home);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn run(args: &[String], home: &Path, env: &[(&str, &str)]) -> Output {
    let t0 = Instant::now();
    let out = eocube(args, home, env).output().expect("running eocube");
    println!("eocube {} -> {} in {:.1} s", args.join(" "), out.status, t0.elapsed().as_secs_f64());
    out
}

fn run_ok(args: &[String], home: &Path, env: &[(&str, &str)]) -> Output {
    let out = run(args, home, env);
    common::assert_ok(&out, args);
    out
}

/// Run, require exit status 1, return stderr.
fn run_refused(args: &[String], home: &Path, env: &[(&str, &str)]) -> String {
    let out = run(args, home, env);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "expected a refusal:\n{err}");
    err
}

fn block_on<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(fut)
}

/// Every object under `prefix` of `store`, by key relative to the prefix.
fn objects(store: &dyn ObjectStore, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    common::objects_under(store, prefix)
}

fn data_chunks(objs: &BTreeMap<String, Vec<u8>>) -> BTreeMap<&String, &Vec<u8>> {
    objs.iter().filter(|(k, _)| k.starts_with("rgb_median/c/")).collect()
}

/// The data chunks and coordinate objects of two cubes are the same bytes (the group's
/// `zarr.json` differs only by its `created` time, so it is left out, as in tests/storage.rs).
fn assert_same_chunks(local: &BTreeMap<String, Vec<u8>>, other: &BTreeMap<String, Vec<u8>>, what: &str) {
    let (a, b) = (data_chunks(local), data_chunks(other));
    assert!(!a.is_empty(), "{what}: the local build wrote no chunk");
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{what}: chunk keys");
    for (k, v) in &a {
        assert!(b[k] == *v, "{what}: {k} differs");
    }
    for k in ["time/c/0", "latitude/c/0", "longitude/c/0", "band/c/0", "rgb_median/zarr.json"] {
        assert_eq!(local.get(k), other.get(k), "{what}: {k}");
    }
    println!("{what}: {} chunk objects byte-identical", a.len());
}

/// The e2e cube built on local disk once per test binary, as the reference.
fn local_reference() -> &'static (PathBuf, BTreeMap<String, Vec<u8>>) {
    static LOCAL: std::sync::OnceLock<(PathBuf, BTreeMap<String, Vec<u8>>)> = std::sync::OnceLock::new();
    LOCAL.get_or_init(|| {
        let dir = common::scratch_dir("cloud-local");
        let cube = dir.join("cube.zarr");
        run_ok(&build_args(&cube.display().to_string(), &FLAGS), &empty_home("local"), &[]);
        let objs = common::files_under(&cube);
        (cube, objs)
    })
}

fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("eocube-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------------
// S3: profiles and unsigned requests
// ---------------------------------------------------------------------------------------------

/// A moto server that checks signatures: the first three requests (unsigned) make an IAM user
/// with full rights and its access key, then every request must be signed with that key.
struct AuthMoto {
    child: std::process::Child,
    endpoint: String,
    key_id: String,
    secret: String,
    bucket: String,
}

impl AuthMoto {
    fn start() -> AuthMoto {
        let (child, endpoint) = common::start_auth_moto(3);
        let bucket = "eocube-auth".to_string();
        let (key_id, secret) = common::auth_moto_user(&endpoint, &bucket);
        AuthMoto { child, endpoint, key_id, secret, bucket }
    }

    /// Every object under `prefix`, read with the right key.
    fn objects(&self, prefix: &str) -> BTreeMap<String, Vec<u8>> {
        objects(&self.store(), prefix)
    }

    /// A client with the right key.
    fn store(&self) -> object_store::aws::AmazonS3 {
        let user = common::S3Env {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            access_key: self.key_id.clone(),
            secret_key: self.secret.clone(),
            region: "us-east-1".into(),
        };
        user.store(&self.bucket)
    }
}

impl Drop for AuthMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Profiles do everything the environment did: keys, region and endpoint from `~/.aws` (or the
/// files named by `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE`) reach a server that checks
/// signatures. Env keys beat the profile; a profile name that does not exist, a role-only
/// profile and unsigned requests are refused before anything is written; no secret is printed.
#[test]
fn profiles_sign_for_an_authenticating_s3_and_bad_ones_are_refused() {
    let moto = AuthMoto::start();
    let home = empty_home("profiles");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(
        home.join(".aws/credentials"),
        format!(
            "# test profiles\n[eo]\naws_access_key_id = {}\naws_secret_access_key = {}\n[other]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = other-secret\n",
            moto.key_id, moto.secret
        ),
    )
    .unwrap();
    std::fs::write(
        home.join(".aws/config"),
        format!(
            "[profile eo]\nregion = us-east-1\ns3 =\n  endpoint_url = {ep}\n\n[profile role]\nrole_arn = arn:aws:iam::123456789012:role/cubes\nsource_profile = eo\nendpoint_url = {ep}\n",
            ep = moto.endpoint
        ),
    )
    .unwrap();
    let url = |p: &str| format!("s3://{}/{p}", moto.bucket);

    // The profile alone: keys from credentials, region and endpoint (s3 sub-section) from config.
    run_ok(&build_args(&url("profile.zarr"), &FLAGS), &home, &[("AWS_PROFILE", "eo")]);
    let built = moto.objects("profile.zarr");
    assert_same_chunks(&local_reference().1, &built, "local vs s3 with a profile");
    // An Icechunk repository on the same server through the same profile (crates/eocube/src/store/icechunk.rs
    // maps the settings onto its own S3 options); wrong env keys are refused there too.
    let repo = format!("icechunk+s3://{}/repo", moto.bucket);
    run_ok(&build_args(&repo, &FLAGS), &home, &[("AWS_PROFILE", "eo")]);
    let log = run_ok(&["log".into(), repo.clone()], &home, &[("AWS_PROFILE", "eo")]);
    assert!(String::from_utf8_lossy(&log.stdout).contains("eocube build:"), "{log:?}");
    let err = run_refused(
        &build_args(&format!("icechunk+s3://{}/repo2", moto.bucket), &FLAGS),
        &home,
        &[("AWS_PROFILE", "eo"), ("AWS_ACCESS_KEY_ID", "AKIAENVWRONG"), ("AWS_SECRET_ACCESS_KEY", "env-secret-Qz81x")],
    );
    assert!(err.contains("access denied") && !err.contains("env-secret-Qz81x"), "{err}");
    assert!(moto.objects("repo2").is_empty(), "a refused Icechunk build wrote something");
    // AWS_DEFAULT_PROFILE, and files named by variables instead of ~/.aws: status reads it back.
    let elsewhere = empty_home("profiles-elsewhere");
    let st = run_ok(
        &["status".into(), url("profile.zarr"), "--json".into()],
        &elsewhere,
        &[
            ("AWS_DEFAULT_PROFILE", "eo"),
            ("AWS_SHARED_CREDENTIALS_FILE", &home.join(".aws/credentials").display().to_string()),
            ("AWS_CONFIG_FILE", &home.join(".aws/config").display().to_string()),
        ],
    );
    let st: Value = serde_json::from_slice(&st.stdout).expect("status --json");
    assert_eq!(st["complete"], true, "{st}");

    // Env keys beat the profile: wrong env keys are used (and refused) even with a good profile.
    let secret = "env-secret-Qz81x";
    let err = run_refused(
        &build_args(&url("envwins.zarr"), &FLAGS),
        &home,
        &[("AWS_PROFILE", "eo"), ("AWS_ACCESS_KEY_ID", "AKIAENVWRONG"), ("AWS_SECRET_ACCESS_KEY", secret)],
    );
    assert!(err.contains("--out") && err.contains("access denied"), "{err}");
    assert!(!err.contains(secret) && !err.contains(&moto.secret), "a secret was printed: {err}");

    // A profile that is not there: named, with the files looked at; nothing written.
    let err = run_refused(&build_args(&url("missing.zarr"), &FLAGS), &home, &[("AWS_PROFILE", "prod")]);
    assert!(err.contains("\"prod\"") && err.contains("AWS_PROFILE"), "{err}");
    assert!(
        err.contains(".aws/credentials") && err.contains(".aws/config") && err.contains("eo, other, role"),
        "{err}"
    );
    // Checked before a build starts even when the cube goes to local disk: s3:// inputs would
    // need it (every job would fail alike, or skip its scenes with --skip-bad-scenes).
    let local_out = home.join("local.zarr");
    let err = run_refused(&build_args(&local_out.display().to_string(), &FLAGS), &home, &[("AWS_PROFILE", "prod")]);
    assert!(err.contains("AWS settings for s3:// inputs") && err.contains("\"prod\""), "{err}");
    assert!(!local_out.exists(), "nothing was written");
    // A role-only profile: refused with the fix, never an anonymous fallback.
    let err = run_refused(&build_args(&url("role.zarr"), &FLAGS), &home, &[("AWS_PROFILE", "role")]);
    assert!(err.contains("role_arn") && err.contains("aws configure export-credentials"), "{err}");
    // Unsigned requests to a server that wants signatures: refused. (moto answers them with a
    // 500 from its auth code where S3 says 403 AccessDenied, so only the refusal is checked.)
    let err = run_refused(
        &build_args(&url("unsigned.zarr"), &FLAGS),
        &home,
        &[("AWS_PROFILE", "eo"), ("AWS_NO_SIGN_REQUEST", "1")],
    );
    assert!(err.contains("--out") && err.contains("unsigned.zarr"), "{err}");
    assert!(!err.contains(&moto.secret), "the secret was printed: {err}");
    for p in ["envwins.zarr", "missing.zarr", "role.zarr", "unsigned.zarr"] {
        assert!(moto.objects(p).is_empty(), "{p}: a refused build wrote something");
    }

    // COG inputs use the profile too: a private object read with the profile's keys.
    let rel = common::cogs().first().expect("a fixture COG")["path"].as_str().expect("path");
    let bytes = std::fs::read(common::fixture(rel)).expect("fixture");
    block_on(async { moto.store().put(&object_store::path::Path::from("in/x.tif"), PutPayload::from(bytes)).await })
        .expect("upload");
    let href = url("in/x.tif");
    let info = run_ok(&["info".into(), href.clone()], &home, &[("AWS_PROFILE", "eo")]);
    let local = run_ok(&["info".into(), common::fixture(rel).display().to_string()], &home, &[]);
    let tail = |o: &Output| String::from_utf8_lossy(&o.stdout).lines().skip(1).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(tail(&info), tail(&local), "the same header through the profile");
    // Without the profile the input is read unsigned (public archives), which this server refuses.
    let err = run_refused(&["info".into(), href], &home, &[]);
    assert!(err.contains("in/x.tif"), "{err}");
}

/// `AWS_NO_SIGN_REQUEST` on a bucket whose policy lets anyone read and write (on the test moto):
/// works with no key anywhere. (Without the policy moto, like S3, answers anonymous reads of the
/// objects just written with 403.)
#[test]
fn unsigned_requests_work_on_a_public_bucket() {
    let s3 = common::s3();
    let bucket = unique("unsigned");
    let script = r#"
import sys, json, boto3
from botocore.config import Config
ep, bucket = sys.argv[1:3]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1", aws_access_key_id="test",
                  aws_secret_access_key="test", config=Config(s3={"addressing_style": "path"}))
s3.create_bucket(Bucket=bucket)
arn = f"arn:aws:s3:::{bucket}"
policy = {"Version": "2012-10-17",
          "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": [arn, arn + "/*"]}]}
s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
"#;
    common::run_python(script, &[&s3.endpoint, &bucket], &format!("creating bucket {bucket}"));
    let home = empty_home("unsigned");
    let env = [("AWS_ENDPOINT_URL", s3.endpoint.as_str()), ("AWS_NO_SIGN_REQUEST", "true")];
    run_ok(&build_args(&format!("s3://{bucket}/anon.zarr"), &FLAGS), &home, &env);
    let st = run_ok(&["status".into(), format!("s3://{bucket}/anon.zarr"), "--json".into()], &home, &env);
    let st: Value = serde_json::from_slice(&st.stdout).expect("status --json");
    assert_eq!(st["complete"], true, "{st}");
}

// ---------------------------------------------------------------------------------------------
// Azure Blob Storage on Azurite
// ---------------------------------------------------------------------------------------------

use common::{AZ_ACCOUNT, AZ_KEY, az_store, azurite, fresh_container};

/// What eocube needs to reach Azurite: object_store's emulator switch and its URL.
fn az_env(az: &str) -> [(&'static str, String); 2] {
    [("AZURE_STORAGE_USE_EMULATOR", "true".into()), ("AZURITE_BLOB_STORAGE_URL", az.to_string())]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Build the e2e cube on Azurite and locally, compare every chunk object, read it back with
/// `eocube status` (emulator switch, then plain account name + key + endpoint), with xarray
/// through adlfs, then SIGKILL a build midway and resume it.
#[test]
fn az_build_matches_local_resumes_after_sigkill_and_reads_in_xarray() {
    let az = azurite();
    let env = az_env(&az);
    let env = env_refs(&env);
    let home = empty_home("az");
    let container = fresh_container(&az, "az");
    let store = az_store(&az, &container);
    let (local, local_objs) = local_reference();

    let url = format!("az://{container}/cubes/e2e.zarr");
    let t0 = Instant::now();
    run_ok(&build_args(&url, &FLAGS), &home, &env);
    let secs = t0.elapsed().as_secs_f64();
    let objs = objects(&store, "cubes/e2e.zarr");
    assert_same_chunks(local_objs, &objs, "local vs az build");
    let jobs = objs.keys().filter(|k| k.starts_with("_eocube/ledger/")).count();
    println!("az build: {jobs} jobs in {secs:.1} s, {} objects", objs.len());

    // Read back through the general configuration too: account, key and an http endpoint.
    let endpoint = format!("{az}/{AZ_ACCOUNT}");
    let general = [
        ("AZURE_STORAGE_ACCOUNT_NAME", AZ_ACCOUNT),
        ("AZURE_STORAGE_ACCOUNT_KEY", AZ_KEY),
        ("AZURE_STORAGE_ENDPOINT", endpoint.as_str()),
    ];
    // The abfss form names the account in the URL; the key and endpoint still come from the
    // environment.
    let abfss = format!("abfss://{container}@{AZ_ACCOUNT}.dfs.core.windows.net/cubes/e2e.zarr");
    let for_abfss = [("AZURE_STORAGE_ACCOUNT_KEY", AZ_KEY), ("AZURE_STORAGE_ENDPOINT", endpoint.as_str())];
    for (what, u, e) in
        [("emulator", &url, env.as_slice()), ("account key", &url, &general[..]), ("abfss URL", &abfss, &for_abfss[..])]
    {
        let st = run_ok(&["status".into(), u.clone(), "--json".into()], &home, e);
        let st: Value = serde_json::from_slice(&st.stdout).expect("status --json");
        assert_eq!((st["done"].as_u64(), st["complete"].as_bool()), (Some(jobs as u64), Some(true)), "{what}: {st}");
    }
    // A second run resumes: nothing to do, nothing rewritten.
    run_ok(&build_args(&url, &FLAGS), &home, &env);
    assert_same_chunks(local_objs, &objects(&store, "cubes/e2e.zarr"), "az after a no-op resume");

    python_reads_the_same(local, &az, &container, "cubes/e2e.zarr");

    // SIGKILL midway, then resume.
    let flags1 = ["--resampling", "nearest", "--chunk-size", "64", "--workers", "1"];
    let killed = format!("az://{container}/cubes/killed.zarr");
    let args = build_args(&killed, &flags1);
    let mut child =
        eocube(&args, &home, &env).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawning eocube");
    let ledger = |s: &object_store::azure::MicrosoftAzure| objects(s, "cubes/killed.zarr/_eocube/ledger").len();
    let at_kill = common::kill_when(
        &mut child,
        3,
        Duration::from_secs(120),
        Duration::from_millis(20),
        &format!("3 of {jobs} jobs were in the ledger"),
        || ledger(&store),
    );
    let before = objects(&store, "cubes/killed.zarr");
    let done_before = before.keys().filter(|k| k.starts_with("_eocube/ledger/")).count();
    assert!(done_before < jobs, "every job was done before the kill: cannot test resume");
    let root: Value = serde_json::from_slice(&before["zarr.json"]).unwrap();
    assert!(root.get("consolidated_metadata").is_none(), "an interrupted cube is not consolidated");
    println!("az: killed after {at_kill} ledger objects ({done_before} at exit) of {jobs}");
    run_ok(&args, &home, &env);
    let after = objects(&store, "cubes/killed.zarr");
    assert_eq!(after.keys().filter(|k| k.starts_with("_eocube/ledger/")).count(), jobs);
    for (k, v) in before.iter().filter(|(k, _)| k.starts_with("_eocube/ledger/")) {
        assert_eq!(&after[k], v, "{k}: a job done before the kill was redone");
    }
    assert_same_chunks(local_objs, &after, "local vs az after SIGKILL + resume");
}

/// zarr-python + xarray open the Azurite cube through adlfs and see the same dataset.
fn python_reads_the_same(local: &Path, az: &str, container: &str, prefix: &str) {
    let script = r#"
import sys, json
import numpy as np, xarray as xr, rioxarray  # noqa: F401
local, url, az, account, key = sys.argv[1:6]
conn = f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};BlobEndpoint={az}/{account};"
opts = {"connection_string": conn}
a = xr.open_zarr(local)
b = xr.open_zarr(url, storage_options=opts)
assert dict(a.sizes) == dict(b.sizes), (a.sizes, b.sizes)
for name in ["time", "latitude", "longitude", "band"]:
    assert np.array_equal(a[name].values, b[name].values), name
ra = xr.open_zarr(local, mask_and_scale=False)["rgb_median"].values
rb = xr.open_zarr(url, storage_options=opts, mask_and_scale=False)["rgb_median"].values
assert ra.dtype == rb.dtype == np.uint16 and np.array_equal(ra, rb)
assert (ra > 0).sum() > 0
xr.testing.assert_equal(a, b)
assert a.rio.crs == b.rio.crs and b.rio.crs.to_epsg() == 4326, (a.rio.crs, b.rio.crs)
print(json.dumps({"sizes": dict(b.sizes), "valid": int((rb > 0).sum())}))
print("all checks passed")
"#;
    let url = format!("az://{container}/{prefix}");
    let local = local.display().to_string();
    let what = format!("xarray read-back of {url}");
    let stdout = common::run_python(script, &[&local, &url, az, AZ_ACCOUNT, AZ_KEY], &what);
    println!("xarray (adlfs): {stdout}");
    assert!(stdout.contains("all checks passed"), "{what}:\n{stdout}");
}

/// A container that does not exist and a wrong account key are refused before anything is
/// written, with the fix; the key is never printed.
#[test]
fn az_missing_container_and_wrong_key_are_refused_without_writing() {
    let az = azurite();
    let env = az_env(&az);
    let home = empty_home("az-refusals");
    let missing = unique("missing");
    let url = format!("az://{missing}/cube.zarr");
    let err = run_refused(&build_args(&url, &FLAGS), &home, &env_refs(&env));
    assert!(err.contains(&format!("--out {url}")) && err.contains("does not exist"), "{err}");
    // Still no such container: listing it fails.
    let listed = block_on(async { az_store(&az, &missing).list_with_delimiter(None).await });
    assert!(listed.is_err(), "the refused build created the container");

    let container = fresh_container(&az, "wrongkey");
    // A well-formed key of another account.
    let wrong = "d3Jvbmcta2V5LW9mLWFub3RoZXItYWNjb3VudC0xMjM0NTY3ODkw";
    let mut env_wrong = env_refs(&env);
    env_wrong.push(("AZURE_STORAGE_ACCOUNT_KEY", wrong));
    let url = format!("az://{container}/cube.zarr");
    let err = run_refused(&build_args(&url, &FLAGS), &home, &env_wrong);
    assert!(err.contains("access denied") && err.contains("AZURE_STORAGE_ACCOUNT_KEY"), "{err}");
    assert!(!err.contains(wrong) && !err.contains(AZ_KEY), "the key was printed: {err}");
    assert!(objects(&az_store(&az, &container), "cube.zarr").is_empty(), "the refused build wrote something");
}

/// COG inputs from `az://` hrefs: `eocube info` reads a fixture uploaded to Azurite.
#[test]
fn cog_inputs_are_read_from_az() {
    let az = azurite();
    let env = az_env(&az);
    let home = empty_home("az-info");
    let container = fresh_container(&az, "cogs");
    let cog = common::cogs().first().expect("a fixture COG");
    let rel = cog["path"].as_str().expect("path");
    let bytes = std::fs::read(common::fixture(rel)).expect("fixture");
    let store = az_store(&az, &container);
    block_on(async { store.put(&object_store::path::Path::from("in/x.tif"), PutPayload::from(bytes)).await })
        .expect("upload");
    let href = format!("az://{container}/in/x.tif");
    let local = run_ok(&["info".into(), common::fixture(rel).display().to_string()], &home, &[]);
    let remote = run_ok(&["info".into(), href.clone()], &home, &env_refs(&env));
    let (l, r) = (String::from_utf8_lossy(&local.stdout), String::from_utf8_lossy(&remote.stdout));
    // The same header seen through both (the first line names the href).
    assert_eq!(l.lines().skip(1).collect::<Vec<_>>(), r.lines().skip(1).collect::<Vec<_>>(), "{l}\n---\n{r}");
    let missing = run_refused(&["info".into(), format!("az://{container}/in/none.tif")], &home, &env_refs(&env));
    assert!(missing.contains("none.tif") && missing.contains("not found"), "{missing}");
}

// ---------------------------------------------------------------------------------------------
// Google Cloud Storage: parsing and refusals (no emulator speaks object_store's XML API here)
// ---------------------------------------------------------------------------------------------

#[test]
fn gs_urls_parse_and_an_unreachable_gcs_is_refused_quickly() {
    assert_eq!(
        OutLocation::parse("gs://my-bucket/cubes/a.zarr").unwrap(),
        OutLocation::Gcs { bucket: "my-bucket".into(), prefix: "cubes/a.zarr".into() }
    );
    let home = empty_home("gs");
    // A service-account file pointing at a closed port (an emulator that is down).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sa = home.join("sa.json");
    std::fs::write(
        &sa,
        format!(r#"{{"gcs_base_url": "http://127.0.0.1:{port}", "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}}"#),
    )
    .unwrap();
    let t0 = Instant::now();
    let err = run_refused(
        &build_args("gs://some-bucket/cube.zarr", &FLAGS),
        &home,
        &[("GOOGLE_SERVICE_ACCOUNT", &sa.display().to_string())],
    );
    assert!(err.contains("--out gs://some-bucket/cube.zarr") && err.contains("does not answer"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(45), "took {:?} to give up", t0.elapsed());
    for (out, want) in [("icechunk+gs://b/repo", "not supported yet"), ("gs://Bad/x", "not a valid GCS bucket")] {
        let err = run_refused(&build_args(out, &FLAGS), &home, &[]);
        assert!(err.contains(&format!("--out {out}")) && err.contains(want), "{err}");
    }
}
