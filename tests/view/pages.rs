//! The pages of `eocube serve` (issue 11, part 3) in headless Chromium: a small Icechunk cube
//! built with the real CLI from the e2e archive (tagged `v1`), the real `eocube serve --token`
//! on a free port, and `tests/view/pages.cjs` (playwright-core from .tools/, Debian chromium with
//! software WebGL) walking the catalog, the map, its time slider, the pixel inspector and the
//! version selector. The script only records; the judging is here.
//!
//! Screenshots stay under `target/test-build/pages-<pid>/` (their paths are printed). Without
//! Chromium, node or playwright-core (scripts/setup.sh installs them) the test fails, it never skips.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

const TOKEN: &str = "pages-test-token";
/// The e2e build's default bands.
const BANDS: [&str; 3] = ["red", "green", "blue"];

/// `eocube serve`, stopped when the test ends however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> PathBuf {
    let found = ["/usr/bin/chromium", "chromium"]
        .iter()
        .map(PathBuf::from)
        .find(|p| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success()));
    found.unwrap_or_else(|| panic!("no chromium: run scripts/setup.sh (it installs Debian's chromium)"))
}

fn playwright_core() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/node_modules/playwright-core");
    assert!(dir.join("package.json").is_file(), "{} is missing: run scripts/setup.sh", dir.display());
    dir
}

/// The status code of `GET path` on `port`, or None while nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn serve(cube: &str, dir: &Path) -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let log = dir.join("serve.log");
    let file = std::fs::File::create(&log).expect("serve.log");
    let args = ["serve", cube, "--addr", &format!("127.0.0.1:{port}"), "--token", TOKEN];
    println!("eocube {}", args.join(" "));
    let child = Command::new(env!("CARGO_BIN_EXE_eocube"))
        .args(args)
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .expect("starting eocube serve");
    let mut server = Server(child);
    let t0 = Instant::now();
    loop {
        match http_status(port, &format!("/cubes?token={TOKEN}")) {
            Some(200) => break,
            Some(code) => panic!("GET /cubes answered {code}: {}", std::fs::read_to_string(&log).unwrap_or_default()),
            None => {}
        }
        if let Some(st) = server.0.try_wait().expect("try_wait") {
            panic!("eocube serve ended ({st}):\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "eocube serve did not answer in 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The token is enforced, so the pages passing below means they carried it everywhere.
    assert_eq!(http_status(port, "/cubes"), Some(401), "a request without the token is refused");
    (server, port)
}

/// Per screenshot: (distinct colours, share of the commonest); and the share of pixels that
/// differ between each pair in `pairs` (by more than 8 in some channel).
fn pictures(shots: &[&str], pairs: &[(&str, &str)]) -> (Vec<(usize, f64)>, Vec<f64>) {
    let script = "import sys, json\nfrom PIL import Image, ImageChops\n\
                  shots, pairs = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n\
                  def stats(p):\n    im = Image.open(p).convert('RGB')\n\
                  \x20   counts = sorted((c for c, _ in im.getcolors(maxcolors=1 << 24)), reverse=True)\n\
                  \x20   return [len(counts), counts[0] / (im.width * im.height)]\n\
                  def diff(a, b):\n    a, b = Image.open(a).convert('RGB'), Image.open(b).convert('RGB')\n\
                  \x20   if a.size != b.size: return 1.0\n\
                  \x20   d = ImageChops.difference(a, b).convert('L').point(lambda v: 255 if v > 8 else 0)\n\
                  \x20   return d.histogram()[255] / (a.width * a.height)\n\
                  print(json.dumps([[stats(p) for p in shots], [diff(a, b) for a, b in pairs]]))";
    let shots_json = serde_json::to_string(shots).expect("json");
    let pairs_json = serde_json::to_string(pairs).expect("json");
    let out = common::run_python(script, &[&shots_json, &pairs_json], "reading the screenshots");
    let v: Value = serde_json::from_str(out.trim()).expect("the screenshot figures");
    let stats = v[0]
        .as_array()
        .expect("stats")
        .iter()
        .map(|s| (s[0].as_u64().expect("colours") as usize, s[1].as_f64().expect("share")))
        .collect();
    let diffs = v[1].as_array().expect("diffs").iter().map(|d| d.as_f64().expect("diff")).collect();
    (stats, diffs)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

#[test]
fn the_map_draws_moves_in_time_inspects_a_pixel_and_pins_a_version_in_chromium() {
    let (chromium, playwright) = (chromium(), playwright_core());
    let dir = common::scratch_dir("pages");
    let repo = format!("icechunk://{}", dir.join("e2e").display());
    let args = common::e2e_build_args(Path::new(&repo), &["--resampling", "nearest", "--tag", "v1", "--quiet"]);
    let out = common::run_eocube(&args);
    common::assert_ok(&out, &args);

    let (_server, port) = serve(&repo, &dir);
    let base = format!("http://127.0.0.1:{port}");
    let shots = dir.join("screenshots");
    std::fs::create_dir_all(&shots).expect("screenshots dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/view/pages.cjs");
    let t0 = Instant::now();
    let run = Command::new("node")
        .arg(&script)
        .args([&base, "e2e", TOKEN, &shots.display().to_string(), "v1"])
        .env("PLAYWRIGHT_CORE", &playwright)
        .env("CHROMIUM", &chromium)
        .output()
        .unwrap_or_else(|e| panic!("running node (scripts/setup.sh installs it): {e}"));
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!("pages.cjs: {} in {:.1} s", run.status, t0.elapsed().as_secs_f64());
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
        panic!("pages.cjs printed no result ({e}):\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr))
    });
    assert!(r.get("fatal").is_none(), "pages.cjs failed: {}", r["fatal"].as_str().unwrap_or_default());
    for shot in strings(&r["screenshots"]) {
        println!("screenshot: {shot}");
    }

    // Nothing broke, everything carried the token, nothing left this server (no basemap asked).
    let seen = &r["seen"];
    assert_eq!(strings(&seen["pageErrors"]), Vec::<String>::new(), "script errors");
    assert_eq!(strings(&seen["failed"]), Vec::<String>::new(), "failed requests");
    let requests = strings(&seen["requests"]);
    for url in &requests {
        if url.starts_with("blob:") {
            continue; // MapLibre's worker, made in the page
        }
        assert!(url.starts_with(&format!("{base}/")), "a request off this server: {url}");
        assert!(url.contains(&format!("token={TOKEN}")), "a request without the token: {url}");
    }
    for asset in ["maplibre-gl.js", "maplibre-gl.css", "map.js", "catalog.js", "style.css"] {
        assert!(requests.iter().any(|u| u.contains(&format!("/assets/{asset}?"))), "{asset} was not loaded");
    }

    // The catalog lists the cube with its thumbnail, bands, time range and versions.
    let c = &r["catalog"];
    let text = c["text"].as_str().unwrap_or_default();
    assert_eq!(c["cards"], 1, "{c}");
    for want in ["e2e", &BANDS.join(", "), "3 time steps", "tag v1", "branch main"] {
        assert!(text.contains(want), "the catalog card lacks {want:?}: {text}");
    }
    let w = c["thumbnail"]["width"].as_u64().unwrap_or(0);
    assert!((1..=256).contains(&w), "thumbnail: {c}");
    assert!(c["mapLink"].as_str().is_some_and(|l| l.contains("/cubes/e2e/map")), "{c}");

    // The map opens on the latest time step with its neighbour's tiles loaded too; one step
    // back asks only for the new neighbour (the shown one was prefetched).
    let (first, second) = (&r["first"], &r["second"]);
    let times = strings(&first["times"]);
    assert_eq!(times.len(), 3, "{first}");
    assert_eq!(first["t"], 2, "{first}");
    assert_eq!(strings(&first["tileTimes"]), vec![times[1].clone(), times[2].clone()], "first tiles: {first}");
    assert_eq!(second["t"], 1, "{second}");
    assert!(second["label"].as_str().is_some_and(|l| l.starts_with(&times[1])), "{second}");
    assert_eq!(strings(&second["tileTimes"]), vec![times[0].clone()], "tiles after the step: {second}");

    // The pixel inspector plots a series per band from one point request.
    let i = &r["inspector"];
    assert!(i["error"].is_null(), "{i}");
    assert_eq!(strings(&i["bands"]), BANDS.map(String::from).to_vec(), "{i}");
    assert!(i["dots"].as_u64().unwrap_or(0) >= 4, "at least one value per band: {i}");
    let points = strings(&i["pointRequests"]);
    assert_eq!(points.len(), 1, "{i}");
    assert!(points[0].starts_with(&format!("{base}/cubes/e2e/point/")), "{points:?}");

    // The version selector pins the map to the tag, same time step, tiles under e2e@v1.
    let p = &r["pinned"];
    let options = strings(&p["options"]);
    assert!(options.contains(&"v1".to_string()) && options.contains(&"main".to_string()), "{p}");
    assert_eq!(p["t"], 1, "the pinned map keeps the time step: {p}");
    assert_eq!(strings(&p["tilePaths"]), vec!["/cubes/e2e@v1".to_string()], "{p}");

    // The pictures: not blank, different after the time step, the same at the tag (one build).
    let (t2, t1, pinned) = (
        first["screenshot"].as_str().expect("shot"),
        second["screenshot"].as_str().expect("shot"),
        p["screenshot"].as_str().expect("shot"),
    );
    let inspector = i["screenshot"].as_str().expect("shot");
    let (stats, diffs) = pictures(&[t2, t1, pinned, inspector], &[(t2, t1), (t1, pinned)]);
    println!("screenshots (colours, commonest share): {stats:?}; differing pixels t2/t1, t1/v1: {diffs:?}");
    for ((colours, commonest), shot) in stats.iter().zip([t2, t1, pinned, inspector]) {
        assert!(*colours >= 50, "{shot}: {colours} colours, nearly blank");
        assert!(*commonest < 0.8, "{shot} is {:.1} % one colour", 100.0 * commonest);
    }
    assert!(diffs[0] > 0.05, "the picture barely changed with the time step: {:.2} % of pixels", 100.0 * diffs[0]);
    // The pinned page restores the view from the URL hash, which MapLibre rounds (zoom to 2
    // decimals): a sub-pixel shift moves a few % of edge pixels, a different picture would be ~65 %.
    assert!(diffs[1] < 0.05, "the tag's picture differs from the branch's: {:.2} % of pixels", 100.0 * diffs[1]);
}
