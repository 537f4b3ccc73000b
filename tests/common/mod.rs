//! Shared helpers of the integration tests: `mod common;` at the top of a `tests/*.rs` file.
//!
//! The environment comes from `scripts/test.sh`, which installs GDAL (rasterio) into `.venv`,
//! writes the fixtures with `scripts/fixtures.py` and starts nginx and moto
//! (`scripts/servers.sh`). The manifest layout is documented in `docs/testing.md`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

const HOW: &str = "run the tests with scripts/test.sh, which generates fixtures and starts nginx and moto \
                   (or: scripts/servers.sh start && source target/eocube-servers/env)";

fn env_var(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{name} is not set: {HOW}"),
    }
}

/// The fixtures directory (`$EOCUBE_FIXTURES`).
pub fn fixtures_dir() -> PathBuf {
    let dir = PathBuf::from(env_var("EOCUBE_FIXTURES"));
    assert!(dir.join("manifest.json").is_file(), "{} has no manifest.json: {HOW}", dir.display());
    dir
}

/// A path inside the fixtures directory, from a manifest-relative path.
pub fn fixture(rel: &str) -> PathBuf {
    fixtures_dir().join(rel)
}

/// `manifest.json`, parsed once per test binary.
pub fn manifest() -> &'static Value {
    static MANIFEST: OnceLock<Value> = OnceLock::new();
    MANIFEST.get_or_init(|| {
        let path = fixtures_dir().join("manifest.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
    })
}

/// All entries of `manifest.cogs`.
pub fn cogs() -> &'static [Value] {
    manifest()["cogs"].as_array().map(Vec::as_slice).expect("manifest.cogs is an array")
}

/// The `cogs` entry named `name`.
pub fn cog(name: &str) -> &'static Value {
    cogs().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no cog {name:?} in the manifest"))
}

/// All entries of `manifest.warp_cases`.
pub fn warp_cases() -> &'static [Value] {
    manifest()["warp_cases"].as_array().map(Vec::as_slice).expect("manifest.warp_cases is an array")
}

/// Path of one of the broken files: `truncated`, `garbage`, `offset_past_end`,
/// `unsupported_compression`, `no_geokeys`.
pub fn bad(kind: &str) -> PathBuf {
    let rel = manifest()["bad"][kind].as_str().unwrap_or_else(|| panic!("no bad.{kind} in the manifest"));
    fixture(rel)
}

/// Base URL of the nginx serving the fixtures directory, e.g. `http://127.0.0.1:41234`
/// (no trailing slash). `{http_base()}/{path}` serves the file at `path` of the manifest.
pub fn http_base() -> String {
    env_var("EOCUBE_TEST_HTTP").trim_end_matches('/').to_string()
}

/// `http_base()` joined with a manifest-relative path.
pub fn http_url(rel: &str) -> String {
    format!("{}/{}", http_base(), rel.trim_start_matches('/'))
}

/// nginx's access log (one line per request: `"GET /path HTTP/1.1" "bytes=a-b" status bytes`).
/// Other tests run in parallel against the same server: filter lines by a path only you use.
pub fn http_access_log() -> PathBuf {
    PathBuf::from(env_var("EOCUBE_TEST_HTTP_LOG"))
}

/// The S3-compatible server (moto) holding a copy of the fixtures directory in `bucket`,
/// each file under its manifest-relative path as key. Path-style addressing, plain HTTP.
#[derive(Debug, Clone)]
pub struct S3Env {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

impl S3Env {
    /// `s3://bucket/key` of a manifest-relative path.
    pub fn url(&self, rel: &str) -> String {
        format!("s3://{}/{}", self.bucket, rel.trim_start_matches('/'))
    }

    /// Creates the bucket `name` on the test moto through the S3 API (moto accepts unsigned
    /// requests) and returns its name.
    pub fn create_bucket(&self, name: &str) -> String {
        let out = std::process::Command::new("curl")
            .args(["-fsS", "-X", "PUT", "--max-time", "20", &format!("{}/{name}", self.endpoint)])
            .output()
            .expect("running curl");
        assert!(out.status.success(), "creating bucket {name}: {}", String::from_utf8_lossy(&out.stderr));
        name.to_string()
    }

    /// An object_store client of `bucket` on the test moto, with the test's key (path style).
    pub fn store(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(&self.endpoint)
            .with_region(&self.region)
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(&self.secret_key)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .build()
            .expect("test S3 client")
    }

    /// The `icechunk` crate's own storage for `bucket`/`prefix` on the test moto (to read a
    /// repository without eocube's store).
    pub async fn icechunk_storage(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> std::sync::Arc<dyn icechunk::Storage + Send + Sync> {
        let mut o = icechunk::storage::S3Options::default();
        o.region = Some(self.region.clone());
        o.endpoint_url = Some(self.endpoint.clone());
        o.allow_http = true;
        o.force_path_style = true;
        let creds = icechunk::storage::S3Credentials::Static(icechunk::storage::S3StaticCredentials {
            access_key_id: self.access_key.clone(),
            secret_access_key: self.secret_key.clone(),
            session_token: None,
            expires_after: None,
        });
        icechunk::new_s3_object_store_storage(
            o,
            bucket.to_string(),
            Some(prefix.to_string()),
            Some(creds),
            vec![],
            vec![],
        )
        .await
        .expect("icechunk S3 storage")
    }
}

/// Every object of `store` under `prefix` ("" for all), by key relative to the prefix.
pub fn objects_under(
    store: &dyn object_store::ObjectStore,
    prefix: &str,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let p = object_store::path::Path::from(prefix);
        let metas: Vec<_> =
            store.list(if prefix.is_empty() { None } else { Some(&p) }).try_collect().await.expect("listing");
        let mut out = std::collections::BTreeMap::new();
        for m in metas {
            let key = m.location.to_string();
            let rel = if prefix.is_empty() { key.clone() } else { key[prefix.len() + 1..].to_string() };
            let bytes = store.get(&m.location).await.expect("get").bytes().await.expect("body");
            out.insert(rel, bytes.to_vec());
        }
        out
    })
}

pub fn s3() -> S3Env {
    S3Env {
        endpoint: env_var("EOCUBE_TEST_S3_ENDPOINT").trim_end_matches('/').to_string(),
        bucket: env_var("EOCUBE_TEST_S3_BUCKET"),
        access_key: env_var("AWS_ACCESS_KEY_ID"),
        secret_key: env_var("AWS_SECRET_ACCESS_KEY"),
        region: env_var("AWS_REGION"),
    }
}

fn read_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Raw little-endian uint16 (window truths, warp references).
pub fn read_le_u16(path: impl AsRef<Path>) -> Vec<u16> {
    let bytes = read_bytes(path.as_ref());
    assert!(bytes.len().is_multiple_of(2), "{}: odd length", path.as_ref().display());
    bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect()
}

/// Size in bytes of one sample of a manifest dtype.
pub fn dtype_size(dtype: &str) -> usize {
    match dtype {
        "uint8" | "int8" => 1,
        "uint16" | "int16" => 2,
        "uint32" | "int32" | "float32" => 4,
        "float64" | "uint64" | "int64" => 8,
        other => panic!("unknown dtype {other:?}"),
    }
}

/// Raw little-endian samples of any manifest dtype, widened to f64 (exact for all of them
/// except 64-bit integers beyond 2^53, which the fixtures do not use).
pub fn read_raw(path: impl AsRef<Path>, dtype: &str) -> Vec<f64> {
    let path = path.as_ref();
    let bytes = read_bytes(path);
    let size = dtype_size(dtype);
    assert!(bytes.len().is_multiple_of(size), "{}: length {} is not a multiple of {size}", path.display(), bytes.len());
    let c = bytes.chunks_exact(size);
    match dtype {
        "uint8" => bytes.iter().map(|&b| f64::from(b)).collect(),
        "int8" => bytes.iter().map(|&b| f64::from(b as i8)).collect(),
        "uint16" => c.map(|b| f64::from(u16::from_le_bytes([b[0], b[1]]))).collect(),
        "int16" => c.map(|b| f64::from(i16::from_le_bytes([b[0], b[1]]))).collect(),
        "uint32" => c.map(|b| f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect(),
        "int32" => c.map(|b| f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect(),
        "float32" => c.map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect(),
        "float64" => c.map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))).collect(),
        "uint64" => c.map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as f64).collect(),
        "int64" => c.map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f64).collect(),
        other => panic!("unknown dtype {other:?}"),
    }
}

/// A window of `manifest.cogs[].windows`, typed.
#[derive(Debug, Clone)]
pub struct WindowCase {
    /// 0 = full resolution, k = k-th overview (overview factor `overviews[k-1]`).
    pub level: usize,
    /// Top-left in pixels of that level; may be negative (partly outside the image).
    pub row: i64,
    pub col: i64,
    pub height: usize,
    pub width: usize,
    /// Expected samples, row-major, widened to f64; outside the image = nodata (or 0).
    pub file: PathBuf,
}

/// The windows of a `cogs` entry.
pub fn windows(cog: &Value) -> Vec<WindowCase> {
    let dir = fixtures_dir();
    cog["windows"]
        .as_array()
        .expect("windows is an array")
        .iter()
        .map(|w| WindowCase {
            level: w["level"].as_u64().expect("level") as usize,
            row: w["row"].as_i64().expect("row"),
            col: w["col"].as_i64().expect("col"),
            height: w["height"].as_u64().expect("height") as usize,
            width: w["width"].as_u64().expect("width") as usize,
            file: dir.join(w["file"].as_str().expect("file")),
        })
        .collect()
}

/// A 6-number affine of the manifest (rasterio order `[a, b, c, d, e, f]`:
/// `x = a*col + b*row + c`, `y = d*col + e*row + f`).
pub fn affine6(v: &Value) -> [f64; 6] {
    let a = v.as_array().expect("transform is an array");
    assert_eq!(a.len(), 6, "transform has 6 numbers");
    std::array::from_fn(|i| a[i].as_f64().expect("number"))
}

/// Fraction of positions where `got` and `want` are equal.
pub fn fraction_equal<T: PartialEq>(got: &[T], want: &[T]) -> f64 {
    assert_eq!(got.len(), want.len(), "length");
    if want.is_empty() {
        return 1.0;
    }
    got.iter().zip(want).filter(|(a, b)| a == b).count() as f64 / want.len() as f64
}

/// Fraction of positions where `|got - want| <= tol`.
pub fn fraction_within(got: &[u16], want: &[u16], tol: u16) -> f64 {
    assert_eq!(got.len(), want.len(), "length");
    if want.is_empty() {
        return 1.0;
    }
    got.iter().zip(want).filter(|(a, b)| a.abs_diff(**b) <= tol).count() as f64 / want.len() as f64
}

// ---------------------------------------------------------------------------------------------
// End-to-end: `eocube build` against the e2e archive (scripts/e2e_fixtures.py), served by the
// test nginx and the test pgstac (collection `e2e-s2-l2a`, loaded by scripts/stac-server.sh).
// ---------------------------------------------------------------------------------------------

/// The e2e archive directory (`$EOCUBE_FIXTURES/e2e`).
pub fn e2e_dir() -> PathBuf {
    let dir = PathBuf::from(env_var("EOCUBE_FIXTURES")).join("e2e");
    assert!(
        dir.join("manifest.json").is_file(),
        "{} has no manifest.json: run .venv/bin/python scripts/e2e_fixtures.py (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// `e2e/manifest.json`, parsed once per test binary.
pub fn e2e_manifest() -> &'static Value {
    static MANIFEST: OnceLock<Value> = OnceLock::new();
    MANIFEST.get_or_init(|| {
        let path = e2e_dir().join("manifest.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
    })
}

/// The real STAC API (`$EOCUBE_TEST_STAC`), checked once: its `e2e-s2-l2a` collection must hold
/// the archive's items with hrefs on this run's nginx (`http_base()`).
pub fn e2e_stac_url() -> String {
    static CHECKED: OnceLock<String> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let url = match std::env::var("EOCUBE_TEST_STAC") {
                Ok(v) if !v.is_empty() => v.trim_end_matches('/').to_string(),
                _ => panic!(
                    "EOCUBE_TEST_STAC is not set: run the tests with scripts/test.sh (or scripts/servers.sh start, \
                     source its env, then scripts/stac-server.sh start and source target/eocube-stac/env)"
                ),
            };
            let collection = e2e_manifest()["collection"].as_str().expect("collection");
            let items = format!("{url}/collections/{collection}/items?limit=100");
            let out = std::process::Command::new("curl")
                .args(["-fsS", "--max-time", "20", &items])
                .output()
                .unwrap_or_else(|e| panic!("running curl: {e}"));
            assert!(
                out.status.success(),
                "GET {items} failed: {}; is the STAC API up and the e2e collection loaded (scripts/stac-server.sh start)?",
                String::from_utf8_lossy(&out.stderr)
            );
            let doc: Value = serde_json::from_slice(&out.stdout).expect("items page is JSON");
            let feats = doc["features"].as_array().expect("features");
            let want = e2e_manifest()["scenes"].as_array().expect("scenes").len();
            assert_eq!(feats.len(), want, "{items}: {} items, the archive has {want}", feats.len());
            let href = feats[0]["assets"]["red"]["href"].as_str().expect("href").to_string();
            assert!(
                href.starts_with(&format!("{}/e2e/", http_base())),
                "the e2e items point at {href}, not at this run's nginx {}: rerun scripts/stac-server.sh start \
                 with EOCUBE_TEST_HTTP set (it reloads them)",
                http_base()
            );
            url
        })
        .clone()
}

/// A fresh scratch directory `target/test-build/<name>-<pid>` (removed first if present).
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("test-build")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// The e2e cube settings (bbox, dates, collection, STAC URL) as `eocube build` flags, then `extra`,
/// then `--out out`.
pub fn e2e_build_args(out: &Path, extra: &[&str]) -> Vec<String> {
    e2e_args(out, ["--stac-url".to_string(), e2e_stac_url()], extra)
}

/// As [`e2e_build_args`], with the scenes from a local item file (`--items`) instead of the API:
/// no STAC server needed.
pub fn e2e_items_build_args(out: &Path, items: &Path, extra: &[&str]) -> Vec<String> {
    e2e_args(out, ["--items".to_string(), items.display().to_string()], extra)
}

fn e2e_args(out: &Path, catalog: [String; 2], extra: &[&str]) -> Vec<String> {
    let m = e2e_manifest();
    let bbox: Vec<String> = m["bbox"].as_array().expect("bbox").iter().map(|v| v.to_string()).collect();
    let mut args: Vec<String> = vec!["build".into(), "--bbox".into()];
    args.extend(bbox);
    for (flag, key) in [("--start", "start"), ("--end", "end"), ("--collection", "collection")] {
        args.push(flag.into());
        args.push(m[key].as_str().expect(key).into());
    }
    args.extend(catalog);
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("--out".into());
    args.push(out.display().to_string());
    args
}

/// Run the eocube binary with `args`; prints the command, its time and its stderr tail.
pub fn run_eocube(args: &[String]) -> std::process::Output {
    let t0 = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eocube"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running eocube: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(2).collect::<Vec<_>>().into_iter().rev().collect();
    println!(
        "eocube {} -> {} in {:.1} s\n  stderr tail: {}",
        args.join(" "),
        out.status,
        t0.elapsed().as_secs_f64(),
        tail.join("\n  ")
    );
    out
}

/// Run `eocube build` and require exit 0.
pub fn eocube_build_ok(args: &[String]) {
    assert_ok(&run_eocube(args), args);
}

/// Fail, showing the command, its exit status and its output, unless `out` is a success.
pub fn assert_ok(out: &std::process::Output, args: &[String]) {
    assert!(
        out.status.success(),
        "eocube {} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `tests/py/e2e_cube.py` checks a cube against.
pub struct CubeExpect<'a> {
    pub variable: &'a str,
    pub bands: &'a [&'a str],
    pub chunk_size: usize,
    /// Time labels, `YYYY-MM-DD`; `None` = the manifest's.
    pub times: Option<Vec<String>>,
}

/// Check a built cube with xarray (`tests/py/e2e_cube.py`: dims, coordinates, time labels, CRS,
/// scale/offset, bands, variable) and return its raw values, (time, latitude, longitude, band).
pub fn read_cube_xarray(cube: &Path, expect: &CubeExpect) -> Vec<u16> {
    read_cube_and_indices_xarray(cube, expect, &[]).0
}

/// [`read_cube_xarray`] of a cube with index variables `indices` (checked too: dims, encoding,
/// fill): the data variable's raw values and each index's, (time, latitude, longitude).
pub fn read_cube_and_indices_xarray(cube: &Path, expect: &CubeExpect, indices: &[&str]) -> (Vec<u16>, Vec<Vec<u16>>) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(python.is_file(), "{} is missing: run scripts/setup.sh", python.display());
    let m = e2e_manifest();
    let times = expect.times.clone().unwrap_or_else(|| {
        m["times"].as_array().expect("times").iter().map(|t| t.as_str().expect("time").to_string()).collect()
    });
    let exp = serde_json::json!({
        "variable": expect.variable,
        "bands": expect.bands,
        "chunk_size": expect.chunk_size,
        "indices": indices,
        "times": times,
        "epsg": 4326,
        "nx": m["nx"], "ny": m["ny"], "origin_index": m["origin_index"],
    });
    let exp_path = cube.with_extension("expect.json");
    let export = cube.with_extension("export.bin");
    std::fs::write(&exp_path, serde_json::to_vec_pretty(&exp).expect("json")).expect("writing expect.json");
    let out = std::process::Command::new(&python)
        .arg(root.join("tests/py/e2e_cube.py"))
        .arg(cube)
        .arg(&exp_path)
        .arg(&export)
        .output()
        .unwrap_or_else(|e| panic!("running e2e_cube.py: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "e2e_cube.py {} failed ({}):\n{stdout}\n{stderr}",
        cube.display(),
        out.status
    );
    let index_values = indices.iter().map(|name| read_le_u16(format!("{}.{name}", export.display()))).collect();
    (read_le_u16(&export), index_values)
}

/// An oracle file of the e2e manifest (`oracle.<key>`), raw little-endian u8 or u16.
pub fn e2e_oracle_u16(key: &str) -> Vec<u16> {
    let rel = e2e_manifest()["oracle"][key].as_str().unwrap_or_else(|| panic!("no oracle.{key}"));
    read_le_u16(e2e_dir().join(rel))
}

pub fn e2e_oracle_u8(key: &str) -> Vec<u8> {
    let rel = e2e_manifest()["oracle"][key].as_str().unwrap_or_else(|| panic!("no oracle.{key}"));
    read_bytes(&e2e_dir().join(rel))
}

/// Every file under `dir`, by path relative to it, with its bytes.
pub fn files_under(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, d: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).expect("under base").to_string_lossy().into_owned();
                out.insert(rel, read_bytes(&p));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The test venv's Python (`.venv/bin/python`, with xarray, zarr, rioxarray and rasterio).
pub fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(python.is_file(), "{} is missing: run scripts/setup.sh (scripts/test.sh does)", python.display());
    python
}

/// A moto server of this test's own on a free port that enforces signatures and IAM after its
/// first `free_requests` requests (moto's `INITIAL_NO_AUTH_ACTION_COUNT`): returns the child
/// (kill it when done) and its endpoint.
pub fn start_auth_moto(free_requests: u32) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
    let moto = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    assert!(moto.is_file(), "{} is missing: run scripts/setup.sh", moto.display());
    let child = std::process::Command::new(&moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", free_requests.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting moto_server");
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < std::time::Duration::from_secs(30), "moto did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    (child, format!("http://127.0.0.1:{port}"))
}

/// Run the test venv's Python on `script` (`python -c script args...`); fail with `what`, its
/// stdout and stderr unless it succeeds. Returns its stdout.
pub fn run_python(script: &str, args: &[&str], what: &str) -> String {
    let out = std::process::Command::new(python())
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running python ({what}): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Polls `progress()` every `poll` until it reaches `n`, then SIGKILLs `child` and reaps it;
/// returns the progress seen at the kill. Panics if the child ends first (`before` says what it
/// should have reached: there is nothing to test then) or if `limit` passes.
pub fn kill_when(
    child: &mut std::process::Child,
    n: usize,
    limit: std::time::Duration,
    poll: std::time::Duration,
    before: &str,
    progress: impl Fn() -> usize,
) -> usize {
    let t0 = std::time::Instant::now();
    loop {
        let seen = progress();
        if seen >= n {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
            return seen;
        }
        if let Some(st) = child.try_wait().expect("try_wait") {
            panic!("the build ended ({st}) before {before}: cannot test the kill");
        }
        assert!(t0.elapsed() < limit, "no progress after {limit:?}");
        std::thread::sleep(poll);
    }
}

/// Every line of the run report of the local cube at `cube` (`_eocube/report/*.jsonl` in name
/// order, after the single `_eocube/report.jsonl` of older cubes).
#[allow(dead_code)]
pub fn report_lines(cube: &std::path::Path) -> Vec<serde_json::Value> {
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    let legacy = cube.join("_eocube/report.jsonl");
    if legacy.is_file() {
        files.push(legacy);
    }
    let mut parts: Vec<std::path::PathBuf> = std::fs::read_dir(cube.join("_eocube/report"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    parts.sort();
    files.extend(parts);
    assert!(!files.is_empty(), "{} has no run report", cube.display());
    files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("report line {l:?}: {e}")))
                .collect::<Vec<_>>()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Azurite (scripts/servers.sh)

/// Azurite's development account and its published key.
#[allow(dead_code)]
pub const AZ_ACCOUNT: &str = "devstoreaccount1";
#[allow(dead_code)]
pub const AZ_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The test Azurite's blob URL (`$EOCUBE_TEST_AZURITE`).
#[allow(dead_code)]
pub fn azurite() -> String {
    match std::env::var("EOCUBE_TEST_AZURITE") {
        Ok(v) if !v.is_empty() => v.trim_end_matches('/').to_string(),
        _ => panic!(
            "EOCUBE_TEST_AZURITE is not set: run the tests with scripts/test.sh (or scripts/servers.sh start && source target/eocube-servers/env)"
        ),
    }
}

/// A new container on Azurite (through the Azure SDK of the venv: object_store cannot create one).
#[allow(dead_code)]
pub fn fresh_container(az: &str, tag: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!("eocube-{tag}-{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let script = r#"
import sys
from azure.storage.blob import BlobServiceClient
az, account, key, name = sys.argv[1:5]
conn = f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};BlobEndpoint={az}/{account};"
BlobServiceClient.from_connection_string(conn).create_container(name)
"#;
    run_python(script, &[az, AZ_ACCOUNT, AZ_KEY, &name], &format!("creating container {name}"));
    name
}

/// A test client of one Azurite container.
#[allow(dead_code)]
pub fn az_store(az: &str, container: &str) -> object_store::azure::MicrosoftAzure {
    object_store::azure::MicrosoftAzureBuilder::new()
        .with_account(AZ_ACCOUNT)
        .with_access_key(AZ_KEY)
        .with_container_name(container)
        .with_endpoint(format!("{az}/{AZ_ACCOUNT}"))
        .with_allow_http(true)
        .build()
        .expect("test Azure client")
}

/// In a moto of [`start_auth_moto`], within its free requests: an IAM user with every right, its
/// access key, and `bucket`. Returns the key's id and secret.
pub fn auth_moto_user(endpoint: &str, bucket: &str) -> (String, String) {
    let script = r#"
import sys, json, boto3
from botocore.config import Config
ep, bucket = sys.argv[1:3]
kw = dict(endpoint_url=ep, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="eocube")
policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
iam.put_user_policy(UserName="eocube", PolicyName="all", PolicyDocument=json.dumps(policy))
k = iam.create_access_key(UserName="eocube")["AccessKey"]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1", aws_access_key_id=k["AccessKeyId"],
                  aws_secret_access_key=k["SecretAccessKey"], config=Config(s3={"addressing_style": "path"}))
s3.create_bucket(Bucket=bucket)
print(k["AccessKeyId"], k["SecretAccessKey"])
"#;
    let keys = run_python(script, &[endpoint, bucket], "setting up the auth moto");
    let (id, secret) = keys.trim().split_once(' ').expect("two keys");
    (id.to_string(), secret.to_string())
}
