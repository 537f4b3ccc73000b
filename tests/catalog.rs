//! The STAC client against real servers.
//!
//! 1. A real STAC API: stac-fastapi-pgstac on PostgreSQL + PostGIS, started by
//!    `scripts/stac-server.sh start` (which `scripts/test.sh` runs) and loaded with the 14
//!    Sentinel-2 items of `crates/eocube/tests/data/stac`. `EOCUBE_TEST_STAC` holds its URL; without it these
//!    tests fail (they do not skip) so that CI cannot pass without having run them.
//! 2. A scripted HTTP/1.1 server in this process (a real socket, raw answers written by the
//!    test) for what a healthy server never does: 429 / 5xx, 405 to POST, broken paging, bad JSON.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use eocube::Bbox;
use eocube::catalog::{
    ApiClient, ApiOptions, Catalog, CatalogError, RetryPolicy, Scene, SearchMethod, SearchRequest, load_item_collection,
};
use serde_json::{Value, json};

const HOW: &str = "run scripts/test.sh (or: scripts/stac-server.sh start && source target/eocube-stac/env)";

fn stac_url() -> String {
    match std::env::var("EOCUBE_TEST_STAC") {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("EOCUBE_TEST_STAC is not set: these tests need the pgstac server; {HOW}"),
    }
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/eocube/tests/data/stac").join(name)
}

fn read(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(data(name)).unwrap()).unwrap()
}

/// Every item the server was loaded with (what `scripts/stac-server.sh` loads).
fn loaded_items() -> Vec<Value> {
    let mut items = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(data(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("sentinel-2-") && n.ends_with(".json"))
        .collect();
    names.sort();
    for n in names {
        let d = read(&n);
        match d["type"].as_str() {
            Some("FeatureCollection") => items.extend(d["features"].as_array().unwrap().iter().cloned()),
            Some("Feature") => items.push(d),
            _ => {}
        }
    }
    assert_eq!(items.len(), 14);
    items
}

/// The same items as one local file, for the offline catalog.
fn local_catalog() -> Catalog {
    let path = std::env::temp_dir().join(format!("eocube-catalog-items-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_string(&loaded_items()).unwrap()).unwrap();
    let c = Catalog::file(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    c
}

fn utc(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

fn bands() -> Vec<String> {
    vec!["red".into(), "nir".into(), "scl".into()]
}

fn ids(scenes: &[Scene]) -> Vec<String> {
    scenes.iter().map(|s| s.id.clone()).collect()
}

fn api(url: &str, method: SearchMethod) -> Catalog {
    Catalog::Api(ApiClient::new(url, ApiOptions { method, ..ApiOptions::default() }).unwrap())
}

const C1: &str = "sentinel-2-c1-l2a";

/// Every Collection-1 item: 10 of tile 13TDE (2024-03-31 .. 04-22) and 2 southern ones (2025-07-31).
fn all_c1() -> SearchRequest {
    let mut r = SearchRequest::new(&[C1], utc(2024, 1, 1), utc(2026, 1, 1));
    r.limit = 2;
    r
}

fn all_c1_ids_sorted() -> Vec<String> {
    let mut v: Vec<(String, String)> = loaded_items()
        .iter()
        .filter(|i| i["collection"] == C1)
        .map(|i| (i["properties"]["datetime"].as_str().unwrap().to_string(), i["id"].as_str().unwrap().to_string()))
        .collect();
    v.sort();
    v.into_iter().map(|(_, id)| id).collect()
}

#[tokio::test]
async fn pgstac_pages_by_post_with_a_small_limit() {
    let url = stac_url();
    // the server really pages by POST: 2 features and a POST next link carrying a body
    let page: Value = reqwest::Client::new()
        .post(format!("{url}/search"))
        .header("content-type", "application/json")
        .body(all_c1().to_body().to_string())
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    assert_eq!(page["features"].as_array().unwrap().len(), 2);
    let next = page["links"].as_array().unwrap().iter().find(|l| l["rel"] == "next").unwrap();
    assert_eq!(next["method"], "POST");
    assert!(next["body"].is_object());

    let scenes = api(&url, SearchMethod::Post).search(&all_c1(), &bands()).await.unwrap();
    assert_eq!(ids(&scenes), all_c1_ids_sorted());
    assert_eq!(scenes.len(), 12, "6 pages of 2");
    let red = scenes[0].asset("red").unwrap();
    assert_eq!((red.shape, red.data_type.as_deref()), (Some((10980, 10980)), Some("uint16")));
}

#[tokio::test]
async fn pgstac_pages_by_get_with_a_small_limit() {
    let url = stac_url();
    let page: Value = reqwest::get(format!("{url}/search?collections={C1}&limit=2"))
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    let next = page["links"].as_array().unwrap().iter().find(|l| l["rel"] == "next").unwrap();
    assert_eq!(next["method"], "GET");

    let scenes = api(&url, SearchMethod::Get).search(&all_c1(), &bands()).await.unwrap();
    assert_eq!(ids(&scenes), all_c1_ids_sorted());
}

/// A polygon in the west of tile 13TDE, which only the full-tile orbit (R141, ~18:02 UTC) covers.
fn west_polygon() -> Value {
    let (w, s, e, n) = (-106.0, 40.0, -105.8, 40.2);
    json!({"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]})
}

fn april_west_cloud_40() -> SearchRequest {
    let mut r = SearchRequest::new(&[C1], utc(2024, 4, 1), Utc.with_ymd_and_hms(2024, 4, 30, 23, 59, 59).unwrap());
    r.intersects = Some(west_polygon());
    r.max_cloud_cover = Some(40.0);
    r.limit = 2;
    r
}

#[tokio::test]
async fn intersects_datetime_and_cloud_cover_give_exactly_the_expected_ids() {
    // Expected from the fixture items: in April 2024, eo:cloud_cover <= 40, and a footprint
    // reaching west of -105.8 (the R098 items' bboxes start at about -105.37).
    let mut expected: Vec<(String, String)> = loaded_items()
        .iter()
        .filter(|i| {
            let p = &i["properties"];
            let dt = p["datetime"].as_str().unwrap();
            i["collection"] == C1
                && dt.starts_with("2024-04")
                && p["eo:cloud_cover"].as_f64().unwrap() <= 40.0
                && i["bbox"][0].as_f64().unwrap() < -105.8
        })
        .map(|i| (i["properties"]["datetime"].as_str().unwrap().to_string(), i["id"].as_str().unwrap().to_string()))
        .collect();
    expected.sort();
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    assert_eq!(expected, ["S2A_T13TDE_20240405T175934_L2A", "S2A_T13TDE_20240415T180048_L2A"]);

    let url = stac_url();
    let req = april_west_cloud_40();
    for method in [SearchMethod::Auto, SearchMethod::Post, SearchMethod::Get] {
        let scenes = api(&url, method).search(&req, &bands()).await.unwrap();
        assert_eq!(ids(&scenes), expected, "{method:?}");
        assert!(scenes.iter().all(|s| s.cloud_cover.unwrap() <= 40.0 && s.epsg == 32613));
    }
    let local = local_catalog().search(&req, &bands()).await.unwrap();
    assert_eq!(ids(&local), expected);
}

#[tokio::test]
async fn local_file_gives_the_same_scenes_as_the_api_for_the_same_requests() {
    let url = stac_url();
    let cat = api(&url, SearchMethod::Auto);
    let local = local_catalog();
    let mut requests = vec![all_c1(), april_west_cloud_40()];
    // both collections over the 20EPT acquisition (the same scene in the old and C1 collections)
    let mut r = SearchRequest::new(&[C1, "sentinel-2-l2a"], utc(2025, 7, 31), utc(2025, 8, 1));
    r.bbox = Some(Bbox { west: -60.0, south: -61.0, east: -59.0, north: -60.0 });
    requests.push(r.clone());
    // a custom CQL2 filter AND-ed with cloud cover
    let mut r2 = SearchRequest::new(&[C1, "sentinel-2-l2a"], utc(2023, 1, 1), utc(2026, 1, 1));
    r2.filter = Some(json!({"op": "=", "args": [{"property": "s2:processing_baseline"}, "05.10"]}));
    r2.max_cloud_cover = Some(50.0);
    r2.limit = 3;
    requests.push(r2);
    // a whole-tile bbox over both 13TDE collections
    let mut r3 = SearchRequest::new(&[C1, "sentinel-2-l2a"], utc(2023, 1, 1), utc(2026, 1, 1));
    r3.bbox = Some(Bbox { west: -105.0, south: 40.0, east: -104.9, north: 40.1 });
    requests.push(r3);
    let mut counts = Vec::new();
    for req in &requests {
        let a = cat.search(req, &bands()).await.unwrap();
        let l = local.search(req, &bands()).await.unwrap();
        assert_eq!(a, l, "{req:?}");
        counts.push(a.len());
    }
    assert_eq!(counts, [12, 2, 2, 6, 11]);
    let both = cat.search(&r, &bands()).await.unwrap();
    assert_eq!(ids(&both), ["S2B_20EPT_20250731_0_L2A", "S2B_T20EPT_20250731T131905_L2A"]);
}

#[tokio::test]
async fn unreachable_api_fails_fast_with_a_typed_error() {
    // a port that was free a moment ago: connection refused
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let retry = RetryPolicy { max_retries: 2, base_delay: Duration::from_millis(10), ..RetryPolicy::default() };
    let c = ApiClient::new(&url, ApiOptions { retry, ..ApiOptions::default() }).unwrap();
    let t0 = Instant::now();
    let err = c.search(&all_c1(), &bands()).await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    match &err {
        CatalogError::Unreachable { url: u, reason } => {
            assert_eq!(u, &format!("http://127.0.0.1:{port}/v1/search"));
            assert!(!reason.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("(`stac-url`)"), "{err}");
}

#[tokio::test]
async fn wrong_path_gives_the_http_error() {
    let url = format!("{}/no/such/api", stac_url());
    let err = api(&url, SearchMethod::Auto).search(&all_c1(), &bands()).await.unwrap_err();
    match &err {
        // POST 404, then the GET fallback 404 too
        CatalogError::Http { url: u, status, body } => {
            assert_eq!(*status, 404);
            assert!(u.contains("/no/such/api/search?collections="), "{u}");
            assert!(body.chars().count() <= 200);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_filter_pgstac_cannot_run_is_an_http_error_quoting_the_answer() {
    // pgstac raises on an unknown CQL2 operator: uvicorn answers 500 (not 400) and then often
    // resets the connection, so the client sees either; both are retried, then reported typed.
    let mut r = all_c1();
    r.filter = Some(json!({"op": "no-such-op", "args": []}));
    let retry = RetryPolicy { max_retries: 1, base_delay: Duration::from_millis(10), ..RetryPolicy::default() };
    let c = ApiClient::new(&stac_url(), ApiOptions { retry, method: SearchMethod::Post, ..ApiOptions::default() });
    match c.unwrap().search(&r, &bands()).await {
        Err(CatalogError::Http { status, body, url }) => {
            assert_eq!(status, 500);
            assert!(body.contains("Internal Server Error"), "{body}");
            assert!(url.ends_with("/search"), "{url}");
        }
        Err(CatalogError::Unreachable { url, reason }) => {
            assert!(url.ends_with("/search"), "{url}");
            assert!(reason.contains("reset") || reason.contains("closed"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The scripted server

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    target: String,
    headers: HashMap<String, String>,
    body: String,
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: impl Into<String>) -> Reply {
    Reply { status, headers: vec![], body: body.into() }
}

/// Serves on 127.0.0.1 until the test process ends; `handler(request, index)` writes each answer.
fn scripted(handler: impl Fn(&Recorded, usize) -> Reply + Send + 'static) -> (String, Arc<Mutex<Vec<Recorded>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
            let mut headers = HashMap::new();
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let n: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            let mut body = vec![0; n];
            r.read_exact(&mut body).unwrap();
            let rec = Recorded { method, target, headers, body: String::from_utf8(body).unwrap() };
            let index = {
                let mut l = log2.lock().unwrap();
                l.push(rec.clone());
                l.len() - 1
            };
            let rep = handler(&rec, index);
            let mut out = format!(
                "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                rep.status,
                rep.body.len()
            );
            for (k, v) in rep.headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            out.push_str(&rep.body);
            let _ = stream.write_all(out.as_bytes());
        }
    });
    (url, log)
}

fn c1_item(i: usize) -> Value {
    read("sentinel-2-c1-l2a_13TDE_2024-04_item-collection.json")["features"][i].clone()
}

fn page(items: &[Value], next: Option<Value>) -> String {
    let links: Vec<Value> = next.into_iter().collect();
    json!({"type": "FeatureCollection", "features": items, "links": links}).to_string()
}

fn fast(method: SearchMethod) -> ApiOptions {
    ApiOptions {
        method,
        retry: RetryPolicy { max_retries: 3, base_delay: Duration::from_millis(10), ..RetryPolicy::default() },
        ..ApiOptions::default()
    }
}

fn client(url: &str, options: ApiOptions) -> ApiClient {
    ApiClient::new(url, options).unwrap()
}

#[tokio::test]
async fn retries_5xx_and_429_honouring_retry_after() {
    let (url, log) = scripted(|_, i| match i {
        0 => reply(503, "busy"),
        1 => Reply { status: 429, headers: vec![("Retry-After", "1".into())], body: "slow down".into() },
        _ => reply(200, page(&[c1_item(0)], None)),
    });
    let t0 = Instant::now();
    let scenes = client(&url, fast(SearchMethod::Post)).search(&all_c1(), &bands()).await.unwrap();
    assert_eq!(scenes.len(), 1);
    assert_eq!(log.lock().unwrap().len(), 3);
    assert!(t0.elapsed() >= Duration::from_secs(1), "Retry-After: 1 not honoured: {:?}", t0.elapsed());
}

#[tokio::test]
async fn gives_up_after_the_retry_budget_with_the_last_status() {
    let (url, log) = scripted(|_, _| reply(502, "bad gateway"));
    match client(&url, fast(SearchMethod::Post)).search(&all_c1(), &bands()).await {
        Err(CatalogError::Http { status: 502, body, .. }) => assert_eq!(body, "bad gateway"),
        other => panic!("{other:?}"),
    }
    assert_eq!(log.lock().unwrap().len(), 4, "1 try + 3 retries");
}

#[tokio::test]
async fn never_retries_a_client_error_and_quotes_200_chars_of_the_body() {
    let (url, log) = scripted(|_, _| reply(400, "x".repeat(1000)));
    match client(&url, fast(SearchMethod::Auto)).search(&all_c1(), &bands()).await {
        Err(e @ CatalogError::Http { status: 400, .. }) => {
            let CatalogError::Http { body, url: u, .. } = &e else { unreachable!() };
            assert_eq!(body.len(), 200);
            assert!(u.ends_with("/api/search"), "{u}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn post_answered_405_falls_back_to_get_and_follows_get_links() {
    let (url, log) = scripted(|r, _| {
        if r.method == "POST" {
            return reply(405, "method not allowed");
        }
        if r.target.contains("token=2") {
            reply(200, page(&[c1_item(1)], None))
        } else {
            let next = json!({"rel": "next", "href": "search?token=2"});
            reply(200, page(&[c1_item(0)], Some(next)))
        }
    });
    let scenes = client(&url, fast(SearchMethod::Auto)).search(&all_c1(), &bands()).await.unwrap();
    assert_eq!(scenes.len(), 2);
    let log = log.lock().unwrap();
    let methods: Vec<&str> = log.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["POST", "GET", "GET"]);
    assert!(log[1].target.starts_with("/api/search?collections=sentinel-2-c1-l2a&datetime="), "{}", log[1].target);
    assert_eq!(log[2].target, "/api/search?token=2");
}

#[tokio::test]
async fn post_links_merge_or_replace_the_body_and_send_their_headers() {
    let (url, log) = scripted(|r, _| {
        let body: Value = serde_json::from_str(&r.body).unwrap();
        match body["token"].as_str() {
            None => reply(
                200,
                page(
                    &[c1_item(0)],
                    Some(json!({"rel": "next", "method": "POST", "href": "search", "merge": true,
                                "body": {"token": "p2"}, "headers": {"X-Page": "2"}})),
                ),
            ),
            Some("p2") => reply(
                200,
                page(
                    &[c1_item(1)],
                    Some(json!({"rel": "next", "method": "POST", "href": "search", "merge": false,
                                "body": {"collections": [C1], "token": "p3"}})),
                ),
            ),
            _ => reply(200, page(&[c1_item(2)], None)),
        }
    });
    let scenes = client(&url, fast(SearchMethod::Post)).search(&all_c1(), &bands()).await.unwrap();
    assert_eq!(scenes.len(), 3);
    let log = log.lock().unwrap();
    let bodies: Vec<Value> = log.iter().map(|r| serde_json::from_str(&r.body).unwrap()).collect();
    let mut merged = all_c1().to_body();
    merged["token"] = json!("p2");
    assert_eq!(bodies[1], merged, "merge: true keeps the search and adds the token");
    assert_eq!(log[1].headers.get("x-page").map(String::as_str), Some("2"));
    assert_eq!(bodies[2], json!({"collections": [C1], "token": "p3"}), "merge: false replaces the body");
    assert_eq!(log[2].headers.get("x-page"), None, "merge: false replaces the headers too");
}

#[tokio::test]
async fn a_next_link_repeating_the_request_is_a_paging_loop() {
    let (url, log) = scripted(|_, _| {
        let next = json!({"rel": "next", "href": "search?token=same"});
        reply(200, page(&[c1_item(0)], Some(next)))
    });
    match client(&url, fast(SearchMethod::Get)).search(&all_c1(), &bands()).await {
        Err(CatalogError::PagingLoop { url }) => assert!(url.ends_with("/api/search?token=same"), "{url}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(log.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn runaway_paging_stops_at_max_pages() {
    let (url, log) = scripted(|_, i| {
        let next = json!({"rel": "next", "href": format!("search?token={i}")});
        reply(200, page(&[c1_item(i % 10)], Some(next)))
    });
    let options = ApiOptions { max_pages: 3, ..fast(SearchMethod::Get) };
    match client(&url, options).search(&all_c1(), &bands()).await {
        Err(CatalogError::TooManyPages { max_pages: 3, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(log.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn an_empty_page_ends_the_search_even_with_a_next_link() {
    let (url, log) = scripted(|_, i| {
        let next = json!({"rel": "next", "href": format!("search?token={i}")});
        reply(200, page(&[], Some(next)))
    });
    let scenes = client(&url, fast(SearchMethod::Get)).search(&all_c1(), &bands()).await.unwrap();
    assert!(scenes.is_empty());
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_answers_are_typed_errors_naming_the_url_item_or_collection() {
    let (url, _) = scripted(|_, _| reply(200, "<html>not json</html>"));
    match client(&url, fast(SearchMethod::Post)).search(&all_c1(), &bands()).await {
        Err(CatalogError::InvalidJson { url: u, .. }) => assert!(u.ends_with("/api/search"), "{u}"),
        other => panic!("{other:?}"),
    }
    let (url, _) = scripted(|_, _| reply(200, json!({"type": "Catalog", "links": []}).to_string()));
    assert!(matches!(
        client(&url, fast(SearchMethod::Post)).search(&all_c1(), &bands()).await,
        Err(CatalogError::InvalidJson { .. })
    ));
    // an item of a collection not asked for: the server ignored `collections`
    let (url, _) = scripted(|_, _| reply(200, page(&[read("sentinel-2-l2a__S2B_20EPT_20250731_0_L2A.json")], None)));
    match client(&url, fast(SearchMethod::Post)).search(&all_c1(), &bands()).await {
        Err(CatalogError::UnexpectedCollection { item, collection, .. }) => {
            assert_eq!((item.as_str(), collection.as_str()), ("S2B_20EPT_20250731_0_L2A", "sentinel-2-l2a"));
        }
        other => panic!("{other:?}"),
    }
    // a malformed item names itself
    let mut bad = c1_item(3);
    bad["properties"]["proj:epsg"] = json!("utm");
    let (url, _) = scripted(move |_, _| reply(200, page(std::slice::from_ref(&bad), None)));
    match client(&url, fast(SearchMethod::Post)).search(&all_c1(), &bands()).await {
        Err(CatalogError::InvalidItem { item, field, .. }) => {
            assert_eq!((item.as_str(), field.as_str()), ("S2A_T13TDE_20240415T180048_L2A", "properties.proj:epsg"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_local_catalog_loads_the_server_data() {
    // guards the premise of the comparisons above: the file and the server hold the same items
    let c = load_item_collection(data("sentinel-2-c1-l2a_13TDE_2024-04_item-collection.json")).unwrap();
    assert_eq!(c.len(), 10);
    assert_eq!(loaded_items().len(), 14);
}
