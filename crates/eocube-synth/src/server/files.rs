//! `GET`/`HEAD /files/<path>`: files under the archive root with single byte ranges, what
//! object_store's HTTP store (and so `cog::Fetcher`) and GDAL's `/vsicurl/` ask of a server.
//!
//! Path safety: the request path is percent-decoded segment by segment; empty, `.`, `..` and
//! segments holding `/`, `\` or NUL are refused (404), and the canonical path (symlinks resolved)
//! must stay under the canonical root (else 403), so neither `..` nor a symlink escapes.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{ApiError, Body, empty, full};

/// Bodies up to this size are read at once; larger ones stream in chunks of this size.
const CHUNK: u64 = 256 << 10;

/// What a `Range` header asks of a file of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeAsk {
    /// No range, or one this server ignores (several ranges, bad syntax, another unit): RFC 9110
    /// 14.2 lets a server answer those with the whole file.
    Whole,
    /// Inclusive first and last byte.
    Part(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-`, `bytes=-n` against a file of `len` bytes (RFC 9110 14.1.2):
/// a last byte past the end is clamped, a suffix longer than the file is the whole file.
pub(crate) fn parse_range(value: &str, len: u64) -> RangeAsk {
    let Some((unit, spec)) = value.trim().split_once('=') else { return RangeAsk::Whole };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeAsk::Whole };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) { None } else { s.parse().ok() }
    };
    match (a.trim().is_empty(), num(a), num(b)) {
        // bytes=-n: the last n bytes
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Part(len.saturating_sub(n), len - 1)
            }
        }
        (false, Some(first), last) if b.trim().is_empty() || last.is_some() => {
            if let Some(last) = last
                && last < first
            {
                return RangeAsk::Whole; // syntactically invalid: ignored
            }
            if first >= len {
                return RangeAsk::Unsatisfiable;
            }
            RangeAsk::Part(first, last.unwrap_or(u64::MAX).min(len - 1))
        }
        _ => RangeAsk::Whole,
    }
}

/// Percent-decodes one path segment; `None` for invalid escapes or UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The file a request path (after `/files/`) names, or the error to answer.
pub(crate) fn resolve(root: &Path, rel: &str) -> Result<PathBuf, ApiError> {
    let not_found = || ApiError::not_found(format!("no file /files/{rel} in the archive"));
    let mut path = root.to_path_buf();
    for seg in rel.split('/') {
        let seg = percent_decode(seg).ok_or_else(not_found)?;
        if seg.is_empty() || seg == "." || seg == ".." || seg.contains(['/', '\\', '\0']) {
            return Err(not_found());
        }
        path.push(seg);
    }
    // blocking, but one metadata lookup on local disk: not worth a spawn_blocking round trip
    let canon = std::fs::canonicalize(&path).map_err(|_| not_found())?;
    if !canon.starts_with(root) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("/files/{rel} leads outside the archive"),
        ));
    }
    if !canon.is_file() {
        return Err(not_found());
    }
    Ok(canon)
}

/// Answers GET or HEAD for the file at `path`.
pub(crate) async fn serve_file(method: &Method, headers: &HeaderMap, path: &Path) -> Result<Response<Body>, ApiError> {
    let io = |e: std::io::Error| ApiError::internal(format!("reading {}: {e}", path.display()));
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    let meta = file.metadata().await.map_err(io)?;
    let len = meta.len();
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    // mtime and length: changes whenever the file is rewritten, which is all a strong ETag promises here
    let nanos = modified.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let etag = format!("\"{nanos:x}-{len:x}\"");
    let header_str = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());

    let mut res = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, http_date(modified))
        .header(header::CONTENT_TYPE, content_type(path));
    if let Some(m) = header_str(header::IF_MATCH)
        && m.trim() != "*"
        && !m.split(',').any(|t| t.trim() == etag)
    {
        return respond(res.status(StatusCode::PRECONDITION_FAILED), empty());
    }
    if let Some(m) = header_str(header::IF_NONE_MATCH)
        && (m.trim() == "*" || m.split(',').any(|t| t.trim().trim_start_matches("W/") == etag))
    {
        return respond(res.status(StatusCode::NOT_MODIFIED), empty());
    }
    // If-Range with another validator: the file changed, send all of it
    let range_applies = header_str(header::IF_RANGE).is_none_or(|v| v.trim() == etag);
    let ask = match header_str(header::RANGE) {
        Some(r) if range_applies => parse_range(r, len),
        _ => RangeAsk::Whole,
    };
    let (first, count) = match ask {
        RangeAsk::Whole => {
            res = res.status(StatusCode::OK);
            (0, len)
        }
        RangeAsk::Part(a, b) => {
            res = res.status(StatusCode::PARTIAL_CONTENT).header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}"));
            (a, b - a + 1)
        }
        RangeAsk::Unsatisfiable => {
            let r = res
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .header(header::CONTENT_LENGTH, 0);
            return respond(r, empty());
        }
    };
    res = res.header(header::CONTENT_LENGTH, count);
    if method == Method::HEAD {
        return respond(res, empty());
    }
    file.seek(std::io::SeekFrom::Start(first)).await.map_err(io)?;
    if count <= CHUNK {
        let mut buf = vec![0u8; count as usize];
        file.read_exact(&mut buf).await.map_err(io)?;
        return respond(res, full(buf));
    }
    // Streamed: a whole 100 MB band is never held in memory. A file shortened while being sent
    // ends the body early with an error, which the client sees as a cut connection.
    let stream = futures::stream::try_unfold((file, count), |(mut file, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; left.min(CHUNK) as usize];
        file.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(Some((Frame::data(Bytes::from(buf)), (file, left - left.min(CHUNK)))))
    });
    respond(res, http_body_util::StreamBody::new(stream).boxed())
}

fn respond(b: hyper::http::response::Builder, body: Body) -> Result<Response<Body>, ApiError> {
    b.body(body).map_err(|e| ApiError::internal(format!("building the answer: {e}")))
}

/// IMF-fixdate (RFC 9110 5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn http_date(t: SystemTime) -> HeaderValue {
    let s = DateTime::<Utc>::from(t).format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("tif" | "tiff") => "image/tiff; application=geotiff; profile=cloud-optimized",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("xml") => "application/xml",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_of_every_form() {
        use RangeAsk::*;
        assert_eq!(parse_range("bytes=0-99", 1000), Part(0, 99));
        assert_eq!(parse_range("bytes=10-", 1000), Part(10, 999));
        assert_eq!(parse_range("bytes=-100", 1000), Part(900, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), Part(0, 999), "suffix longer than the file");
        assert_eq!(parse_range("bytes=900-5000", 1000), Part(900, 999), "end clamped");
        assert_eq!(parse_range("Bytes = 5-5", 1000), Part(5, 5));
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=1000-2000", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-1", 0), Unsatisfiable);
        // ignored: whole file
        assert_eq!(parse_range("bytes=5-2", 1000), Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Whole);
        assert_eq!(parse_range("items=0-1", 1000), Whole);
        assert_eq!(parse_range("bytes=a-b", 1000), Whole);
        assert_eq!(parse_range("bytes=-", 1000), Whole);
        assert_eq!(parse_range("bytes=+1-2", 1000), Whole);
        assert_eq!(parse_range("bytes=99999999999999999999999-", 1000), Whole);
        assert_eq!(parse_range("garbage", 1000), Whole);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("%2e%2E").as_deref(), Some(".."));
        assert_eq!(percent_decode("plain.tif").as_deref(), Some("plain.tif"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    }

    #[test]
    fn paths_stay_under_the_root() {
        let dir = std::env::temp_dir().join(format!("eocube-serve-files-{}", std::process::id()));
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("a/b.tif"), b"x").unwrap();
        std::fs::write(dir.join("secret"), b"s").unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        assert_eq!(resolve(&root, "a/b.tif").unwrap(), root.join("a/b.tif"));
        assert_eq!(resolve(&root, "a/b%2Etif").unwrap(), root.join("a/b.tif"));
        for bad in ["../secret", "a/../../secret", "%2e%2e/secret", "a//b.tif", "a/./b.tif", "a", "", "a%2fb.tif"] {
            assert_eq!(resolve(&root, bad).unwrap_err().status, StatusCode::NOT_FOUND, "{bad}");
        }
        #[cfg(unix)]
        {
            let _ = std::fs::remove_file(root.join("escape"));
            std::os::unix::fs::symlink(dir.join("secret"), root.join("escape")).unwrap();
            assert_eq!(resolve(&root, "escape").unwrap_err().status, StatusCode::FORBIDDEN);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn http_dates_are_imf_fixdate() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(784111777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
