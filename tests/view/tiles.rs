//! `eocube serve` end to end (issue 11, parts 2 and 5; `crates/eocube/src/serve/`): the real
//! binary on a free port, serving cubes built by the real CLI from the e2e archive (`--items`,
//! no STAC server), spoken to over raw HTTP (so that paths reach it exactly as written).
//!
//! - Tiles against an independent reference: GDAL (rasterio `reproject`, nearest) of the cube's
//!   bands onto each tile's Web Mercator bounds, then the same stretch in numpy: >= 99 % of the
//!   opaque pixels within 2 levels, transparency where the cube is fill, at zooms that read level
//!   0, and at zooms that read overview levels 1 and 2 of a cube built with `--overviews`.
//! - The point endpoint against xarray's decoded values, fill as null.
//! - Safety: path traversal, unknown cube, world-sized tiles past the pixel bound (413), huge z,
//!   malformed parameters: each a clear 4xx with a JSON message, and the server still answers.
//!   Token, CORS, the time bound.
//! - Icechunk versions: a snapshot URL is immutable (ETag = snapshot), a branch URL has a short
//!   TTL and follows the branch after it (`eocube extend` moves `main`), 304 on If-None-Match.
//! - TileJSON and the OGC API - Tiles documents against JSON Schemas (`tests/data/schemas/`,
//!   Python jsonschema); the WMTS capabilities opened and read by GDAL's WMTS driver.
//!
//! Needs `$EOCUBE_FIXTURES` (the e2e archive) and the venv: without them the tests fail.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common;

const BUILD_FLAGS: [&str; 5] = ["--resampling", "nearest", "--bands", "red,green,blue,nir", "--quiet"];

fn build(out: &str, extra: &[&str]) {
    let items = common::e2e_dir().join("items-local.json");
    let mut flags: Vec<&str> = BUILD_FLAGS.to_vec();
    flags.extend_from_slice(extra);
    common::eocube_build_ok(&common::e2e_items_build_args(Path::new(out), &items, &flags));
}

/// The e2e cube as plain Zarr v3, built once per test binary.
fn e2e_cube() -> &'static Path {
    static CUBE: OnceLock<PathBuf> = OnceLock::new();
    CUBE.get_or_init(|| {
        let cube = common::scratch_dir("tiles-cube").join("e2e.zarr");
        build(&cube.display().to_string(), &[]);
        cube
    })
}

/// One HTTP answer.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `eocube serve` on a free port; killed on drop (its stderr is shown if the test failed).
struct Served {
    child: Child,
    host: String,
    stdout: Vec<String>,
    stderr: PathBuf,
}

impl Served {
    fn start(cubes: &[String], flags: &[&str]) -> Served {
        let stderr = common::scratch_dir("tiles-serve").join(format!("stderr-{}.txt", unique()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_eocube"))
            .arg("serve")
            .args(cubes)
            .args(["--addr", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("starting eocube serve");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut lines = Vec::new();
        let t0 = Instant::now();
        // The banner, the catalog line and one line per cube.
        while lines.len() < 2 + cubes.len() {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.wait();
                panic!(
                    "eocube serve exited before it was ready: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            assert!(t0.elapsed() < Duration::from_secs(120), "eocube serve took too long to start");
            lines.push(line.trim_end().to_string());
        }
        println!("serve: {}", lines.join("\n  "));
        let host = lines[0]
            .split("http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("no URL in {:?}", lines[0]))
            .to_string();
        Served { child, host, stdout: lines, stderr }
    }

    fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[])
    }

    fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request("GET", path, headers)
    }

    /// One request on its own connection, the path sent byte for byte.
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut s = TcpStream::connect(&self.host).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(120))).ok();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.host);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).expect("send");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read answer");
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no header end in {raw:?}"));
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 =
            lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).expect("status");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
            .collect();
        let mut body = raw[end + 4..].to_vec();
        if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
            body = dechunk(&body);
        }
        Resp { status, headers, body }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("eocube serve stderr:\n{}", std::fs::read_to_string(&self.stderr).unwrap_or_default());
        }
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn e2e_arg() -> Vec<String> {
    vec![format!("e2e={}", e2e_cube().display())]
}

/// The WebMercatorQuad tile holding (lon, lat) at zoom z (as mercantile computes it).
fn tile_at(lon: f64, lat: f64, z: u32) -> (u32, u64, u64) {
    let n = (1u64 << z) as f64;
    let x = ((lon + 180.0) / 360.0 * n).floor() as u64;
    let lat_r = lat.to_radians();
    let y = ((1.0 - (lat_r.tan() + 1.0 / lat_r.cos()).ln() / std::f64::consts::PI) / 2.0 * n).floor() as u64;
    (z, x, y)
}

/// GDAL's reprojection of the cube onto the tile, styled like the server, compared with the
/// server's PNG: the fractions of agreeing opacity and of opaque pixels within 2 levels.
const REFERENCE: &str = r#"
import sys, json
import numpy as np, xarray as xr
from rasterio.warp import reproject, Resampling
from rasterio.transform import from_bounds, Affine
from PIL import Image
cube, png, z, x, y, t, spec = sys.argv[1:8]
z, x, y, t = int(z), int(x), int(y), int(t)
spec = json.loads(spec)
group = spec.get("group")
ds = xr.open_zarr(cube, group=group, mask_and_scale=False)
if group:
    # a pyramid level: one (time, y, x) array per band
    da = xr.concat([ds[b] for b in spec["bands"]], dim="band").assign_coords(band=spec["bands"]).isel(time=t)
else:
    da = ds[[v for v in ds.data_vars if "band" in ds[v].dims][0]].isel(time=t)
gt = [float(v) for v in ds["spatial_ref"].attrs["GeoTransform"].split()]
src_transform = Affine.from_gdal(*gt)
crs = ds["spatial_ref"].attrs["crs_wkt"]
O = np.pi * 6378137.0
span = 2 * O / 2 ** z
west, north = -O + x * span, O - y * span
dst_transform = from_bounds(west, north - span, west + span, north, 256, 256)
def warp(band):
    src = np.ascontiguousarray(da.sel(band=band).values.astype(np.uint16))
    dst = np.zeros((256, 256), np.uint16)
    reproject(src, dst, src_transform=src_transform, src_crs=crs, src_nodata=0, dst_transform=dst_transform,
              dst_crs="EPSG:3857", dst_nodata=0, resampling=Resampling.nearest)
    return dst
def stretch(v, lo, hi):
    return np.floor(np.clip((v - lo) / (hi - lo), 0, 1) * 255 + 0.5)
if "expression" in spec:
    red, nir = warp("red").astype(np.float64), warp("nir").astype(np.float64)
    ok = (red > 0) & (nir > 0)
    r, n = red * 1e-4 - 0.1, nir * 1e-4 - 0.1
    with np.errstate(divide="ignore", invalid="ignore"):
        v = (n - r) / (n + r)
    ok &= np.isfinite(v) & ((n + r) != 0)
    g = stretch(v, *spec["rescale"])
    ref = np.stack([g, g, g], axis=-1)
else:
    dns = [warp(b) for b in spec["bands"]]
    ok = np.logical_and.reduce([d > 0 for d in dns])
    chans = [stretch(d * 1e-4 - 0.1, lo, hi) for d, (lo, hi) in zip(dns, spec["rescale"])]
    if len(chans) == 1:
        chans = chans * 3
    ref = np.stack(chans, axis=-1)
ours = np.asarray(Image.open(png).convert("RGBA")).astype(np.float64)
opaque = ours[..., 3] == 255
both = ok & opaque
diff = np.abs(ours[..., :3] - ref).max(axis=-1)
print(json.dumps({
    "ref_opaque": int(ok.sum()), "ours_opaque": int(opaque.sum()),
    "transparent_ok": float(((~ok) == (~opaque))[~ok].mean()) if (~ok).any() else 1.0,
    "opacity_agree": float((ok == opaque).mean()),
    "within2": float((diff[both] <= 2).mean()) if both.any() else 0.0,
    "alpha_values": sorted(set(np.unique(ours[..., 3]).astype(int).tolist())),
}))
"#;

fn compare_tile(s: &Served, cube: &Path, tile: (u32, u64, u64), query: &str, spec: Value, t: usize) -> Value {
    compare_tile_of(s, "e2e", cube, tile, query, spec, t)
}

fn compare_tile_of(
    s: &Served,
    id: &str,
    cube: &Path,
    (z, x, y): (u32, u64, u64),
    query: &str,
    spec: Value,
    t: usize,
) -> Value {
    let path = format!("/cubes/{id}/tiles/WebMercatorQuad/{z}/{x}/{y}.png{query}");
    let r = s.get(&path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("image/png"));
    // One directory per reference: scratch_dir empties the directory it names, and tests run at once.
    let png = common::scratch_dir(&format!("tiles-ref-{}", unique())).join(format!("{z}-{x}-{y}.png"));
    std::fs::write(&png, &r.body).unwrap();
    let args = [
        cube.display().to_string(),
        png.display().to_string(),
        z.to_string(),
        x.to_string(),
        y.to_string(),
        t.to_string(),
        spec.to_string(),
    ];
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = common::run_python(REFERENCE, &argv, &format!("GDAL reference of {path}"));
    let v: Value = serde_json::from_str(out.trim().lines().last().unwrap_or("")).expect("python JSON");
    println!("{path}: {v}");
    v
}

#[test]
fn tiles_match_gdal_reprojection_at_level_0() {
    let cube = e2e_cube();
    let s = Served::start(&e2e_arg(), &[]);
    let centre = (-72.0, 44.03);
    let rgb = json!({"bands": ["red", "green", "blue"], "rescale": [[0.0, 0.3], [0.0, 0.3], [0.0, 0.3]]});
    let mut fill_seen = 0;
    // z 12 holds the whole cube in one tile (coarsening 0.9 px per tile pixel), z 13 about half
    // of it, z 15 magnifies it 4.5 times; the corner tile is mostly outside the cube.
    for (tile, query, spec, t) in [
        (tile_at(centre.0, centre.1, 12), String::new(), rgb.clone(), 2),
        (tile_at(centre.0, centre.1, 13), "?time=2023-05".to_string(), rgb.clone(), 0),
        (tile_at(-72.049, 44.059, 13), "?time=2023-06-10".to_string(), rgb.clone(), 1),
        (tile_at(centre.0, centre.1, 15), "?time=2023-06".to_string(), rgb.clone(), 1),
        (
            tile_at(centre.0, centre.1, 13),
            "?bands=nir,red,green&rescale=0,0.5&rescale=0,0.2&rescale=0,0.25".to_string(),
            json!({"bands": ["nir", "red", "green"], "rescale": [[0.0, 0.5], [0.0, 0.2], [0.0, 0.25]]}),
            2,
        ),
        (
            tile_at(centre.0, centre.1, 13),
            "?bands=nir&rescale=0.05,0.45".to_string(),
            json!({"bands": ["nir"], "rescale": [[0.05, 0.45]]}),
            2,
        ),
        (
            tile_at(centre.0, centre.1, 13),
            "?expression=(nir-red)/(nir%2Bred)&rescale=-0.2,0.9".to_string(),
            json!({"expression": "ndvi", "rescale": [-0.2, 0.9]}),
            2,
        ),
    ] {
        let v = compare_tile(&s, cube, tile, &query, spec, t);
        assert!(v["ref_opaque"].as_u64().unwrap() > 1000, "the tile shows the cube: {v}");
        assert!(v["within2"].as_f64().unwrap() >= 0.99, "{query}: {v}");
        assert!(v["opacity_agree"].as_f64().unwrap() >= 0.99, "{query}: {v}");
        assert!(v["transparent_ok"].as_f64().unwrap() >= 0.99, "transparent where the cube is fill: {v}");
        let alphas = v["alpha_values"].as_array().unwrap();
        assert!(alphas.iter().all(|a| a == 0 || a == 255), "only opaque or transparent: {v}");
        fill_seen += 256 * 256 - v["ref_opaque"].as_u64().unwrap();
    }
    assert!(fill_seen > 10_000, "the tiles covered fill and outside pixels too");
    // WebP (lossless) and JPEG (no alpha) of the same tile
    let (z, x, y) = tile_at(centre.0, centre.1, 13);
    let webp = s.get(&format!("/cubes/e2e/tiles/WebMercatorQuad/{z}/{x}/{y}.webp"));
    assert_eq!((webp.status, webp.header("content-type")), (200, Some("image/webp")));
    assert_eq!(&webp.body[8..16], b"WEBPVP8L");
    let jpg = s.get(&format!("/cubes/e2e/tiles/WebMercatorQuad/{z}/{x}/{y}.jpg"));
    assert_eq!((jpg.status, jpg.header("content-type")), (200, Some("image/jpeg")));
    assert_eq!(&jpg.body[..2], &[0xff, 0xd8]);
    // far from the cube: a transparent tile, not an error
    let (z, x, y) = tile_at(100.0, -30.0, 13);
    let off = s.get(&format!("/cubes/e2e/tiles/WebMercatorQuad/{z}/{x}/{y}.png"));
    assert_eq!(off.status, 200);
}

/// A cube with a pyramid: at 1/12345 degree (741 x 1236 px) it has three levels. At 44 degrees
/// north a z 12 tile pixel spans 2.47e-4 degrees of latitude, so z 12 reads level 1 (1.62e-4)
/// and z 11 level 2 (3.24e-4): the coarsest level still as fine as the tile. GDAL's reference
/// reprojects that level, opened by xarray from the pyramid group.
#[test]
fn tiles_at_overview_zooms_match_gdal_reprojection_of_the_level_read() {
    let cube = common::scratch_dir("tiles-pyramid").join("fine.zarr");
    build(&cube.display().to_string(), &["--resolution", "1/12345", "--chunk-size", "300", "--overviews"]);
    let s = Served::start(&[format!("fine={}", cube.display())], &[]);
    let summary = s.get("/cubes/fine").json();
    assert_eq!(summary["pyramid"], true, "{summary}");
    assert_eq!(summary["levels"].as_array().map(Vec::len), Some(3), "{summary}");
    let centre = (-72.0, 44.03);
    for (z, group) in [(12, "pyramid/1"), (11, "pyramid/2")] {
        let spec =
            json!({"bands": ["red", "green", "blue"], "rescale": [[0.0, 0.3], [0.0, 0.3], [0.0, 0.3]], "group": group});
        let v = compare_tile_of(&s, "fine", &cube, tile_at(centre.0, centre.1, z), "?time=2023-06", spec, 1);
        assert!(v["ref_opaque"].as_u64().unwrap() > 1000, "the tile shows the cube: {v}");
        assert!(v["within2"].as_f64().unwrap() >= 0.99, "z {z} reads {group}: {v}");
        assert!(v["opacity_agree"].as_f64().unwrap() >= 0.99, "z {z}: {v}");
        assert!(v["transparent_ok"].as_f64().unwrap() >= 0.99, "z {z}: {v}");
    }
    // With a pyramid the world tile reads the coarsest level: no 413.
    assert_eq!(s.get("/cubes/fine/tiles/WebMercatorQuad/0/0/0.png").status, 200);
}

#[test]
fn point_equals_xarray() {
    let cube = e2e_cube();
    let s = Served::start(&e2e_arg(), &[]);
    let r = 1.0 / 3600.0;
    let pixels: Vec<(i64, i64)> = vec![(0, 0), (100, 200), (215, 359), (50, 17), (120, 300), (7, 88)];
    let mut points = Vec::new();
    for &(row, col) in &pixels {
        let (lon, lat) = (-72.05 + (col as f64 + 0.5) * r, 44.06 - (row as f64 + 0.5) * r);
        let a = s.get(&format!("/cubes/e2e/point/{lon},{lat}"));
        assert_eq!(a.status, 200, "{}", a.text());
        let v = a.json();
        assert_eq!((v["row"].as_i64(), v["col"].as_i64()), (Some(row), Some(col)), "{v}");
        points.push(v);
    }
    let script = r#"
import sys, json
import numpy as np, xarray as xr
cube, points = sys.argv[1], json.loads(sys.argv[2])
ds = xr.open_zarr(cube)
da = ds[[v for v in ds.data_vars if "band" in ds[v].dims][0]]
bad, nulls, n = [], 0, 0
for p in points:
    px = da.isel(latitude=p["row"], longitude=p["col"]).values  # (time, band), NaN for fill
    labels = [str(t)[:7] for t in da["time"].values]
    assert [s["label"] for s in p["series"]] == labels, (p["series"], labels)
    for ti, s in enumerate(p["series"]):
        for bi, b in enumerate(p["bands"]):
            want, got = float(px[ti, bi]), s["values"][b]
            n += 1
            if np.isnan(want):
                nulls += 1
                if got is not None: bad.append((p["row"], p["col"], ti, b, want, got))
            elif got is None or abs(got - want) > 1e-6:
                bad.append((p["row"], p["col"], ti, b, want, got))
print(json.dumps({"bad": bad, "nulls": nulls, "n": n}))
"#;
    let out =
        common::run_python(script, &[&cube.display().to_string(), &Value::Array(points).to_string()], "xarray points");
    let v: Value = serde_json::from_str(out.trim().lines().last().unwrap_or("")).unwrap();
    println!("point vs xarray: {v}");
    assert_eq!(v["bad"], json!([]), "{v}");
    assert_eq!(v["n"], json!(pixels.len() * 3 * 4));
    // outside the cube, off the globe, malformed
    for (p, want) in [
        ("/cubes/e2e/point/10,10", 404),
        ("/cubes/e2e/point/200,10", 400),
        ("/cubes/e2e/point/abc", 400),
        ("/cubes/e2e/point/1,nan", 400),
    ] {
        let a = s.get(p);
        assert_eq!(a.status, want, "{p}: {}", a.text());
        assert!(a.json()["error"].as_str().is_some_and(|m| m.contains("point")), "{p}: {}", a.text());
    }
}

#[test]
fn bad_requests_are_clear_4xx_and_never_crash_the_server() {
    let _ = e2e_cube();
    // 50 000 pixels per tile (the e2e cube has 77 760): a tile holding the whole cube stands for
    // a world-sized request to a big cube without overviews.
    let s = Served::start(&e2e_arg(), &["--max-pixels", "50000"]);
    let (z, x, y) = tile_at(-72.0, 44.03, 13);
    let z8 = tile_at(-72.0, 44.03, 8);
    let ok = format!("/cubes/e2e/tiles/WebMercatorQuad/{z}/{x}/{y}.png");
    assert_eq!(s.get(&ok).status, 200);
    let cases: Vec<(String, u16, &str)> = vec![
        ("/cubes/..%2F..%2Fetc%2Fpasswd".into(), 404, "no cube"),
        ("/cubes/..%2F..%2Fetc/passwd".into(), 404, "no such page"),
        ("/cubes/../../etc/passwd".into(), 404, "no such page"),
        (
            format!("/cubes/..%2F..%2F{}/tiles/WebMercatorQuad/{z}/{x}/{y}.png", e2e_cube().display()),
            404,
            "no such page",
        ),
        (
            format!("/cubes/..%2F..%2F{}%2Fzarr.json", e2e_cube().display().to_string().replace('/', "%2F")),
            404,
            "no cube",
        ),
        ("/assets/..%2F..%2FCargo.toml".into(), 404, "no asset"),
        ("/assets/%2Fetc%2Fpasswd".into(), 404, "no asset"),
        ("/cubes/nope/tiles/WebMercatorQuad/0/0/0.png".into(), 404, "no cube \"nope\"; this server has e2e"),
        ("/cubes/e2e/tiles/WebMercatorQuad/0/0/0.png".into(), 413, "eocube overviews"),
        (format!("/cubes/e2e/tiles/WebMercatorQuad/{}/{}/{}.png", z8.0, z8.1, z8.2), 413, "zoom in"),
        ("/cubes/e2e/tiles/WebMercatorQuad/25/0/0.png".into(), 404, "zoom 25 is outside"),
        ("/cubes/e2e/tiles/WebMercatorQuad/4294967297/0/0.png".into(), 404, "outside"),
        ("/cubes/e2e/tiles/WebMercatorQuad/99999999999999999999/0/0.png".into(), 400, "z "),
        ("/cubes/e2e/tiles/WebMercatorQuad/3/8/0.png".into(), 404, "column 8"),
        ("/cubes/e2e/tiles/WebMercatorQuad/3/0/-1.png".into(), 400, "y "),
        (format!("/cubes/e2e/tiles/WebMercatorQuad/{z}/x/{y}.png"), 400, "x \"x\""),
        (format!("/cubes/e2e/tiles/WebMercatorQuad/{z}/{x}/{y}.gif"), 400, ".png, .webp or .jpg"),
        (format!("/cubes/e2e/tiles/WebMercatorQuad/{z}/{x}/{y}"), 400, "no format"),
        (format!("/cubes/e2e/tiles/EuropeanETRS89/{z}/{x}/{y}.png"), 404, "tile matrix set"),
        (format!("{ok}?bands=red,grn,blue"), 400, "bands="),
        (format!("{ok}?bands=red,green"), 400, "one band or three"),
        (format!("{ok}?rescale=abc"), 400, "rescale="),
        (format!("{ok}?rescale=0,1,0,1"), 400, "rescale="),
        (format!("{ok}?expression=(nir-red"), 400, "at character"),
        (format!("{ok}?expression={}", "(".repeat(300)), 400, "expression="),
        (format!("{ok}?bands=nir&colormap=jet"), 400, "colormap="),
        (format!("{ok}?colormap=viridis"), 400, "one band or an expression"),
        (format!("{ok}?time=2099-99"), 400, "time="),
        (format!("{ok}?time=%23999"), 400, "time="),
        (format!("/cubes/e2e@main/tiles/WebMercatorQuad/{z}/{x}/{y}.png"), 400, "plain Zarr"),
        (format!("/cubes/e2e@/tiles/WebMercatorQuad/{z}/{x}/{y}.png"), 400, "version"),
        ("/cubes/e2e/point/%FF,1".into(), 400, "malformed path"),
        ("/nothing/here".into(), 404, "no such page"),
    ];
    for (path, status, says) in &cases {
        let r = s.get(path);
        assert_eq!(r.status, *status, "{path}: {}", r.text());
        let msg = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains(says), "{path}: {msg:?} should say {says:?}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
    }
    let post = s.request("POST", &ok, &[("Content-Length", "0")]);
    assert_eq!(post.status, 405, "{}", post.text());
    assert!(post.json()["error"].as_str().unwrap().contains("read-only"));
    // never a panic: the server still answers everything
    assert_eq!(s.get("/cubes").status, 200);
    assert_eq!(s.get(&ok).status, 200);
    // CORS is off by default: no header, and preflights are refused
    assert_eq!(s.get("/cubes").header("access-control-allow-origin"), None);
    assert_eq!(s.request("OPTIONS", "/cubes", &[("Origin", "http://evil.test")]).status, 405);
    // the time bound: a server that allows 1 microsecond answers 503 with the reason
    let slow = Served::start(&e2e_arg(), &["--timeout", "0.000001"]);
    let r = slow.get(&ok);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("took longer than"));
}

#[test]
fn token_cors_and_the_printed_urls() {
    let _ = e2e_cube();
    let s = Served::start(&e2e_arg(), &["--token", "s3cret-T0ken", "--cors", "http://localhost:3000"]);
    assert!(s.stdout[1].ends_with("/?token=s3cret-T0ken"), "{:?}", s.stdout);
    assert!(s.stdout[2].contains("/cubes/e2e/map?token=s3cret-T0ken"), "{:?}", s.stdout);
    let r = s.get("/cubes");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert!(r.json()["error"].as_str().unwrap().contains("Authorization: Bearer"));
    assert_eq!(s.get("/cubes?token=wrong").status, 401);
    assert_eq!(s.get_with("/cubes", &[("Authorization", "Bearer wrong")]).status, 401);
    let r = s.get_with("/cubes", &[("Authorization", "Bearer s3cret-T0ken")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("http://localhost:3000"));
    let r = s.get("/cubes/e2e/tiles/WebMercatorQuad/tilejson.json?token=s3cret-T0ken&bands=nir");
    assert_eq!(r.status, 200);
    // with a token the tile URLs carry it (a map client cannot add headers to every request)
    let tiles = r.json()["tiles"][0].as_str().unwrap().to_string();
    assert!(tiles.contains("token=s3cret-T0ken") && tiles.contains("bands=nir"), "{tiles}");
    let pre = s.request(
        "OPTIONS",
        "/cubes",
        &[("Origin", "http://localhost:3000"), ("Access-Control-Request-Method", "GET")],
    );
    assert_eq!(pre.status, 204);
    assert!(pre.header("access-control-allow-headers").unwrap().contains("Authorization"));
    // the assets are the same for everyone and need no token
    let a = s.get("/assets/style.css");
    assert_eq!(a.status, 200, "{}", a.text());
    // defaults of the CLI: loopback, port 8080, no CORS
    let help = Command::new(env!("CARGO_BIN_EXE_eocube")).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("[default: 127.0.0.1:8080]"), "{help}");
    let bad = Command::new(env!("CARGO_BIN_EXE_eocube"))
        .args(["serve", "x=/nonexistent/cube.zarr", "--addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("cube x (/nonexistent/cube.zarr)"), "{err}");
}

/// jsonschema over each document, `$ref`s between the schema files resolved by name.
const VALIDATE: &str = r#"
import sys, json, pathlib
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
schemas = pathlib.Path(sys.argv[1])
registry = Registry().with_resources(
    [(p.name, Resource.from_contents(json.loads(p.read_text()))) for p in schemas.glob("*.json")])
errors = {}
for pair in sys.argv[2:]:
    schema, doc = pair.split("=", 1)
    v = Draft202012Validator(json.loads((schemas / schema).read_text()), registry=registry,
                             format_checker=Draft202012Validator.FORMAT_CHECKER)
    errs = [f"{list(e.absolute_path)}: {e.message}" for e in v.iter_errors(json.loads(pathlib.Path(doc).read_text()))]
    errors[pathlib.Path(doc).name] = errs
print(json.dumps(errors))
"#;

#[test]
fn documents_validate_against_their_schemas_and_gdal_reads_the_wmts() {
    let _ = e2e_cube();
    let s = Served::start(&e2e_arg(), &[]);
    let dir = common::scratch_dir("tiles-docs");
    let docs = [
        ("tilejson-3.0.0.json", "/cubes/e2e/tiles/WebMercatorQuad/tilejson.json?bands=nir&colormap=viridis"),
        ("ogc-tileset.json", "/cubes/e2e/tiles/WebMercatorQuad"),
        ("ogc-tilesets-list.json", "/cubes/e2e/tiles"),
        ("ogc-tilematrixset.json", "/tileMatrixSets/WebMercatorQuad"),
        ("ogc-conformance.json", "/conformance"),
        ("ogc-landing.json", "/?f=json"),
    ];
    let mut pairs = Vec::new();
    for (i, (schema, path)) in docs.iter().enumerate() {
        let r = s.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        let file = dir.join(format!("doc{i}.json"));
        std::fs::write(&file, &r.body).unwrap();
        pairs.push(format!("{schema}={}", file.display()));
    }
    let schemas = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/schemas");
    let mut argv = vec![schemas.display().to_string()];
    argv.extend(pairs);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = common::run_python(VALIDATE, &argv, "jsonschema validation");
    let errors: Value = serde_json::from_str(out.trim().lines().last().unwrap_or("")).unwrap();
    println!("schema errors: {errors}");
    for (doc, errs) in errors.as_object().unwrap() {
        assert_eq!(errs, &json!([]), "{doc}");
    }
    // the documents agree with each other and with the cube
    let tj = s.get("/cubes/e2e/tiles/WebMercatorQuad/tilejson.json?bands=nir&colormap=viridis").json();
    let summary = s.get("/cubes/e2e").json();
    assert_eq!(tj["minzoom"], summary["minzoom"]);
    assert_eq!(tj["maxzoom"], summary["maxzoom"]);
    let host = &s.host;
    assert_eq!(
        tj["tiles"][0],
        format!("http://{host}/cubes/e2e/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png?bands=nir&colormap=viridis")
    );
    assert_eq!(summary["bands"], json!(["red", "green", "blue", "nir"]));
    assert_eq!(summary["crs"], "EPSG:4326");
    assert_eq!(summary["versions"], Value::Null);
    assert_eq!(summary["pyramid"], false);
    assert_eq!(summary["levels"][0]["shape"], json!([216, 360]));
    let times: Vec<&str> = summary["times"].as_array().unwrap().iter().map(|t| t["label"].as_str().unwrap()).collect();
    assert_eq!(times, ["2023-05", "2023-06", "2023-07"]);
    let b: Vec<f64> = summary["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!((b[0] + 72.05).abs() < 1e-9 && (b[3] - 44.06).abs() < 1e-9, "{b:?}");
    let thumb = s.get("/cubes/e2e/thumbnail.png");
    assert_eq!((thumb.status, thumb.header("content-type")), (200, Some("image/png")));
    let wmts = s.get("/cubes/e2e/WMTSCapabilities.xml");
    assert_eq!(wmts.status, 200);
    assert!(wmts.text().contains("<ows:Identifier>e2e</ows:Identifier>"));
    // GDAL's WMTS driver (what QGIS uses) opens the capabilities and reads tiles through them
    let script = r#"
import sys, json
import numpy as np, rasterio
from rasterio.windows import from_bounds
url = sys.argv[1]
with rasterio.open(f"WMTS:{url},layer=e2e") as ds:
    x0, y0 = -72.03 * 111319.49079327357, 44.02
    import math
    def merc(lon, lat):
        return lon * math.pi / 180 * 6378137.0, math.log(math.tan(math.pi / 4 + lat * math.pi / 360)) * 6378137.0
    (xa, ya), (xb, yb) = merc(-72.03, 44.02), merc(-71.97, 44.04)
    w = from_bounds(xa, ya, xb, yb, ds.transform)
    a = ds.read(window=w, out_shape=(ds.count, 64, 64))
    print(json.dumps({"crs": str(ds.crs), "count": ds.count, "bounds": list(ds.bounds),
                      "opaque": float((a[-1] == 255).mean()), "mean": float(a[:3].mean())}))
"#;
    let url = format!("http://{host}/cubes/e2e/WMTSCapabilities.xml");
    let out = common::run_python(script, &[&url], "GDAL WMTS read");
    let v: Value = serde_json::from_str(out.trim().lines().last().unwrap_or("")).unwrap();
    println!("GDAL WMTS: {v}");
    assert_eq!(v["crs"], "EPSG:3857");
    assert_eq!(v["count"], 4, "RGBA");
    assert!(v["opaque"].as_f64().unwrap() > 0.5, "{v}");
    assert!(v["mean"].as_f64().unwrap() > 5.0, "{v}");
}

#[test]
fn icechunk_versions_pin_tiles() {
    let dir = common::scratch_dir("tiles-icechunk");
    let repo = format!("icechunk://{}", dir.join("repo").display());
    build(&repo, &["--tag", "v1"]);
    let s = Served::start(&[format!("ic={repo}")], &["--branch-ttl", "1"]);
    let detail = s.get("/cubes/ic").json();
    assert_eq!(detail["icechunk"], true);
    let versions = &detail["versions"];
    let main = versions["branches"].as_array().unwrap().iter().find(|b| b["name"] == "main").expect("main");
    let s1 = main["snapshot"].as_str().unwrap().to_string();
    assert_eq!(versions["tags"][0], json!({"name": "v1", "snapshot": s1}));
    assert!(versions["snapshots"].as_array().unwrap().iter().any(|v| v["id"] == s1.as_str()));
    let (z, x, y) = tile_at(-72.0, 44.03, 13);
    let tile = |v: &str| format!("/cubes/ic{v}/tiles/WebMercatorQuad/{z}/{x}/{y}.png");
    let etag1 = format!("\"{s1}\"");
    let pinned = s.get(&tile(&format!("@{s1}")));
    assert_eq!(pinned.status, 200, "{}", pinned.text());
    assert_eq!(pinned.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(pinned.header("etag"), Some(etag1.as_str()));
    for v in ["", "@main", "@v1"] {
        let r = s.get(&tile(v));
        assert_eq!(r.status, 200, "{v}: {}", r.text());
        assert_eq!(r.header("cache-control"), Some("public, max-age=1"), "{v}");
        assert_eq!(r.header("etag"), Some(etag1.as_str()), "{v}");
        assert_eq!(r.body, pinned.body, "{v}: the same snapshot draws the same tile");
    }
    let r = s.get_with(&tile("@main"), &[("If-None-Match", &etag1)]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = s.get(&tile("@nope"));
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("no snapshot, tag or branch \"nope\""), "{}", r.text());
    // a new version on main: the branch URL follows it after the TTL, the snapshot URL stays
    let out =
        common::run_eocube(&["extend".into(), repo.clone(), "--end".into(), "2023-08-31".into(), "--quiet".into()]);
    common::assert_ok(&out, &["extend".into(), repo.clone()]);
    std::thread::sleep(Duration::from_millis(1500));
    let moved = s.get(&tile("@main"));
    let etag2 = moved.header("etag").unwrap().to_string();
    assert_ne!(etag2, etag1, "main moved");
    assert_eq!(s.get(&tile("")).header("etag"), Some(etag2.as_str()));
    assert_eq!(s.get("/cubes/ic").json()["times"].as_array().unwrap().len(), 4);
    assert_eq!(s.get(&format!("/cubes/ic@{s1}")).json()["times"].as_array().unwrap().len(), 3);
    let again = s.get(&tile(&format!("@{s1}")));
    assert_eq!(again.header("etag"), Some(etag1.as_str()));
    assert_eq!(again.body, pinned.body);
    assert_eq!(s.get(&tile("@v1")).header("etag"), Some(etag1.as_str()), "the tag stays");
}
