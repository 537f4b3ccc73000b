//! The in-process archive server (`eocube_synth::server`) against eocube's own clients: the
//! STAC client (`catalog::Catalog::api`, GET and POST, paging) and the COG reader over HTTP
//! (`cog::Fetcher`), plus raw HTTP for the edge cases a client library would hide (ranges, 416,
//! HEAD, path escapes, malformed requests).
//!
//! Only the COG test needs the GDAL fixtures (`$EOCUBE_FIXTURES`, see `scripts/test.sh`); the
//! others build their archive in a temporary directory.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use eocube::catalog::{ApiClient, ApiOptions, Catalog, ItemCollection, SearchMethod, SearchRequest};
use eocube::cog::{FetchConfig, Fetcher};
use eocube::grid::PixelWindow;
use eocube::{Bbox, GeoBox};
use eocube_synth::server::ArchiveServer;
use serde_json::{Value, json};

const COLLECTION: &str = "sentinel-2-c1-l2a";

/// A fresh directory under the target dir (removed at the start of the next run).
fn temp_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// An item with footprint `ring` (lon/lat), a red asset at `{COLLECTION}/{id}/red.tif`.
fn item(id: &str, datetime: &str, cloud: f64, ring: &[(f64, f64)]) -> Value {
    let coords: Vec<[f64; 2]> = ring.iter().map(|&(x, y)| [x, y]).collect();
    let xs = ring.iter().map(|p| p.0);
    let ys = ring.iter().map(|p| p.1);
    let bbox = [
        xs.clone().fold(f64::MAX, f64::min),
        ys.clone().fold(f64::MAX, f64::min),
        xs.fold(f64::MIN, f64::max),
        ys.fold(f64::MIN, f64::max),
    ];
    json!({
        "type": "Feature", "stac_version": "1.0.0", "id": id, "collection": COLLECTION,
        "bbox": bbox,
        "geometry": {"type": "Polygon", "coordinates": [coords]},
        "properties": {"datetime": datetime, "eo:cloud_cover": cloud, "proj:epsg": 32618},
        "assets": {"red": {"href": format!("{COLLECTION}/{id}/red.tif"), "type": "image/tiff"}},
        "links": [],
    })
}

fn square(w: f64, s: f64, size: f64) -> Vec<(f64, f64)> {
    vec![(w, s), (w + size, s), (w + size, s + size), (w, s + size), (w, s)]
}

/// Five scenes; `tri` is a triangle covering the lower-right half of (10..12, 0..2), whose bbox
/// meets regions that its footprint does not.
fn five_items() -> Vec<Value> {
    vec![
        item("e", "2024-03-05T10:00:00Z", 80.0, &square(0.0, 0.0, 1.0)),
        item("a", "2024-03-01T10:00:00Z", 10.0, &square(0.0, 0.0, 1.0)),
        item("b", "2024-03-02T10:00:00Z", 50.0, &square(0.5, 0.5, 1.0)),
        item("d", "2024-03-02T10:00:00Z", 5.0, &square(5.0, 5.0, 1.0)),
        item("tri", "2024-03-03T10:00:00Z", 20.0, &[(10.0, 0.0), (12.0, 0.0), (12.0, 2.0), (10.0, 0.0)]),
    ]
}

async fn start_five(dir: &Path) -> ArchiveServer {
    ArchiveServer::start(dir.to_path_buf(), five_items(), vec![]).await.unwrap()
}

fn ids(scenes: &[eocube::catalog::Scene]) -> Vec<&str> {
    scenes.iter().map(|s| s.id.as_str()).collect()
}

fn request() -> SearchRequest {
    SearchRequest::new(&[COLLECTION], t("2024-01-01T00:00:00Z"), t("2024-12-31T23:59:59Z"))
}

fn client(url: &str, method: SearchMethod) -> Catalog {
    Catalog::Api(ApiClient::new(url, ApiOptions { method, ..ApiOptions::default() }).unwrap())
}

#[tokio::test]
async fn catalog_client_searches_get_and_post_with_paging() {
    let dir = temp_dir("search");
    let server = start_five(&dir).await;
    let bands = vec!["red".to_string()];
    for method in [SearchMethod::Post, SearchMethod::Get] {
        let cat = client(&server.url(), method);
        let mut req = request();
        req.limit = 2; // 5 items: three pages
        let all = cat.search(&req, &bands).await.unwrap();
        assert_eq!(ids(&all), ["a", "b", "d", "tri", "e"], "{method:?}: sorted by (datetime, id)");
        assert_eq!(
            all[0].asset("red").unwrap().href,
            format!("{}/files/{COLLECTION}/a/red.tif", server.url()),
            "hrefs rewritten to the server"
        );

        let mut r = req.clone();
        r.bbox = Some(Bbox::new_lonlat(0.9, 0.9, 1.2, 1.2).unwrap());
        assert_eq!(ids(&cat.search(&r, &bands).await.unwrap()), ["a", "b", "e"], "{method:?} bbox");

        // inside the triangle's bbox but outside the triangle: a real polygon test drops it
        let mut r = req.clone();
        r.intersects = Some(
            json!({"type": "Polygon", "coordinates": [[[10.1, 1.5], [10.5, 1.5], [10.5, 1.9], [10.1, 1.9], [10.1, 1.5]]]}),
        );
        assert!(cat.search(&r, &bands).await.unwrap().is_empty(), "{method:?} intersects outside");
        r.intersects = Some(json!({"type": "MultiPolygon", "coordinates": [
            [[[11.5, 0.2], [11.9, 0.2], [11.9, 0.6], [11.5, 0.6], [11.5, 0.2]]],
            [[[5.5, 5.5], [7.0, 5.5], [7.0, 7.0], [5.5, 7.0], [5.5, 5.5]]]]}));
        assert_eq!(ids(&cat.search(&r, &bands).await.unwrap()), ["d", "tri"], "{method:?} intersects");

        let mut r = req.clone();
        r.datetime = (t("2024-03-02T10:00:00Z"), t("2024-03-03T10:00:00Z"));
        assert_eq!(ids(&cat.search(&r, &bands).await.unwrap()), ["b", "d", "tri"], "{method:?} closed interval");

        let mut r = req.clone();
        r.max_cloud_cover = Some(20.0);
        assert_eq!(ids(&cat.search(&r, &bands).await.unwrap()), ["a", "d", "tri"], "{method:?} cloud cover");
        r.filter = Some(json!({"op": ">", "args": [{"property": "eo:cloud_cover"}, 5]}));
        assert_eq!(ids(&cat.search(&r, &bands).await.unwrap()), ["a", "tri"], "{method:?} filter and cloud cover");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn pages_link_to_the_next_by_get_token_and_post_body() {
    let dir = temp_dir("pages");
    let server = start_five(&dir).await;
    let http = reqwest::Client::new();
    let url = server.url();

    let page: Value = http.get(format!("{url}/search?limit=2")).send().await.unwrap().json_value().await;
    assert_eq!(page["numberReturned"], 2);
    assert_eq!(page["numberMatched"], 5);
    let next = page["links"].as_array().unwrap().iter().find(|l| l["rel"] == "next").unwrap();
    assert_eq!(next["method"], "GET");
    let href = next["href"].as_str().unwrap();
    assert!(href.contains("token=") && href.contains("limit=2"), "{href}");
    let p2: Value = http.get(href).send().await.unwrap().json_value().await;
    let got: Vec<&str> = p2["features"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(got, ["d", "tri"]);

    let body = json!({"collections": [COLLECTION], "limit": 4});
    let page: Value = http.post(format!("{url}/search")).json_body(&body).send().await.unwrap().json_value().await;
    let next = page["links"].as_array().unwrap().iter().find(|l| l["rel"] == "next").unwrap();
    assert_eq!((&next["method"], &next["merge"]), (&json!("POST"), &json!(true)));
    let mut merged = body.clone();
    merged["token"] = next["body"]["token"].clone();
    let last: Value = http.post(format!("{url}/search")).json_body(&merged).send().await.unwrap().json_value().await;
    assert_eq!(last["features"].as_array().unwrap().len(), 1);
    assert!(!last["links"].as_array().unwrap().iter().any(|l| l["rel"] == "next"), "last page has no next");

    // ids, open intervals and the OGC items endpoint
    let q = format!("{url}/search?ids=e,a&datetime=2024-03-02T00:00:00Z/..");
    let p: Value = http.get(q).send().await.unwrap().json_value().await;
    assert_eq!(p["features"][0]["id"], "e");
    assert_eq!(p["numberMatched"], 1);
    let q = format!("{url}/collections/{COLLECTION}/items?limit=1&datetime=../2024-03-01T10:00:00Z");
    let p: Value = http.get(q).send().await.unwrap().json_value().await;
    assert_eq!(p["features"][0]["id"], "a");
    let one: Value =
        http.get(format!("{url}/collections/{COLLECTION}/items/tri")).send().await.unwrap().json_value().await;
    assert_eq!(one["id"], "tri");
}

#[tokio::test]
async fn landing_conformance_collections_and_errors() {
    let dir = temp_dir("api");
    let server = start_five(&dir).await;
    let http = reqwest::Client::new();
    let url = server.url();
    let get = |p: &str| http.get(format!("{url}{p}")).send();

    let landing: Value = get("/").await.unwrap().json_value().await;
    let rels: Vec<&str> = landing["links"].as_array().unwrap().iter().map(|l| l["rel"].as_str().unwrap()).collect();
    for rel in ["self", "search", "data", "conformance", "root"] {
        assert!(rels.contains(&rel), "{rel} in {rels:?}");
    }
    let conf = landing["conformsTo"].as_array().unwrap();
    assert!(conf.contains(&json!("https://api.stacspec.org/v1.0.0/item-search")));
    let c: Value = get("/conformance").await.unwrap().json_value().await;
    assert_eq!(&c["conformsTo"], &landing["conformsTo"]);
    let cs: Value = get("/collections").await.unwrap().json_value().await;
    assert_eq!(cs["collections"][0]["id"], COLLECTION);
    let one: Value = get(&format!("/collections/{COLLECTION}")).await.unwrap().json_value().await;
    assert_eq!(one["extent"]["temporal"]["interval"][0][0], "2024-03-01T10:00:00Z");

    let expect = |status: u16, v: Value, what: &str| {
        assert!(v["code"].is_string() && v["description"].is_string(), "{what}: {v}");
        status
    };
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (http.get(format!("{url}/collections/nope")), 404, "unknown collection"),
        (http.get(format!("{url}/collections/nope/items")), 404, "items of an unknown collection"),
        (http.get(format!("{url}/search?collections=nope")), 404, "search of an unknown collection"),
        (http.get(format!("{url}/search?limit=0")), 400, "limit 0"),
        (http.get(format!("{url}/search?bbox=1,2")), 400, "short bbox"),
        (http.get(format!("{url}/search?datetime=yesterday")), 400, "bad datetime"),
        (http.get(format!("{url}/search?token=zzz")), 400, "bad token"),
        (http.post(format!("{url}/search")).body("{not json"), 400, "bad JSON"),
        (
            http.post(format!("{url}/search"))
                .json_body(&json!({"filter": {"op": "like", "args": [{"property": "id"}, "a%"]}})),
            400,
            "unsupported filter",
        ),
        (
            http.post(format!("{url}/search"))
                .json_body(&json!({"filter": {"op": "<", "args": [1, 2]}, "filter-lang": "cql2-text"})),
            400,
            "cql2-text",
        ),
        (
            http.post(format!("{url}/search"))
                .json_body(&json!({"intersects": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}})),
            400,
            "line",
        ),
        (http.get(format!("{url}/nowhere")), 404, "unknown path"),
        (http.delete(format!("{url}/search")), 405, "DELETE"),
        (http.post(format!("{url}/collections")), 405, "POST collections"),
    ];
    for (rb, status, what) in cases {
        let res = rb.send().await.unwrap();
        let got = res.status().as_u16();
        let body: Value = res.json_value().await;
        assert_eq!(expect(got, body, what), status, "{what}");
    }
}

/// Parity with the catalog's own offline filter on the 14 real Sentinel-2 items of
/// crates/eocube/tests/data/stac: two independent implementations of one search must agree.
#[tokio::test]
async fn agrees_with_the_local_item_filter_on_real_items() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/eocube/tests/data/stac");
    let mut items = Vec::new();
    for e in std::fs::read_dir(&data).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !(name.starts_with("sentinel-2-") && name.ends_with(".json")) {
            continue;
        }
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        match d["type"].as_str() {
            Some("FeatureCollection") => items.extend(d["features"].as_array().unwrap().iter().cloned()),
            Some("Feature") => items.push(d),
            _ => {}
        }
    }
    assert_eq!(items.len(), 14);
    let collections: Vec<String> = items
        .iter()
        .map(|i| i["collection"].as_str().unwrap().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let dir = temp_dir("parity");
    let server = ArchiveServer::start(dir, items.clone(), vec![]).await.unwrap();
    let local = Catalog::File(ItemCollection::from_json(Path::new("items.json"), Value::Array(items)).unwrap());
    let remote = client(&server.url(), SearchMethod::Auto);
    let bands = vec!["red".to_string()];
    let cs: Vec<&str> = collections.iter().map(String::as_str).collect();
    let base = || {
        let mut r = SearchRequest::new(&cs, t("2020-01-01T00:00:00Z"), t("2026-01-01T00:00:00Z"));
        r.limit = 3;
        r
    };
    let mut reqs = vec![base()];
    let mut r = base();
    r.bbox = Some(Bbox::new_lonlat(-106.0, 40.0, -105.0, 41.0).unwrap());
    reqs.push(r);
    let mut r = base();
    r.intersects = Some(json!({"type": "MultiPolygon", "coordinates": [
        [[[-59.6, -60.48], [-59.4, -60.48], [-59.4, -60.42], [-59.6, -60.42], [-59.6, -60.48]]],
        [[[-106.0, 40.0], [-105.8, 40.0], [-105.9, 40.2], [-106.0, 40.0]]],
    ]}));
    reqs.push(r);
    let mut r = base();
    r.max_cloud_cover = Some(40.0);
    r.datetime = (t("2024-04-01T00:00:00Z"), t("2024-04-30T23:59:59Z"));
    reqs.push(r);
    let mut counts = Vec::new();
    for req in reqs {
        let a = local.search(&req, &bands).await.unwrap();
        let b = remote.search(&req, &bands).await.unwrap();
        assert_eq!(ids(&a), ids(&b), "{req:?}");
        counts.push(a.len());
    }
    // every request selects something, and not everything
    eprintln!("parity counts: {counts:?}");
    assert!(counts[0] == 14 && counts[1..].iter().all(|&n| n > 0 && n < 14), "{counts:?}");
}

/// The acceptance test: eocube's COG reader through the server gives the pixels of the file.
#[tokio::test]
async fn cog_fetcher_reads_the_same_pixels_over_http() {
    let name = "scene_18n_60m";
    let src = common::fixture(&format!("cogs/{name}.tif"));
    let dir = temp_dir("cog");
    let rel = format!("{COLLECTION}/S2X/red.tif");
    std::fs::create_dir_all(dir.join(format!("{COLLECTION}/S2X"))).unwrap();
    std::fs::copy(&src, dir.join(&rel)).unwrap();
    let server = ArchiveServer::start(
        dir.clone(),
        vec![item("S2X", "2024-03-01T10:00:00Z", 1.0, &square(0.0, 0.0, 1.0))],
        vec![],
    )
    .await
    .unwrap();
    let scenes = Catalog::api(&server.url()).unwrap().search(&request(), &["red".to_string()]).await.unwrap();
    let href = scenes[0].asset("red").unwrap().href.clone();
    assert!(href.starts_with("http://127.0.0.1:"), "{href}");

    let fetcher = Fetcher::new(FetchConfig { max_retries: 0, ..FetchConfig::default() });
    let remote = fetcher.open(&href).await.unwrap();
    let local = fetcher.open(src.to_str().unwrap()).await.unwrap();
    assert_eq!(remote.file_size(), std::fs::metadata(&src).unwrap().len());
    assert_eq!(remote.levels().len(), local.levels().len());
    for level in 0..local.levels().len() {
        let gb: GeoBox = local.geobox(level).unwrap();
        let (h, w) = (gb.shape.ny, gb.shape.nx);
        for win in [
            PixelWindow { row: 0, col: 0, height: h, width: w },
            PixelWindow { row: h as i64 / 3, col: w as i64 / 4, height: h / 2, width: w / 3 + 1 },
        ] {
            let a = local.read_window(level, win).await.unwrap();
            let b = remote.read_window(level, win).await.unwrap();
            assert!(a == b, "level {level} {win:?}: pixels differ");
        }
    }
    assert!(remote.stats().requests >= 1);
    server.shutdown().await;
}

#[tokio::test]
async fn files_answer_ranges_head_and_refuse_escapes() {
    let dir = temp_dir("files");
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("a")).unwrap();
    // bigger than one streamed chunk, so the 200 goes through the streaming path
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.join("a/big.bin"), &data).unwrap();
    std::fs::write(root.join("a/empty.bin"), b"").unwrap();
    std::fs::write(dir.join("secret.txt"), b"secret").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.join("secret.txt"), root.join("link.txt")).unwrap();
    let server = ArchiveServer::start(root.clone(), vec![], vec![]).await.unwrap();
    let url = format!("{}/files/a/big.bin", server.url());
    let http = reqwest::Client::new();
    let range = |r: &str| http.get(&url).header("Range", r.to_string()).send();
    let h = |res: &reqwest::Response, k: &str| res.headers().get(k).map(|v| v.to_str().unwrap().to_string());

    let res = range("bytes=10-19").await.unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(h(&res, "content-range").as_deref(), Some("bytes 10-19/3000000"));
    assert_eq!(h(&res, "content-length").as_deref(), Some("10"));
    assert_eq!(res.bytes().await.unwrap(), &data[10..20]);
    let res = range("bytes=-100").await.unwrap();
    assert_eq!(h(&res, "content-range").as_deref(), Some("bytes 2999900-2999999/3000000"));
    assert_eq!(res.bytes().await.unwrap(), &data[2_999_900..]);
    let res = range("bytes=2000000-").await.unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap(), &data[2_000_000..], "an open range over several chunks");
    let res = range("bytes=3000000-").await.unwrap();
    assert_eq!(res.status(), 416);
    assert_eq!(h(&res, "content-range").as_deref(), Some("bytes */3000000"));
    let res = range("bytes=0-1,5-6").await.unwrap();
    assert_eq!(res.status(), 200, "several ranges: the whole file");

    let res = http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(h(&res, "accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(h(&res, "content-length").as_deref(), Some("3000000"));
    let etag = h(&res, "etag").unwrap();
    assert!(h(&res, "last-modified").unwrap().ends_with(" GMT"));
    assert!(res.bytes().await.unwrap() == data, "whole file");

    let res = http.head(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(h(&res, "content-length").as_deref(), Some("3000000"));
    assert!(res.bytes().await.unwrap().is_empty());
    let res = http.get(&url).header("If-None-Match", etag.clone()).send().await.unwrap();
    assert_eq!(res.status(), 304);
    let res = http.get(&url).header("Range", "bytes=0-0").header("If-Range", "\"other\"").send().await.unwrap();
    assert_eq!(res.status(), 200, "If-Range with another validator: whole file");
    let res = http.get(format!("{}/files/a/empty.bin", server.url())).header("Range", "bytes=0-").send().await.unwrap();
    assert_eq!(res.status(), 416);
    let res = http.get(format!("{}/files/a/missing.bin", server.url())).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res = http.get(format!("{}/files/a", server.url())).send().await.unwrap();
    assert_eq!(res.status(), 404, "a directory");
    #[cfg(unix)]
    {
        let res = http.get(format!("{}/files/link.txt", server.url())).send().await.unwrap();
        assert_eq!(res.status(), 403, "a symlink out of the root");
    }

    // raw requests: clients normalise `..` away, a hostile one does not
    let addr = server.local_addr();
    for path in ["/files/../secret.txt", "/files/a/../../secret.txt", "/files/%2e%2e/secret.txt", "/files//etc/passwd"]
    {
        let answer = raw(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
        assert!(!answer.contains("secret\r\n") && !answer.ends_with("secret"), "{path}: {answer}");
    }
    let answer = raw(addr, "GARBAGE\r\n\r\n").await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer}");
    let answer =
        raw(addr, "GET /files/a/big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=5-5\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 206"), "the server survives malformed requests: {answer}");

    // shutdown stops listening
    server.shutdown().await;
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

#[tokio::test]
async fn drop_stops_the_server_and_bad_inputs_are_errors() {
    let dir = temp_dir("drop");
    let server = start_five(&dir).await;
    let addr = server.local_addr();
    drop(server);
    let mut closed = false;
    for _ in 0..50 {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed, "still listening on {addr} after drop");

    let missing = ArchiveServer::start(dir.join("nope"), vec![], vec![]).await;
    assert!(matches!(missing, Err(eocube_synth::server::ServeError::Root { .. })));
    let bad = ArchiveServer::start(dir.clone(), vec![json!({"id": "x"})], vec![]).await;
    assert!(matches!(bad, Err(eocube_synth::server::ServeError::InvalidItem { .. })));
}

/// reqwest is built without its `json` feature (eocube parses with serde_json itself).
trait JsonBody {
    fn json_body(self, v: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, v: &Value) -> Self {
        self.header("content-type", "application/json").body(v.to_string())
    }
}

trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        let status = self.status();
        let b = self.bytes().await.unwrap();
        serde_json::from_slice(&b)
            .unwrap_or_else(|e| panic!("HTTP {status}: not JSON ({e}): {}", String::from_utf8_lossy(&b)))
    }
}

/// One raw HTTP exchange, on a blocking thread (the server runs on the test's runtime); the
/// whole answer as text.
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let request = request.to_string();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap()
}
