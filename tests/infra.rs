//! Smoke tests of the test infrastructure itself: the fixture manifest, the files it lists, and the
//! nginx / moto servers started by scripts/test.sh. No eocube code is exercised here.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// One raw HTTP/1.1 request; returns (status, headers (lower-case names), body).
fn http_get(base: &str, path: &str, extra_headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let hostport = base.strip_prefix("http://").unwrap_or_else(|| panic!("{base}: expected http://host:port"));
    let mut stream = TcpStream::connect(hostport).unwrap_or_else(|e| panic!("connecting to {hostport}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n");
    for (k, v) in extra_headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect(status_line);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn manifest_covers_the_matrix() {
    let cogs = cogs();
    assert!(cogs.len() >= 10, "only {} cogs", cogs.len());
    let set = |key: &str| cogs.iter().map(|c| c[key].to_string()).collect::<BTreeSet<_>>();
    for c in ["\"none\"", "\"deflate\"", "\"deflate-old\"", "\"lzw\"", "\"zstd\""] {
        assert!(set("compression").contains(c), "no {c} cog");
    }
    for d in ["\"uint8\"", "\"uint16\"", "\"int16\"", "\"float32\""] {
        assert!(set("dtype").contains(d), "no {d} cog");
    }
    for p in ["1", "2", "3"] {
        assert!(set("predictor").contains(p), "no predictor {p}");
    }
    for e in ["32618", "32619", "32720"] {
        assert!(set("epsg").contains(e), "no EPSG:{e}");
    }
    for t in ["512", "1024", "null"] {
        assert!(set("tile").contains(t), "no tile {t}");
    }
    assert!(set("bigtiff").contains("true"), "no BigTIFF");
    for c in cogs {
        let name = c["name"].as_str().unwrap();
        assert_eq!(affine6(&c["transform"]).len(), 6);
        let levels = c["overviews"].as_array().unwrap().len();
        if !c["tile"].is_null() {
            assert!(levels >= 1, "{name}: a COG without overviews");
        }
        let wins = windows(c);
        assert!(wins.iter().any(|w| w.level == 0 && (w.row < 0 || w.col < 0)), "{name}: no window at negative offset");
        if levels > 0 {
            assert!(wins.iter().any(|w| w.level > 0), "{name}: no overview window");
        }
        let size = dtype_size(c["dtype"].as_str().unwrap());
        for w in &wins {
            assert!(w.level <= levels, "{name}: window level {} > {levels}", w.level);
            let len = std::fs::metadata(&w.file).unwrap().len() as usize;
            assert_eq!(len, w.width * w.height * size, "{}: size", w.file.display());
        }
    }
    let names: BTreeSet<&str> = cogs.iter().map(|c| c["name"].as_str().unwrap()).collect();
    let cases = warp_cases();
    assert!(cases.len() >= 8, "only {} warp cases", cases.len());
    for r in ["nearest", "bilinear"] {
        assert!(cases.iter().any(|c| c["resampling"] == r), "no {r} warp case");
    }
    for case in cases {
        let src = case["src"].as_str().unwrap();
        assert!(names.contains(src), "warp case source {src} is not a cog");
        assert_eq!(case["dst_epsg"], 4326);
        let t = affine6(&case["dst_transform"]);
        assert_eq!((t[0] * 3600.0, t[4] * 3600.0), (1.0, -1.0), "resolution 1/3600 degree");
        for origin in [t[2], t[5]] {
            assert!((origin * 3600.0 - (origin * 3600.0).round()).abs() < 1e-6, "origin off the 1/3600 grid");
        }
        let shape = case["dst_shape"].as_array().unwrap();
        let (rows, cols) = (shape[0].as_u64().unwrap() as usize, shape[1].as_u64().unwrap() as usize);
        let data = read_le_u16(fixture(case["file"].as_str().unwrap()));
        assert_eq!(data.len(), rows * cols);
        assert!(data.iter().any(|&v| v != 0), "{}: all no-data", case["name"]);
    }
}

#[test]
fn every_listed_file_exists() {
    let m = manifest();
    let mut files: Vec<String> = Vec::new();
    for c in cogs() {
        files.push(c["path"].as_str().unwrap().to_string());
        files.extend(c["windows"].as_array().unwrap().iter().map(|w| w["file"].as_str().unwrap().to_string()));
    }
    files.extend(m["bad"].as_object().unwrap().values().map(|v| v.as_str().unwrap().to_string()));
    files.extend(warp_cases().iter().map(|c| c["file"].as_str().unwrap().to_string()));
    assert!(files.len() > 50);
    for f in files {
        let p = fixture(&f);
        assert!(p.is_file(), "{} is listed in the manifest but missing", p.display());
    }
    for kind in ["truncated", "garbage", "offset_past_end", "unsupported_compression", "no_geokeys"] {
        assert!(bad(kind).is_file());
    }
}

#[test]
fn raw_helpers_read_window_truths() {
    let u16cog = cogs().iter().find(|c| c["dtype"] == "uint16").unwrap();
    let w = &windows(u16cog)[0];
    let a = read_le_u16(&w.file);
    let b = read_raw(&w.file, "uint16");
    assert_eq!(a.len(), w.width * w.height);
    assert!(a.iter().zip(&b).all(|(x, y)| f64::from(*x) == *y));
    let f32cog = cogs().iter().find(|c| c["dtype"] == "float32").unwrap();
    let v = read_raw(&windows(f32cog)[0].file, "float32");
    assert!(v.iter().all(|x| x.is_finite() && (-1.0..2.0).contains(x)));
    let i16cog = cogs().iter().find(|c| c["dtype"] == "int16").unwrap();
    let v: Vec<f64> = windows(i16cog).iter().flat_map(|w| read_raw(&w.file, "int16")).collect();
    assert!(v.iter().any(|x| *x < 0.0), "int16 fixture has negative values");
}

#[test]
fn nginx_answers_range_requests_with_206() {
    let c = &cogs()[0];
    let rel = c["path"].as_str().unwrap();
    let local = std::fs::read(fixture(rel)).unwrap();
    let (status, headers, body) = http_get(&http_base(), &format!("/{rel}"), &[("Range", "bytes=0-15")]);
    assert_eq!(status, 206);
    assert_eq!(header(&headers, "content-range"), Some(format!("bytes 0-15/{}", local.len()).as_str()));
    assert_eq!(body, &local[..16]);
    // suffix range: the last 100 bytes
    let (status, _, body) = http_get(&http_base(), &format!("/{rel}"), &[("Range", "bytes=-100")]);
    assert_eq!(status, 206);
    assert_eq!(body, &local[local.len() - 100..]);
    let (status, headers, _) = http_get(&http_base(), "/manifest.json", &[]);
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
}

#[test]
fn nginx_error_paths() {
    assert_eq!(http_get(&http_base(), "/status/500", &[]).0, 500);
    assert_eq!(http_get(&http_base(), "/status/503", &[]).0, 503);
    assert_eq!(http_get(&http_base(), "/no/such/file.tif", &[]).0, 404);
}

#[test]
fn s3_server_answers() {
    let s3 = s3();
    assert_eq!(s3.bucket, "eocube-fixtures");
    assert!(!s3.access_key.is_empty() && !s3.secret_key.is_empty() && !s3.region.is_empty());
    // Unsigned requests are refused (403) by moto; any HTTP answer shows the server is up.
    // Signed reads are exercised by the object_store tests of the COG reader.
    let (status, _, _) = http_get(&s3.endpoint, &format!("/{}/manifest.json", s3.bucket), &[]);
    assert!((200..500).contains(&status), "moto answered {status}");
}
